//===- ExpertScores.h - per-expert measurements and selection ---*- C++ -*-===//
//
// Passes that decide per expert (super-expert marking, EASY-EP pruning,
// MC#-style mixed precision) measure each routed expert on the calibration
// tokens routed to it, and rewrite stacked expert weights [E, ...] expert by
// expert. The measurements run in float64 on a LayerObservation; the rewrites
// are upstream ops (tensor.extract_slice, tensor.concat) the weight
// materializer executes, so weights stay references.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_COMPRESS_EXPERTSCORES_H
#define MOEC_LIB_COMPRESS_EXPERTSCORES_H

#include "lib/Compress/Calibration.h"

#include "mlir/IR/Builders.h"

namespace mlir::moe::compress {

/// The discardable moe.layer attribute listing its super experts (sorted
/// expert indices): experts that pruning keeps and mixed precision keeps at
/// its highest width.
inline constexpr llvm::StringLiteral kSuperExpertsAttr = "moe.super_experts";
/// The discardable moe.layer attribute listing, after pruning, the original
/// index of each remaining expert.
inline constexpr llvm::StringLiteral kKeptExpertsAttr = "moe.kept_experts";

/// The layer's super experts (empty when it has no moe.super_experts).
SmallVector<int64_t> superExpertsOf(LayerOp layer);

/// The rows expert `expert` actually reads: its routed rows, scaled by their
/// routing weights when the layer scales expert inputs (Llama-4).
reference::RefTensor expertInputRows(LayerOp layer,
                                     const LayerObservation &observed,
                                     int64_t expert);

/// For each routed expert, max |down-projection output| (the down
/// projection's output, with its bias, before the routing weight) over the
/// calibration tokens routed to it; 0 for an expert no token reaches.
FailureOr<std::vector<double>>
maxDownProjectionOutputs(LayerOp layer, const LayerObservation &observed,
                         reference::WeightMaterializer &weights);

/// EASY-EP's expert scores: score_i = sum_t c_{i,t} s_t with
/// c_{i,t} = || expert i's contribution to token t ||_2 (g_{i,t} ||E_i(h_t)||
/// for output-weighted routing; 0 when i is not routed t) and
/// s_t = 1 - cos(h_t, h_t + y_t), y_t the layer's whole output on h_t (routed
/// and shared experts). Dispatch capacity is ignored.
FailureOr<std::vector<double>>
easyEpScores(LayerOp layer, const LayerObservation &observed,
             reference::WeightMaterializer &weights);

/// A run of consecutive experts [begin, end) of a stacked value.
struct ExpertRun {
  int64_t begin, end;
};

/// The ascending `experts` as runs of consecutive indices.
SmallVector<ExpertRun> expertRuns(ArrayRef<int64_t> experts);

/// tensor.concat along dimension 0 of `transform(slice, i)` for each run i,
/// where slice is the tensor.extract_slice of `stacked` ([E, ...]) holding
/// run i's experts (no concat for a single run). `transform` may return the
/// slice itself.
Value concatExpertRuns(OpBuilder &b, Location loc, Value stacked,
                       ArrayRef<ExpertRun> runs,
                       function_ref<Value(Value, size_t)> transform);

} // namespace mlir::moe::compress

#endif // MOEC_LIB_COMPRESS_EXPERTSCORES_H
