//===- PruneExperts.cpp - EASY-EP expert pruning --------------------------===//
//
// Whole experts are removed from each layer by a calibration score (EASY-EP):
// an expert matters in proportion to how much it contributes to tokens that
// the layer changes much. Removing an expert removes its router row (and
// bias entries) too, so it can never be selected; every stacked weight keeps
// the surviving experts, as slices of the original references.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "lib/Compress/ExpertScores.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <numeric>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPRUNEEXPERTS
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

constexpr llvm::StringLiteral kPassName = "moe-prune-experts";

/// The operands of `layer` with a leading expert dimension: the router and
/// its biases, and the routed experts' weights and biases.
SmallVector<OpOperand *> perExpertOperands(LayerOp layer) {
  SmallVector<OpOperand *> operands;
  auto add = [&](MutableOperandRange range) {
    for (OpOperand &operand : range)
      operands.push_back(&operand);
  };
  add(layer.getRouterWeightMutable());
  add(layer.getRouterBiasMutable());
  add(layer.getCorrectionBiasMutable());
  add(layer.getGateProjMutable());
  add(layer.getUpProjMutable());
  add(layer.getDownProjMutable());
  add(layer.getGateBiasMutable());
  add(layer.getUpBiasMutable());
  add(layer.getDownBiasMutable());
  return operands;
}

struct PruneExpertsPass
    : mlir::moe::impl::MoEPruneExpertsBase<PruneExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    Operation *root = getOperation();
    if (keep < 1) {
      root->emitError() << kPassName
                        << ": give the number of experts to keep per layer "
                           "(keep=N, N >= 1), got "
                        << int64_t(keep);
      return signalPassFailure();
    }
    WalkResult decomposed =
        root->walk([&](RouteOp route) {
          route.emitOpError()
              << kPassName
              << " prunes moe.layer ops; run it before moe-decompose";
          return WalkResult::interrupt();
        });
    if (decomposed.wasInterrupted())
      return signalPassFailure();
    if (failed(compress::transformLayers(
            root, kPassName, weights, calibration, /*needCalibration=*/true,
            [&](LayerOp layer) { return checkLayer(layer); },
            [&](LayerOp layer, compress::PassData &data) {
              return pruneLayer(layer, data);
            })))
      return signalPassFailure();
  }

  LogicalResult checkLayer(LayerOp layer) {
    int64_t experts =
        cast<RankedTensorType>(layer.getRouterWeight().getType()).getDimSize(0);
    RoutingAttr routing = layer.getRouting();
    if (keep > experts)
      return layer.emitOpError()
             << kPassName << ": keep=" << int64_t(keep)
             << " exceeds the layer's " << experts << " experts";
    if (keep < int64_t(routing.getK()))
      return layer.emitOpError() << kPassName << ": keep=" << int64_t(keep)
                                 << " is below the layer's k=" << routing.getK()
                                 << "; every token selects k distinct experts";
    if (routing.getNGroup() > 1)
      return layer.emitOpError()
             << kPassName << ": the layer routes group-limited (n_group="
             << routing.getNGroup()
             << "); removing experts would change the expert groups, which "
                "is not supported";
    SmallVector<int64_t> super = compress::superExpertsOf(layer);
    for (int64_t e : super)
      if (e < 0 || e >= experts)
        return layer.emitOpError()
               << kPassName << ": " << compress::kSuperExpertsAttr
               << " names expert " << e << " of a layer with " << experts
               << " experts";
    if (int64_t(super.size()) > keep)
      return layer.emitOpError()
             << kPassName << ": the layer has " << super.size()
             << " super experts (" << compress::kSuperExpertsAttr
             << "), more than keep=" << int64_t(keep)
             << "; super experts are never pruned";
    return success();
  }

  LogicalResult pruneLayer(LayerOp layer, compress::PassData &data) {
    auto input = cast<RankedTensorType>(layer.getInput().getType());
    FailureOr<reference::RefTensor> states =
        data.statesFor(layer, input.getDimSize(1));
    if (failed(states))
      return failure();
    reference::WeightMaterializer &materializer = data.getWeights();
    FailureOr<compress::LayerObservation> observed =
        compress::observeLayer(layer, materializer, std::move(*states));
    if (failed(observed))
      return failure();
    FailureOr<std::vector<double>> scores =
        compress::easyEpScores(layer, *observed, materializer);
    if (failed(scores))
      return failure();
    int64_t experts = scores->size();

    // Super experts first, then by descending score (the lower index on a
    // tie); the first `keep` survive, in ascending original order.
    SmallVector<int64_t> super = compress::superExpertsOf(layer);
    SmallVector<int64_t> order(experts);
    std::iota(order.begin(), order.end(), 0);
    llvm::stable_sort(order, [&](int64_t a, int64_t b) {
      bool superA = llvm::is_contained(super, a),
           superB = llvm::is_contained(super, b);
      if (superA != superB)
        return superA;
      return (*scores)[a] > (*scores)[b];
    });
    SmallVector<int64_t> kept(order.begin(), order.begin() + keep);
    llvm::sort(kept);

    SmallVector<compress::ExpertRun> runs = compress::expertRuns(kept);
    OpBuilder b(layer);
    // One selection per value: a weight read twice is sliced once.
    DenseMap<Value, Value> selected;
    for (OpOperand *operand : perExpertOperands(layer)) {
      Value value = operand->get();
      auto it = selected.find(value);
      if (it == selected.end())
        it =
            selected
                .insert({value, compress::concatExpertRuns(
                                    b, value.getLoc(), value, runs,
                                    [](Value slice, size_t) { return slice; })})
                .first;
      operand->set(it->second);
    }

    SmallVector<int64_t> renumbered;
    for (auto [position, e] : llvm::enumerate(kept))
      if (llvm::is_contained(super, e))
        renumbered.push_back(position);
    if (!renumbered.empty())
      layer->setAttr(compress::kSuperExpertsAttr,
                     b.getDenseI64ArrayAttr(renumbered));
    // Pruning twice composes: the kept indices stay original ones.
    SmallVector<int64_t> original(kept);
    if (auto previous =
            layer->getAttrOfType<DenseI64ArrayAttr>(compress::kKeptExpertsAttr))
      for (int64_t &e : original)
        e = previous.asArrayRef()[e];
    layer->setAttr(compress::kKeptExpertsAttr,
                   b.getDenseI64ArrayAttr(original));
    recordReport(layer, experts, original, *scores);
    return success();
  }

  void recordReport(LayerOp layer, int64_t before, ArrayRef<int64_t> kept,
                    ArrayRef<double> scores) {
    auto function = layer->getParentOfType<func::FuncOp>();
    if (!function)
      return;
    Builder b(&getContext());
    function->setAttr(
        compress::reportName(kPassName),
        b.getDictionaryAttr(
            {b.getNamedAttr("experts_after", b.getI64IntegerAttr(kept.size())),
             b.getNamedAttr("experts_before", b.getI64IntegerAttr(before)),
             b.getNamedAttr("kept", b.getDenseI64ArrayAttr(kept)),
             b.getNamedAttr("scores", b.getDenseF64ArrayAttr(scores))}));
  }
};

} // namespace
