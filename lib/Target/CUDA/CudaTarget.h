//===- CudaTarget.h - gpu.modules to PTX, cubins and host globals -*- C++
//-*-===//
//
// The GPU half of ahead-of-time compilation: kernels written in the gpu, nvgpu
// and nvvm dialects are lowered to NVVM, translated to LLVM IR and turned into
// PTX by LLVM's NVPTX backend (MLIR's gpu-module-to-binary), assembled into a
// cubin by ptxas when the CUDA toolkit is installed, and embedded as constant
// globals in the host module that becomes the shared library.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_TARGET_CUDA_CUDATARGET_H
#define MOEC_LIB_TARGET_CUDA_CUDATARGET_H

#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <optional>
#include <string>
#include <vector>

namespace mlir::moe {

/// An NVIDIA GPU architecture, as ptxas and LLVM's NVPTX backend name it.
struct CudaTarget {
  std::string chip = "sm_80"; // sm_80, sm_90 or sm_90a
  std::string features = "+ptx80";
};

/// Parses "cuda" (sm_80: runs on every Ampere and later GPU, through the PTX
/// elsewhere) or "cuda:<chip>" with chip one of sm_80, sm_90, sm_90a.
llvm::Expected<CudaTarget> parseCudaTarget(llvm::StringRef spec);

/// The #nvvm.target attribute for `target`.
Attribute getNVVMTargetAttr(MLIRContext *context, const CudaTarget &target);

/// One lowered kernel module.
struct KernelImage {
  std::string name; // the gpu.module's (and its kernel's) name
  std::string ptx;
  std::string cubin; // empty when no ptxas was found
};

/// Lowers every gpu.module of `container` (replacing them by gpu.binary ops)
/// and returns each one's PTX. Math functions are expanded to polynomials
/// first, so no libdevice is needed.
llvm::Expected<std::vector<KernelImage>> lowerKernelsToPTX(ModuleOp container);

/// The ptxas that assembles cubins: $CUDA_HOME/bin, /usr/local/cuda/bin or
/// PATH; empty when there is none.
std::string findPtxas();

/// Assembles the PTX of `image`, already written to `ptxPath`, for `target`
/// with `ptxas` into `image.cubin` (through a temporary file beside it).
/// Errors carry ptxas's messages.
llvm::Error assembleCubin(KernelImage &image, const CudaTarget &target,
                          llvm::StringRef ptxas, llvm::StringRef ptxPath);

/// Adds `<symbol>_ptx` (NUL-terminated), `<symbol>_cubin` and
/// `<symbol>_cubin_size` (uint64) to `host` (runtime/FORMAT.md).
void embedKernelImage(ModuleOp host, llvm::StringRef symbol,
                      const KernelImage &image);

} // namespace mlir::moe

#endif // MOEC_LIB_TARGET_CUDA_CUDATARGET_H
