//===- LayerPlan.h - what the CPU code generator needs of a layer -*- C++
//-*-===//
//
// A decomposed layer function (route -> dispatch -> experts [-> shared_expert]
// -> combine) reduced to its configuration and the values that carry its
// weights. Code generation and weight packing both work from this plan, so they
// agree on what each layer computes.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_CODEGEN_CPU_LAYERPLAN_H
#define MOEC_LIB_CODEGEN_CPU_LAYERPLAN_H

#include "dialects/moe/MoEOps.h"
#include "lib/Reference/WeightMaterializer.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <optional>

namespace mlir::moe::cpu {

/// The weights of one feed-forward (routed experts: stacked [E, ...]; shared:
/// 2-D).
using FfnPlan = reference::FfnValues;

/// The routed experts' first projection as MoLE latent factors
/// (moe-latent-factorize): every gate and up row of expert e is a row of some
/// A_e [N, R] times its group's basis B_g [R, H], g = e / (E / groups). Code
/// generation computes the latent input z = x [B_first; B_second]^T once per
/// token and group (the bases of all factorizations stacked), then small
/// per-expert matmuls with K = R from the group's z, instead of the product.
struct LatentPlan {
  int64_t rank = 0;   // R, the same for every factorization
  int64_t groups = 0; // bases per factorization
  /// The factorizations' A [E, N, R] and B [groups, R, H], in the order their
  /// bases are stacked in z: one (gate and up factorized together, or no
  /// gate) or two (gate's, then up's). Each is a moe.factorize result or its
  /// #moe.int_group dequantization (moe-quantize-experts after
  /// moe-latent-factorize), whose levels the packer keeps.
  SmallVector<Value, 2> factors, bases;
  /// Which factorization a half of the first projection reads, and the row
  /// of its A where the half's row 0 is.
  struct Source {
    int64_t factorization = 0;
    int64_t firstRow = 0;
  };
  std::optional<Source> gate; // none when ungated
  Source up;
};

struct LayerPlan {
  func::FuncOp function;
  int64_t layerIndex = 0;
  int64_t hidden = 0;     // H
  int64_t numExperts = 0; // E
  int64_t topK = 0;       // k
  RoutingAttr routing;
  Value routerWeight, routerBias, correctionBias;
  std::optional<double> capacityFactor;
  FfnPlan experts;
  /// Set when the experts' gate and up are all latent products the latent
  /// form computes exactly (f32 products of moe.factorize results, plain or
  /// integer-quantized).
  std::optional<LatentPlan> latent;
  std::optional<FfnPlan> shared;
  Value sharedSigmoidGate;
  bool weightsScaleInput = false;
  /// The per-channel factors of the layer's input (moe.scale_channels, the
  /// input side of moe-smooth-experts' fold), [H]; empty when every stage
  /// reads the input as given. Code generation embeds them in the code.
  SmallVector<float> inputScales;
  /// The routed experts' widths (moe.experts' expert_widths): expert e's
  /// first expertWidths[e] intermediate channels are computed, the rest
  /// skipped. Empty when every expert has the full width.
  SmallVector<int64_t> expertWidths;
};

/// Reads the plan of a decomposed layer function; emits an error at the
/// offending op and fails when the function is not the single
/// route/dispatch/experts/combine chain the CPU code generator handles.
FailureOr<LayerPlan> buildLayerPlan(func::FuncOp function);

} // namespace mlir::moe::cpu

#endif // MOEC_LIB_CODEGEN_CPU_LAYERPLAN_H
