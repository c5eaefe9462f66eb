//===- PanelMatmul.h - the CPU matmul micro-kernel --------------*- C++ -*-===//
//
// Rows of an activation matrix times one column panel of an expert's packed
// weight (WeightPacking.h): a register tile of R rows x P columns accumulated
// over K with one vector load of the packed weight and R broadcasts per step.
// Weights are bf16/f32, or integer levels / FP8 / FP4 codes dequantized in the
// inner loop.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_CODEGEN_CPU_PANELMATMUL_H
#define MOEC_LIB_CODEGEN_CPU_PANELMATMUL_H

#include "lib/Codegen/CPU/WeightPacking.h"
#include "lib/Codegen/Common/LoopBuilder.h"

#include <optional>

namespace mlir::moe::cpu {

using codegen::IR;

/// Integer levels in a panel (see PackedQuantization): the per-group scale
/// and zero-point views (memref<E x panels x groups x P x f32>; zeros null
/// when always zero).
struct QuantizedPanel {
  LevelFormat format = LevelFormat::Int;
  int64_t bits = 8, groupSize = 0;
  bool roundToBF16 = false;
  /// FP8/FP4 codes decode through f16 (KernelShape::halfConversions).
  bool viaHalf = false;
  Value scales, zeros;
};

/// Rows [begin, end) of `a` (memref<? x K x f32>) times panel `p` of expert `e`
/// of the packed `w` (memref<E x panels x K x P x bf16|f32>, or integer levels
/// with `quant`): each row's P accumulated columns go to `epilogue(row,
/// vector<P x f32>)`. Register tiles of `tile` rows, then single rows. A
/// nonzero `upColumn` makes the up half of a gated panel read `a` from column
/// k + upColumn (accumulateSplitRows).
void panelMatmul(IR &ir, Value a, Value w, Value e, Value p, int64_t K,
                 int64_t P, int64_t tile, Value begin, Value end,
                 function_ref<void(IR &, Value, Value)> epilogue,
                 const std::optional<QuantizedPanel> &quant = std::nullopt,
                 int64_t upColumn = 0, Value kBound = Value());

} // namespace mlir::moe::cpu

#endif // MOEC_LIB_CODEGEN_CPU_PANELMATMUL_H
