//===- Kernels.h - float64 semantics of the moe ops -------------*- C++ -*-===//
//
// Straightforward float64 loops that define what each moe op computes. They
// favour being obviously right over being fast: they are the oracle compiled
// code is checked against.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_REFERENCE_KERNELS_H
#define MOEC_LIB_REFERENCE_KERNELS_H

#include "dialects/moe/MoEAttrs.h"
#include "lib/Reference/RefTensor.h"

#include "mlir/IR/Diagnostics.h"

#include <optional>

namespace mlir::moe::reference {

using EmitErrorFn = llvm::function_ref<InFlightDiagnostic()>;

/// moe.route: ids and weights [T, k]; ids of unused top-p slots are -1 with
/// weight 0.
struct Routing {
  RefTensor ids;
  RefTensor weights;
};
Routing route(RoutingAttr routing, const RefTensor &input,
              const RefTensor &gateWeight, const RefTensor *bias,
              const RefTensor *correctionBias);

/// moe.dispatch.
struct Dispatch {
  RefTensor permuted;        // [N, H]
  RefTensor permutedWeights; // [N]
  RefTensor sourceSlots;     // [N], -1 for unused rows
  RefTensor expertOffsets;   // [E + 1]
};
FailureOr<Dispatch> dispatch(EmitErrorFn emitError, const RefTensor &input,
                             const RefTensor &topkIds,
                             const RefTensor &topkWeights, int64_t numExperts,
                             std::optional<double> capacityFactor);

/// Feed-forward weights: stacked [E, out, in] for moe.experts, [out, in] for a
/// shared expert (absent operands are null).
struct FfnWeights {
  const RefTensor *gate = nullptr, *up = nullptr, *down = nullptr;
  const RefTensor *gateBias = nullptr, *upBias = nullptr, *downBias = nullptr;
  /// Stacked experts of different widths (expert_widths): expert e uses its
  /// first widths[e] intermediate channels only. Empty: every channel.
  llvm::ArrayRef<int64_t> widths;
};

/// moe.experts: rows [offsets[e], offsets[e+1]) through expert e.
/// The activation of an ungated feed-forward.
double activate(Activation activation, double x);
/// act(gate) * up, or GPT-OSS's clamped variant.
double gatedActivation(FfnAttr ffn, double gate, double up);

FailureOr<RefTensor> experts(EmitErrorFn emitError, FfnAttr ffn,
                             const RefTensor &input,
                             const RefTensor &expertOffsets,
                             const FfnWeights &weights,
                             const RefTensor *rowScales);

/// moe.shared_expert.
RefTensor sharedExpert(FfnAttr ffn, const RefTensor &input,
                       const FfnWeights &weights, const RefTensor *sigmoidGate);

/// moe.combine.
FailureOr<RefTensor> combine(EmitErrorFn emitError,
                             const RefTensor &expertOutputs,
                             const RefTensor &sourceSlots,
                             const RefTensor &topkWeights,
                             const RefTensor *addend, bool unweighted);

/// moe.dequantize: the logical tensor of `resultType`, each element rounded to
/// the result's element type (as a dequantizing kernel that writes that type
/// would).
FailureOr<RefTensor> dequantize(EmitErrorFn emitError,
                                WeightEncodingAttrInterface encoding,
                                llvm::ArrayRef<const RefTensor *> storage,
                                RankedTensorType resultType);

/// moe.quantize: the stored tensors of `input` under `encoding` (int_group,
/// fp8_block with e4m3 values, mxfp4), as their types `storageTypes` hold
/// them. int_group only: with `calibration` rows (the input's leading
/// dimensions, then [n, K]) the levels are chosen by GPTQ, and `clip` scales
/// symmetric ranges.
FailureOr<llvm::SmallVector<RefTensor>>
quantize(EmitErrorFn emitError, WeightEncodingAttrInterface encoding,
         const RefTensor &input, TypeRange storageTypes,
         const RefTensor *calibration = nullptr,
         std::optional<double> clip = std::nullopt);

/// tensor.concat of `parts` along `dim`.
RefTensor concat(llvm::ArrayRef<const RefTensor *> parts, int64_t dim);

/// The values of a dense elements attribute (a constant tensor), as doubles.
RefTensor fromElements(DenseElementsAttr elements);

/// `value` rounded to the floating-point `type` (bf16, f16, f32; f64
/// unchanged), through f32 as a kernel computing in f32 would.
double roundToType(Type type, double value);

} // namespace mlir::moe::reference

#endif // MOEC_LIB_REFERENCE_KERNELS_H
