//===- EmitLayer.h - a layer's native entry point, in upstream dialects -*- C++
//-*-===//
//
// Builds `moe_layer_<L>` (runtime/FORMAT.md's ABI) from a LayerPlan and the
// packed weights: routing, dispatch, the two grouped expert projections and the
// combine as scf/memref/vector/ arith/math IR, ready for upstream's lowering to
// the LLVM dialect.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_CODEGEN_CPU_EMITLAYER_H
#define MOEC_LIB_CODEGEN_CPU_EMITLAYER_H

#include "lib/Codegen/CPU/LayerPlan.h"
#include "lib/Codegen/CPU/WeightPacking.h"

#include "mlir/IR/BuiltinOps.h"

namespace mlir::moe::cpu {

struct KernelShape {
  /// Output columns per panel (the packed weights' P): 64 with AVX-512, 32
  /// otherwise.
  int64_t panelWidth = 64;
  /// Rows per register tile of the matmul micro-kernel.
  int64_t rowTile = 4;
  /// The target converts f16 to f32 in hardware (x86 F16C): FP8/FP4 codes
  /// decode through it.
  bool halfConversions = false;
};

/// Adds `moe_layer_<L>` to `module` (before any lowering).
LogicalResult emitLayerFunction(ModuleOp module, const LayerPlan &plan,
                                const PackedLayer &packed,
                                const KernelShape &shape);

/// Adds `moe_weights_hash`: the NUL-terminated hex hash runtime/FORMAT.md asks
/// for.
void emitWeightsHash(ModuleOp module, llvm::StringRef hash);

/// Lowers everything emitLayerFunction built to the LLVM dialect, OpenMP for
/// parallel loops.
LogicalResult lowerToLLVMDialect(ModuleOp module);

} // namespace mlir::moe::cpu

#endif // MOEC_LIB_CODEGEN_CPU_EMITLAYER_H
