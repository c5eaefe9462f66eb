//===- ExpertScores.cpp - per-expert measurements and expert selection ----===//

#include "lib/Compress/ExpertScores.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::compress;
using reference::RefTensor;

SmallVector<int64_t> compress::superExpertsOf(LayerOp layer) {
  SmallVector<int64_t> experts;
  if (auto attr = layer->getAttrOfType<DenseI64ArrayAttr>(kSuperExpertsAttr))
    llvm::append_range(experts, attr.asArrayRef());
  return experts;
}

RefTensor compress::expertInputRows(LayerOp layer,
                                    const LayerObservation &observed,
                                    int64_t expert) {
  RefTensor rows = observed.routedRows(expert);
  if (!layer.getWeightsScaleInput())
    return rows;
  std::vector<double> weights = observed.routedWeights(expert);
  int64_t hidden = rows.dim(1);
  for (int64_t r = 0; r < rows.dim(0); ++r)
    for (int64_t j = 0; j < hidden; ++j)
      rows.row(r)[j] *= weights[r];
  return rows;
}

/// Runs every expert that calibration tokens reach on its input rows
/// (expertInputRows) and hands `visit(e, outputs [n, H])` the result; experts
/// no token reaches are not read.
static LogicalResult
forEachRoutedOutput(LayerOp layer, const LayerObservation &observed,
                    reference::WeightMaterializer &weights,
                    function_ref<void(int64_t, RefTensor &)> visit) {
  reference::FfnValues routed = routedExperts(layer);
  for (int64_t e = 0; e < routed.numExperts; ++e) {
    if (observed.assignments[e].empty())
      continue;
    FailureOr<reference::ExpertMatrices> matrices =
        reference::loadExpertMatrices(weights, routed, e,
                                      reference::ExpertPart::All);
    if (failed(matrices))
      return failure();
    RefTensor out = expertForward(routed.ffn, *matrices,
                                  expertInputRows(layer, observed, e));
    visit(e, out);
  }
  return success();
}

FailureOr<std::vector<double>>
compress::maxDownProjectionOutputs(LayerOp layer,
                                   const LayerObservation &observed,
                                   reference::WeightMaterializer &weights) {
  std::vector<double> maxima(observed.numExperts, 0.0);
  if (failed(forEachRoutedOutput(
          layer, observed, weights, [&](int64_t e, RefTensor &out) {
            for (double v : out.data)
              maxima[e] = std::max(maxima[e], std::abs(v));
          })))
    return failure();
  return maxima;
}

static double norm(const double *v, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i)
    sum += v[i] * v[i];
  return std::sqrt(sum);
}

FailureOr<std::vector<double>>
compress::easyEpScores(LayerOp layer, const LayerObservation &observed,
                       reference::WeightMaterializer &weights) {
  reference::FfnValues routed = routedExperts(layer);
  const RefTensor &input = observed.input;
  int64_t tokens = input.dim(0), hidden = input.dim(1);
  bool scaleInput = layer.getWeightsScaleInput();

  // Each expert's contribution norms c_{i,t} (as (token, c) pairs) and the
  // layer's output y_t, accumulated from the same contributions.
  RefTensor output({tokens, hidden});
  std::vector<std::vector<std::pair<int64_t, double>>> contributions(
      routed.numExperts);
  LogicalResult routedOutputs = forEachRoutedOutput(
      layer, observed, weights, [&](int64_t e, RefTensor &out) {
        const auto &assigned = observed.assignments[e];
        std::vector<double> gates = observed.routedWeights(e);
        for (auto [r, pair] : llvm::enumerate(assigned)) {
          // With input scaling the routing weight is already inside E_i's
          // input.
          double g = scaleInput ? 1.0 : gates[r];
          double *row = out.row(r);
          for (int64_t j = 0; j < hidden; ++j) {
            row[j] *= g;
            output.row(pair.first)[j] += row[j];
          }
          contributions[e].push_back({pair.first, norm(row, hidden)});
        }
      });
  if (failed(routedOutputs))
    return failure();
  if (std::optional<reference::FfnValues> shared = sharedExpert(layer)) {
    FailureOr<reference::ExpertMatrices> matrices =
        reference::loadExpertMatrices(weights, *shared, 0,
                                      reference::ExpertPart::All);
    if (failed(matrices))
      return failure();
    RefTensor out = expertForward(shared->ffn, *matrices, input);
    std::optional<RefTensor> sigmoidGate;
    if (Value v = layer.getSharedSigmoidGate()) {
      FailureOr<RefTensor> gate = weights.get(v);
      if (failed(gate))
        return failure();
      sigmoidGate = std::move(*gate);
    }
    for (int64_t t = 0; t < tokens; ++t) {
      double scale = 1.0;
      if (sigmoidGate) {
        double logit = 0.0;
        for (int64_t j = 0; j < hidden; ++j)
          logit += input.row(t)[j] * sigmoidGate->data[j];
        scale = 1.0 / (1.0 + std::exp(-logit));
      }
      for (int64_t j = 0; j < hidden; ++j)
        output.row(t)[j] += scale * out.row(t)[j];
    }
  }

  // s_t = 1 - cos(h_t, h_t + y_t): how much the layer turns the residual
  // stream; a token the layer barely changes says little about its experts.
  std::vector<double> tokenWeight(tokens, 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    const double *h = input.row(t), *y = output.row(t);
    double dot = 0.0, hNorm = 0.0, afterNorm = 0.0;
    for (int64_t j = 0; j < hidden; ++j) {
      double after = h[j] + y[j];
      dot += h[j] * after;
      hNorm += h[j] * h[j];
      afterNorm += after * after;
    }
    double denominator = std::sqrt(hNorm) * std::sqrt(afterNorm);
    tokenWeight[t] = denominator > 0.0 ? 1.0 - dot / denominator : 0.0;
  }
  std::vector<double> scores(routed.numExperts, 0.0);
  for (int64_t e = 0; e < routed.numExperts; ++e)
    for (auto [token, c] : contributions[e])
      scores[e] += c * tokenWeight[token];
  return scores;
}

SmallVector<ExpertRun> compress::expertRuns(ArrayRef<int64_t> experts) {
  SmallVector<ExpertRun> runs;
  for (int64_t e : experts) {
    if (!runs.empty() && runs.back().end == e)
      ++runs.back().end;
    else
      runs.push_back({e, e + 1});
  }
  return runs;
}

Value compress::concatExpertRuns(OpBuilder &b, Location loc, Value stacked,
                                 ArrayRef<ExpertRun> runs,
                                 function_ref<Value(Value, size_t)> transform) {
  auto type = cast<RankedTensorType>(stacked.getType());
  int64_t rank = type.getRank();
  SmallVector<Value> parts;
  for (auto [i, run] : llvm::enumerate(runs)) {
    SmallVector<int64_t> offsets(rank, 0), sizes(type.getShape()),
        strides(rank, 1);
    offsets[0] = run.begin;
    sizes[0] = run.end - run.begin;
    Value slice = stacked;
    if (sizes[0] != type.getDimSize(0)) {
      auto sliceType = RankedTensorType::get(sizes, type.getElementType());
      slice = tensor::ExtractSliceOp::create(
          b, loc, sliceType, stacked, ValueRange{}, ValueRange{}, ValueRange{},
          b.getDenseI64ArrayAttr(offsets), b.getDenseI64ArrayAttr(sizes),
          b.getDenseI64ArrayAttr(strides));
    }
    parts.push_back(transform(slice, i));
  }
  if (parts.size() == 1)
    return parts.front();
  return tensor::ConcatOp::create(b, loc, /*dim=*/0, parts);
}
