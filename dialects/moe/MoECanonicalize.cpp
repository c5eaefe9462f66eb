//===- MoECanonicalize.cpp - moe dialect canonicalization -----------------===//
//
// Rewrites that put equivalent configurations into one form, so later passes
// and code generation see fewer cases. Each preserves results exactly.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoEOps.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;

/// Group-limited selection that keeps every group (topk_group == n_group, which
/// includes a single group) masks no expert: it chooses exactly what plain
/// top-k chooses, correction bias included. Returns the top-k form, or null
/// when `routing` is already canonical.
static RoutingAttr simplifyRouting(RoutingAttr routing) {
  if (routing.getSelection() != ExpertSelection::GroupLimited ||
      routing.getTopkGroup() != routing.getNGroup())
    return {};
  return RoutingAttr::get(routing.getContext(), routing.getScoring(),
                          routing.getK(), ExpertSelection::TopK,
                          routing.getNormalize(), routing.getNormEpsilon(),
                          routing.getScaling(), /*n_group=*/0,
                          /*topk_group=*/0, GroupScore::Max, routing.getTopP(),
                          routing.getEpsilon(), routing.getLogitsType());
}

namespace {
/// Applies simplifyRouting to any op with a `routing` attribute (moe.route,
/// moe.layer).
template <typename OpTy> struct SimplifyRouting : OpRewritePattern<OpTy> {
  using OpRewritePattern<OpTy>::OpRewritePattern;
  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const override {
    RoutingAttr simplified = simplifyRouting(op.getRouting());
    if (!simplified)
      return rewriter.notifyMatchFailure(op, "routing already canonical");
    rewriter.modifyOpInPlace(op, [&] { op.setRoutingAttr(simplified); });
    return success();
  }
};
} // namespace

void RouteOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                          MLIRContext *context) {
  results.add<SimplifyRouting<RouteOp>>(context);
}

void LayerOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                          MLIRContext *context) {
  results.add<SimplifyRouting<LayerOp>>(context);
}
