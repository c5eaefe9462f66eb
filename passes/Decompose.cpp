//===- Decompose.cpp - moe.layer into explicit pieces ---------------------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSE
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Replaces `layer` by its explicit pieces.
void decomposeLayer(RewriterBase &rewriter, LayerOp layer) {
  rewriter.setInsertionPoint(layer);
  Location loc = layer.getLoc();
  auto inputType = cast<RankedTensorType>(layer.getInput().getType());
  int64_t tokens = inputType.getDimSize(0);
  int64_t hidden = inputType.getDimSize(1);
  int64_t experts =
      cast<RankedTensorType>(layer.getRouterWeight().getType()).getDimSize(0);
  int64_t k = layer.getRouting().getK();
  int64_t rows =
      ShapedType::isDynamic(tokens) ? ShapedType::kDynamic : tokens * k;
  Type i32 = rewriter.getI32Type();
  Type f32 = rewriter.getF32Type();

  auto route =
      RouteOp::create(rewriter, loc, RankedTensorType::get({tokens, k}, i32),
                      RankedTensorType::get({tokens, k}, f32), layer.getInput(),
                      layer.getRouterWeight(), layer.getRouterBias(),
                      layer.getCorrectionBias(), layer.getRouting());

  auto permutedType =
      RankedTensorType::get({rows, hidden}, inputType.getElementType());
  auto dispatch = DispatchOp::create(
      rewriter, loc, permutedType, RankedTensorType::get({rows}, f32),
      RankedTensorType::get({rows}, i32),
      RankedTensorType::get({experts + 1}, i32), layer.getInput(),
      route.getTopkIds(), route.getTopkWeights(),
      layer.getCapacityFactorAttr());

  bool scaleInput = layer.getWeightsScaleInput();
  auto expertsOp = ExpertsOp::create(
      rewriter, loc, permutedType, dispatch.getPermuted(),
      dispatch.getExpertOffsets(), layer.getGateProj(), layer.getUpProj(),
      layer.getDownProj(), layer.getGateBias(), layer.getUpBias(),
      layer.getDownBias(), scaleInput ? dispatch.getPermutedWeights() : Value(),
      layer.getFfn(), layer.getExpertWidthsAttr());

  Value shared;
  if (layer.getSharedUpProj())
    shared = SharedExpertOp::create(
        rewriter, loc, inputType, layer.getInput(), layer.getSharedGateProj(),
        layer.getSharedUpProj(), layer.getSharedDownProj(),
        layer.getSharedSigmoidGate(), *layer.getSharedFfn());

  auto combine = CombineOp::create(
      rewriter, loc, inputType, expertsOp.getResult(),
      dispatch.getSourceSlots(), route.getTopkWeights(), shared,
      scaleInput ? rewriter.getUnitAttr() : UnitAttr());
  rewriter.replaceOp(layer, combine.getResult());
}

struct MoEDecomposePass : moe::impl::MoEDecomposeBase<MoEDecomposePass> {
  void runOnOperation() override {
    // The rewrite creates no new layers, so one walk over the existing ones is
    // enough.
    SmallVector<LayerOp> layers;
    getOperation()->walk([&](LayerOp layer) { layers.push_back(layer); });
    IRRewriter rewriter(&getContext());
    for (LayerOp layer : layers)
      decomposeLayer(rewriter, layer);
  }
};

} // namespace
