//===- Experts.cpp - float64 semantics of dispatch, experts, combine ------===//

#include "lib/Reference/Kernels.h"

#include <algorithm>
#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::reference;

namespace {
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
} // namespace

double reference::activate(Activation activation, double x) {
  switch (activation) {
  case Activation::Silu:
    return x * sigmoid(x);
  case Activation::Gelu:
    return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  case Activation::GeluTanh: {
    const double c = std::sqrt(2.0 / M_PI);
    return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
  }
  case Activation::Relu:
    return std::max(x, 0.0);
  case Activation::ClampedSwiglu:
    break; // gated only; handled by gatedActivation
  }
  return x;
}

double reference::gatedActivation(FfnAttr ffn, double gate, double up) {
  if (ffn.getActivation() != Activation::ClampedSwiglu)
    return activate(ffn.getActivation(), gate) * up;
  double limit = ffn.getLimit().getValueAsDouble();
  double alpha = ffn.getAlpha().getValueAsDouble();
  gate = std::min(gate, limit);
  up = std::clamp(up, -limit, limit);
  return (up + 1.0) * gate * sigmoid(alpha * gate);
}

namespace {

/// y = W x (+ b) for one row; W is [rows, cols] row-major.
void matVec(const double *weight, int64_t rows, int64_t cols, const double *x,
            const double *bias, double *y) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum = bias ? bias[r] : 0.0;
    const double *w = weight + r * cols;
    for (int64_t c = 0; c < cols; ++c)
      sum += w[c] * x[c];
    y[r] = sum;
  }
}

const double *biasRow(const RefTensor *bias, int64_t expert) {
  return bias ? bias->data.data() + expert * bias->shape.back() : nullptr;
}

/// One row through expert `expert` (0 for a 2-D shared expert): out =
/// down(h(x)).
void ffnRow(FfnAttr ffn, const FfnWeights &w, int64_t expert, const double *x,
            double *out) {
  int64_t hidden = w.up->shape.back();
  int64_t upRows = w.up->dim(w.up->rank() - 2);
  std::vector<double> up(upRows);
  matVec(w.up->matrix(expert), upRows, hidden, x, biasRow(w.upBias, expert),
         up.data());

  std::vector<double> h;
  switch (ffn.getGlu()) {
  case GluLayout::None:
    for (double v : up)
      h.push_back(activate(ffn.getActivation(), v));
    break;
  case GluLayout::Separate: {
    std::vector<double> gate(upRows);
    matVec(w.gate->matrix(expert), upRows, hidden, x,
           biasRow(w.gateBias, expert), gate.data());
    for (int64_t i = 0; i < upRows; ++i)
      h.push_back(gatedActivation(ffn, gate[i], up[i]));
    break;
  }
  case GluLayout::Halves:
    for (int64_t i = 0; i < upRows / 2; ++i)
      h.push_back(gatedActivation(ffn, up[i], up[upRows / 2 + i]));
    break;
  case GluLayout::Interleaved:
    for (int64_t i = 0; i < upRows / 2; ++i)
      h.push_back(gatedActivation(ffn, up[2 * i], up[2 * i + 1]));
    break;
  }
  // Channels past an expert's width contribute nothing, whatever its weights
  // hold there; compiled code skips them, so they must not count here.
  if (!w.widths.empty())
    std::fill(h.begin() + std::min<int64_t>(w.widths[expert], h.size()),
              h.end(), 0.0);
  int64_t width = static_cast<int64_t>(h.size());
  int64_t outRows = w.down->dim(w.down->rank() - 2);
  matVec(w.down->matrix(expert), outRows, width, h.data(),
         biasRow(w.downBias, expert), out);
}

} // namespace

FailureOr<Dispatch>
reference::dispatch(EmitErrorFn emitError, const RefTensor &input,
                    const RefTensor &topkIds, const RefTensor &topkWeights,
                    int64_t numExperts, std::optional<double> capacityFactor) {
  int64_t tokens = topkIds.dim(0), k = topkIds.dim(1), hidden = input.dim(1);
  int64_t slots = tokens * k;
  int64_t capacity = slots;
  if (capacityFactor)
    capacity = static_cast<int64_t>(
        std::ceil(*capacityFactor * double(slots) / double(numExperts)));

  // Which slots each expert keeps, in token order (dropping past the capacity).
  std::vector<std::vector<int64_t>> kept(numExperts);
  for (int64_t s = 0; s < slots; ++s) {
    double id = topkIds.data[s];
    if (id == -1.0)
      continue;
    if (id < 0 || id >= double(numExperts) || id != std::floor(id))
      return emitError() << "expert id " << id << " of token " << s / k
                         << " is outside [0, " << numExperts << ")";
    auto &list = kept[static_cast<int64_t>(id)];
    if (static_cast<int64_t>(list.size()) < capacity)
      list.push_back(s);
  }

  Dispatch result{RefTensor({slots, hidden}), RefTensor({slots}),
                  RefTensor({slots}, -1.0), RefTensor({numExperts + 1})};
  int64_t row = 0;
  for (int64_t e = 0; e < numExperts; ++e) {
    result.expertOffsets.data[e] = double(row);
    for (int64_t s : kept[e]) {
      std::copy_n(input.row(s / k), hidden, result.permuted.row(row));
      result.permutedWeights.data[row] = topkWeights.data[s];
      result.sourceSlots.data[row] = double(s);
      ++row;
    }
  }
  result.expertOffsets.data[numExperts] = double(row);
  return result;
}

FailureOr<RefTensor> reference::experts(EmitErrorFn emitError, FfnAttr ffn,
                                        const RefTensor &input,
                                        const RefTensor &expertOffsets,
                                        const FfnWeights &weights,
                                        const RefTensor *rowScales) {
  int64_t rows = input.dim(0), hidden = input.dim(1);
  int64_t numExperts = expertOffsets.numel() - 1;
  int64_t outHidden = weights.down->dim(1);
  RefTensor result({rows, outHidden});
  std::vector<double> x(hidden);
  for (int64_t e = 0; e < numExperts; ++e) {
    double begin = expertOffsets.data[e], end = expertOffsets.data[e + 1];
    if (begin < 0 || end < begin || end > double(rows))
      return emitError() << "expert_offsets [" << begin << ", " << end
                         << ") of expert " << e
                         << " are not a valid range of the " << rows << " rows";
    for (int64_t r = int64_t(begin); r < int64_t(end); ++r) {
      double scale = rowScales ? rowScales->data[r] : 1.0;
      for (int64_t h = 0; h < hidden; ++h)
        x[h] = input.row(r)[h] * scale;
      ffnRow(ffn, weights, e, x.data(), result.row(r));
    }
  }
  return result;
}

RefTensor reference::sharedExpert(FfnAttr ffn, const RefTensor &input,
                                  const FfnWeights &weights,
                                  const RefTensor *sigmoidGate) {
  int64_t tokens = input.dim(0), hidden = input.dim(1);
  RefTensor result({tokens, weights.down->dim(0)});
  for (int64_t t = 0; t < tokens; ++t) {
    ffnRow(ffn, weights, /*expert=*/0, input.row(t), result.row(t));
    if (!sigmoidGate)
      continue;
    double logit = 0.0;
    for (int64_t h = 0; h < hidden; ++h)
      logit += input.row(t)[h] * sigmoidGate->data[h];
    double gate = sigmoid(logit);
    for (int64_t h = 0; h < result.dim(1); ++h)
      result.row(t)[h] *= gate;
  }
  return result;
}

FailureOr<RefTensor>
reference::combine(EmitErrorFn emitError, const RefTensor &expertOutputs,
                   const RefTensor &sourceSlots, const RefTensor &topkWeights,
                   const RefTensor *addend, bool unweighted) {
  int64_t tokens = topkWeights.dim(0), k = topkWeights.dim(1);
  int64_t hidden = expertOutputs.dim(1);
  RefTensor result = addend ? *addend : RefTensor({tokens, hidden});
  // Rows are grouped by ascending expert id, so this sums each token's experts
  // in that order, as transformers' expert loop does.
  for (int64_t r = 0; r < expertOutputs.dim(0); ++r) {
    double slot = sourceSlots.data[r];
    if (slot == -1.0)
      continue;
    if (slot < 0 || slot >= double(tokens * k))
      return emitError() << "source slot " << slot << " of row " << r
                         << " is outside [0, " << tokens * k << ")";
    int64_t s = static_cast<int64_t>(slot);
    double weight = unweighted ? 1.0 : topkWeights.data[s];
    for (int64_t h = 0; h < hidden; ++h)
      result.row(s / k)[h] += weight * expertOutputs.row(r)[h];
  }
  return result;
}
