//===- CpuTarget.h - LLVM dialect to native shared library ------*- C++ -*-===//
//
// Ahead-of-time code generation for the host's kind of CPU: an MLIR module
// already lowered to the LLVM dialect (plus omp) becomes an optimized ELF
// object in-process, and objects become a shared library that moec's runtime
// dlopens. The only external process is the linker.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_TARGET_CPU_CPUTARGET_H
#define MOEC_LIB_TARGET_CPU_CPUTARGET_H

#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>

namespace mlir {
namespace moe {

/// What code is generated for: an LLVM target triple, an LLVM CPU name and a
/// comma-separated LLVM feature string ("+avx2,-avx512f,..."; empty means
/// "whatever `cpu` implies").
struct CpuTarget {
  std::string triple;
  std::string cpu;
  std::string features;
  /// 0-3, as -O0..-O3; applies to both the IR pipeline and instruction
  /// selection.
  unsigned optLevel = 3;
};

/// The machine this runs on: its default triple, host CPU name and the features
/// the host reports (which may differ from what the CPU name implies, e.g. in a
/// VM that masks AVX-512).
CpuTarget getHostCpuTarget();

/// Parses a target spec: "cpu" and "cpu:native" give getHostCpuTarget();
/// "cpu:<name>" gives the host triple with an LLVM CPU name such as
/// "x86-64-v3", "znver4" or "x86-64" (the portable fallback). Errors name the
/// part that is wrong.
llvm::Expected<CpuTarget> parseCpuTarget(llvm::StringRef spec);

/// Translates `module` (builtin + llvm + omp dialects) to LLVM IR, sets the
/// target's triple and data layout (overriding any the module carries), runs
/// the new pass manager's default pipeline at target.optLevel with the target
/// machine (so the vectorizers see the target's vector widths) and writes an
/// ELF object to `objectPath` (written whole or not at all). Registers the
/// needed LLVM IR translations on the module's context.
llvm::Error emitObjectFile(mlir::ModuleOp module, const CpuTarget &target,
                           llvm::StringRef objectPath);

/// The same translation and optimization as emitObjectFile, returning the
/// optimized LLVM IR as text (for inspection and tests).
llvm::Expected<std::string> emitOptimizedLLVMIR(mlir::ModuleOp module,
                                                const CpuTarget &target);

/// Links `objects` into the shared library `outPath` with ld.lld (LLVM's own,
/// else ld.lld-22 or ld.lld on PATH). Every symbol the objects use must resolve
/// against libc, libm, libgcc_s and, when `withOpenMP`, LLVM's libomp (found
/// through an rpath to LLVM's library folder). The library is linked to a
/// temporary name beside `outPath` and renamed into place, so a failed link
/// leaves any earlier file at `outPath` untouched and never a partial one; a
/// process that has the old library dlopen'ed keeps its mapping. Errors carry
/// the linker's stderr.
/// Whether code for `target` may use `feature` (e.g. "avx512f"): its explicit
/// features first, else the CPU name's defaults.
llvm::Expected<bool> cpuHasFeature(const CpuTarget &target,
                                   llvm::StringRef feature);

/// The x86 extensions code for `target` may use, as "+avx2,+fma,...": what a
/// loader must find on the machine before running that code.
std::string requiredCpuFeatures(const CpuTarget &target);

llvm::Error linkSharedLibrary(llvm::ArrayRef<std::string> objects,
                              llvm::StringRef outPath, bool withOpenMP);

} // namespace moe
} // namespace mlir

#endif // MOEC_LIB_TARGET_CPU_CPUTARGET_H
