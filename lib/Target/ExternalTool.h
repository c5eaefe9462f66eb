//===- ExternalTool.h - run a toolchain program, keep what it said -*- C++
//-*-===//
//
// The targets call a few external programs (ld.lld, ptxas). Each run sends the
// program's stdout and stderr to one temporary log, so that a failure can be
// reported with everything the tool printed.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_TARGET_EXTERNALTOOL_H
#define MOEC_LIB_TARGET_EXTERNALTOOL_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>

namespace mlir::moe {

struct ToolRun {
  /// Whether the program could be started at all.
  bool started = false;
  /// Its exit status (negative when it crashed).
  int status = -1;
  /// Its stdout and stderr, interleaved, trailing whitespace removed.
  std::string output;
  /// What the OS said about a failed start or an abnormal end; else empty.
  std::string message;

  bool succeeded() const { return started && status == 0; }
};

/// Runs `program` with `args` (args[0] is the program's name) and waits.
/// Errors only when the log file cannot be created.
llvm::Expected<ToolRun> runTool(llvm::StringRef program,
                                llvm::ArrayRef<std::string> args);

} // namespace mlir::moe

#endif // MOEC_LIB_TARGET_EXTERNALTOOL_H
