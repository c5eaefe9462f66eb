//===- SuperExperts.cpp - experts whose activations the model depends on --===//
//
// Super experts produce the extreme down-projection outputs (massive
// activations) a model relies on. They are found by measurement: each
// expert's largest |down-projection output| on calibration tokens, compared
// with a high percentile of all experts' maxima. The pass only marks them
// (moe.super_experts); pruning and mixed precision read the mark.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "lib/Compress/ExpertScores.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <cmath>
#include <cstdio>
#include <map>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEMARKSUPEREXPERTS
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

constexpr llvm::StringLiteral kPassName = "moe-mark-super-experts";

/// The `percentile`-th percentile of `values` with linear interpolation
/// between order statistics (numpy's default), so thresholds agree with the
/// Super Experts reference code.
double percentileOf(std::vector<double> values, double percentile) {
  llvm::sort(values);
  double position = percentile / 100.0 * double(values.size() - 1);
  size_t below = size_t(std::floor(position));
  size_t above = std::min(below + 1, values.size() - 1);
  double fraction = position - double(below);
  return values[below] + fraction * (values[above] - values[below]);
}

struct MarkSuperExpertsPass
    : mlir::moe::impl::MoEMarkSuperExpertsBase<MarkSuperExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    Operation *root = getOperation();
    if (!(percentile >= 0.0 && percentile <= 100.0)) {
      root->emitError() << kPassName << ": percentile must be in [0, 100], got "
                        << compress::shortNumber(percentile);
      return signalPassFailure();
    }
    if (!(layerFraction > 0.0 && layerFraction <= 1.0)) {
      root->emitError() << kPassName
                        << ": layer-fraction must be in (0, 1], got "
                        << compress::shortNumber(layerFraction);
      return signalPassFailure();
    }
    SmallVector<LayerOp> layers;
    root->walk([&](LayerOp layer) { layers.push_back(layer); });
    if (layers.empty())
      return;
    FailureOr<std::unique_ptr<compress::PassData>> data =
        compress::PassData::open(root, kPassName, weights, calibration,
                                 /*needCalibration=*/true);
    if (failed(data))
      return signalPassFailure();

    // The considered layers: the leading fraction of the distinct layer
    // indices (at least one), as the reference code takes
    // int(0.75 * num_layers).
    std::map<int64_t, SmallVector<LayerOp>> byIndex;
    for (LayerOp layer : layers)
      byIndex[compress::layerIndexOf(layer)].push_back(layer);
    size_t considered = std::max<size_t>(
        1, size_t(std::floor(layerFraction * double(byIndex.size()))));

    SmallVector<std::pair<LayerOp, std::vector<double>>> measured;
    std::vector<double> allMaxima;
    for (auto [position, entry] : llvm::enumerate(byIndex)) {
      if (position >= considered)
        break;
      for (LayerOp layer : entry.second) {
        FailureOr<std::vector<double>> maxima = measure(layer, **data);
        if (failed(maxima))
          return signalPassFailure();
        llvm::append_range(allMaxima, *maxima);
        measured.push_back({layer, std::move(*maxima)});
      }
    }
    double threshold = percentileOf(allMaxima, percentile);
    for (auto &[layer, maxima] : measured) {
      SmallVector<int64_t> super;
      for (auto [e, m] : llvm::enumerate(maxima))
        if (m > threshold)
          super.push_back(e);
      if (super.empty())
        layer->removeAttr(compress::kSuperExpertsAttr);
      else
        layer->setAttr(compress::kSuperExpertsAttr,
                       DenseI64ArrayAttr::get(&getContext(), super));
      recordReport(layer, maxima, threshold, super);
    }
  }

  FailureOr<std::vector<double>> measure(LayerOp layer,
                                         compress::PassData &data) {
    if (failed(compress::requireStaticHidden(layer, kPassName)))
      return failure();
    auto input = cast<RankedTensorType>(layer.getInput().getType());
    FailureOr<reference::RefTensor> states =
        data.statesFor(layer, input.getDimSize(1));
    if (failed(states))
      return failure();
    FailureOr<compress::LayerObservation> observed =
        compress::observeLayer(layer, data.getWeights(), std::move(*states));
    if (failed(observed))
      return failure();
    return compress::maxDownProjectionOutputs(layer, *observed,
                                              data.getWeights());
  }

  void recordReport(LayerOp layer, ArrayRef<double> maxima, double threshold,
                    ArrayRef<int64_t> super) {
    auto function = layer->getParentOfType<func::FuncOp>();
    if (!function)
      return;
    Builder b(&getContext());
    function->setAttr(
        compress::reportName(kPassName),
        b.getDictionaryAttr(
            {b.getNamedAttr("max_activation", b.getDenseF64ArrayAttr(maxima)),
             b.getNamedAttr("super_experts", b.getDenseI64ArrayAttr(super)),
             b.getNamedAttr("threshold", b.getF64FloatAttr(threshold))}));
  }
};

} // namespace
