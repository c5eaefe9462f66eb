//===- ExternalTool.cpp - run a toolchain program, keep what it said ------===//

#include "lib/Target/ExternalTool.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"

#include <optional>

llvm::Expected<mlir::moe::ToolRun>
mlir::moe::runTool(llvm::StringRef program, llvm::ArrayRef<std::string> args) {
  llvm::SmallString<128> logPath;
  if (std::error_code error =
          llvm::sys::fs::createTemporaryFile("moec-tool", "log", logPath))
    return llvm::createStringError(
        error, "cannot create a temporary file for the output of " + program +
                   ": " + error.message());
  llvm::SmallVector<llvm::StringRef> argRefs(args.begin(), args.end());
  std::optional<llvm::StringRef> redirects[] = {
      std::nullopt, llvm::StringRef(logPath), llvm::StringRef(logPath)};
  ToolRun run;
  bool executionFailed = false;
  run.status = llvm::sys::ExecuteAndWait(
      program, argRefs, /*Env=*/std::nullopt, redirects, /*SecondsToWait=*/0,
      /*MemoryLimit=*/0, &run.message, &executionFailed);
  run.started = !executionFailed;
  if (llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> log =
          llvm::MemoryBuffer::getFile(logPath))
    run.output = (*log)->getBuffer().rtrim().str();
  llvm::sys::fs::remove(logPath);
  return run;
}
