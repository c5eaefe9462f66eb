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
  std::optional<FfnPlan> shared;
  Value sharedSigmoidGate;
  bool weightsScaleInput = false;
  /// The per-channel factors of the layer's input (moe.scale_channels, the
  /// input side of moe-smooth-experts' fold), [H]; empty when every stage
  /// reads the input as given. Code generation embeds them in the code.
  SmallVector<float> inputScales;
};

/// Reads the plan of a decomposed layer function; emits an error at the
/// offending op and fails when the function is not the single
/// route/dispatch/experts/combine chain the CPU code generator handles.
FailureOr<LayerPlan> buildLayerPlan(func::FuncOp function);

} // namespace mlir::moe::cpu

#endif // MOEC_LIB_CODEGEN_CPU_LAYERPLAN_H
