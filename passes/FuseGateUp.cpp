//===- FuseGateUp.cpp - one weight for the gate and up projections --------===//

#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEGATEUP
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The fused [.., 2I, ..] tensor: gate rows first, then up (dimension `dim`).
Value concatHalves(RewriterBase &rewriter, Location loc, Value gate, Value up,
                   int64_t dim) {
  return tensor::ConcatOp::create(rewriter, loc, dim, ValueRange{gate, up})
      .getResult();
}

/// A zero tensor shaped like `like` (the missing half of a bias pair).
Value zerosLike(RewriterBase &rewriter, Location loc, Value like) {
  auto type = cast<RankedTensorType>(like.getType());
  auto zero = DenseElementsAttr::get(
      type, rewriter.getFloatAttr(type.getElementType(), 0.0));
  return arith::ConstantOp::create(rewriter, loc, type, zero).getResult();
}

struct Fused {
  Value up, upBias;
  FfnAttr ffn;
};

/// The fused weight and bias of one feed-forward (`batch` leading expert
/// dimensions), or nothing when it is not separate-gated.
std::optional<Fused> fuse(RewriterBase &rewriter, Location loc, FfnAttr ffn,
                          Value gate, Value up, Value gateBias, Value upBias,
                          int64_t batch) {
  if (ffn.getGlu() != GluLayout::Separate || !gate)
    return std::nullopt;
  // One concatenated tensor needs one element type; gate and up can differ
  // when only one of them was factorized (latent products are f32).
  if (cast<ShapedType>(gate.getType()).getElementType() !=
      cast<ShapedType>(up.getType()).getElementType())
    return std::nullopt;
  Fused fused;
  fused.up = concatHalves(rewriter, loc, gate, up, batch);
  if (gateBias || upBias)
    fused.upBias = concatHalves(
        rewriter, loc, gateBias ? gateBias : zerosLike(rewriter, loc, upBias),
        upBias ? upBias : zerosLike(rewriter, loc, gateBias), batch);
  fused.ffn = FfnAttr::get(ffn.getContext(), ffn.getActivation(),
                           GluLayout::Halves, ffn.getAlpha(), ffn.getLimit());
  return fused;
}

struct MoEFuseGateUpPass : moe::impl::MoEFuseGateUpBase<MoEFuseGateUpPass> {
  void runOnOperation() override {
    IRRewriter rewriter(&getContext());
    getOperation()->walk([&](Operation *op) {
      rewriter.setInsertionPoint(op);
      Location loc = op->getLoc();
      if (auto experts = dyn_cast<ExpertsOp>(op)) {
        std::optional<Fused> f =
            fuse(rewriter, loc, experts.getFfn(), experts.getGateProj(),
                 experts.getUpProj(), experts.getGateBias(),
                 experts.getUpBias(), /*batch=*/1);
        if (!f)
          return;
        rewriter.modifyOpInPlace(experts, [&] {
          experts.getGateProjMutable().clear();
          experts.getGateBiasMutable().clear();
          experts.getUpProjMutable().assign(f->up);
          if (f->upBias)
            experts.getUpBiasMutable().assign(f->upBias);
          experts.setFfnAttr(f->ffn);
        });
      } else if (auto shared = dyn_cast<SharedExpertOp>(op)) {
        std::optional<Fused> f =
            fuse(rewriter, loc, shared.getFfn(), shared.getGateProj(),
                 shared.getUpProj(), {}, {}, /*batch=*/0);
        if (!f)
          return;
        rewriter.modifyOpInPlace(shared, [&] {
          shared.getGateProjMutable().clear();
          shared.getUpProjMutable().assign(f->up);
          shared.setFfnAttr(f->ffn);
        });
      } else if (auto layer = dyn_cast<LayerOp>(op)) {
        std::optional<Fused> routed =
            fuse(rewriter, loc, layer.getFfn(), layer.getGateProj(),
                 layer.getUpProj(), layer.getGateBias(), layer.getUpBias(),
                 /*batch=*/1);
        std::optional<Fused> shared;
        if (layer.getSharedFfn())
          shared = fuse(rewriter, loc, *layer.getSharedFfn(),
                        layer.getSharedGateProj(), layer.getSharedUpProj(), {},
                        {}, /*batch=*/0);
        if (!routed && !shared)
          return;
        rewriter.modifyOpInPlace(layer, [&] {
          if (routed) {
            layer.getGateProjMutable().clear();
            layer.getGateBiasMutable().clear();
            layer.getUpProjMutable().assign(routed->up);
            if (routed->upBias)
              layer.getUpBiasMutable().assign(routed->upBias);
            layer.setFfnAttr(routed->ffn);
          }
          if (shared) {
            layer.getSharedGateProjMutable().clear();
            layer.getSharedUpProjMutable().assign(shared->up);
            layer.setSharedFfnAttr(shared->ffn);
          }
        });
      }
    });
  }
};

} // namespace
