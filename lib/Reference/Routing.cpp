//===- Routing.cpp - float64 semantics of moe.route -----------------------===//
//
// Per token: logits = x * gate^T (+ bias); scores; selection; weights. The
// selection breaks exact ties toward the lower expert id; test inputs keep the
// k-th and (k+1)-th scores apart, so nothing depends on that choice.
//
//===----------------------------------------------------------------------===//

#include "lib/Reference/Kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::reference;

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

/// Softmax over `values` (entries of -inf get 0).
std::vector<double> softmax(const std::vector<double> &values) {
  double maxValue = *std::max_element(values.begin(), values.end());
  std::vector<double> result(values.size());
  double sum = 0.0;
  for (size_t i = 0; i < values.size(); ++i)
    sum += result[i] = std::exp(values[i] - maxValue);
  for (double &v : result)
    v /= sum;
  return result;
}

/// Indices of the `k` largest entries, largest first; ties go to the lower
/// index.
std::vector<int64_t> topK(const std::vector<double> &values, int64_t k) {
  std::vector<int64_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return values[a] > values[b]; });
  order.resize(k);
  return order;
}

/// DeepSeek's group-limited mask: experts outside the `topk_group` best groups
/// are excluded (-inf, as transformers masks DeepSeek-V3; V2 masks
/// probabilities, all positive, with 0.0, which chooses the same).
void maskGroups(RoutingAttr routing, std::vector<double> &choice) {
  int64_t groups = routing.getNGroup();
  int64_t groupSize = static_cast<int64_t>(choice.size()) / groups;
  std::vector<double> groupScores(groups);
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<double> members(choice.begin() + g * groupSize,
                                choice.begin() + (g + 1) * groupSize);
    std::sort(members.begin(), members.end(), std::greater<double>());
    groupScores[g] = routing.getGroupScore() == GroupScore::Top2Sum
                         ? members[0] + members[1]
                         : members[0];
  }
  std::vector<int64_t> kept = topK(groupScores, routing.getTopkGroup());
  std::vector<bool> keep(groups, false);
  for (int64_t g : kept)
    keep[g] = true;
  for (int64_t e = 0; e < static_cast<int64_t>(choice.size()); ++e)
    if (!keep[e / groupSize])
      choice[e] = kNegInf;
}

/// PhiMoE's sparsemixer at inference: two rounds of a softmax restricted to the
/// experts whose logit is within a relative 2 * epsilon of the round's maximum.
void sparsemixer(const std::vector<double> &logits, double epsilon,
                 int64_t *ids, double *weights) {
  auto round = [&](const std::vector<double> &scores, int64_t *id,
                   double *weight) {
    int64_t best = topK(scores, 1)[0];
    double top = scores[best];
    std::vector<double> masked = scores;
    for (size_t j = 0; j < scores.size(); ++j) {
      // The mask compares against the ORIGINAL logits, as transformers does.
      double factor = std::max(std::abs(logits[j]), top);
      if ((top - logits[j]) / factor > 2.0 * epsilon)
        masked[j] = kNegInf;
    }
    *id = best;
    *weight = softmax(masked)[best];
  };
  round(logits, &ids[0], &weights[0]);
  std::vector<double> second = logits;
  second[ids[0]] = kNegInf;
  round(second, &ids[1], &weights[1]);
}

} // namespace

Routing reference::route(RoutingAttr routing, const RefTensor &input,
                         const RefTensor &gateWeight, const RefTensor *bias,
                         const RefTensor *correctionBias) {
  int64_t tokens = input.dim(0), hidden = input.dim(1);
  int64_t numExperts = gateWeight.dim(0);
  int64_t k = routing.getK();
  Routing result{RefTensor({tokens, k}, -1.0), RefTensor({tokens, k}, 0.0)};

  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> logits(numExperts);
    for (int64_t e = 0; e < numExperts; ++e) {
      double sum = bias ? bias->data[e] : 0.0;
      for (int64_t h = 0; h < hidden; ++h)
        sum += input.row(t)[h] * gateWeight.row(e)[h];
      logits[e] = sum;
    }
    std::vector<int64_t> chosen;
    std::vector<double> weights;

    switch (routing.getScoring()) {
    case ScoringFunc::Sparsemixer: {
      int64_t pair[2];
      double pairWeights[2];
      sparsemixer(logits, routing.getEpsilon().getValueAsDouble(), pair,
                  pairWeights);
      chosen.assign(pair, pair + 2);
      weights.assign(pairWeights, pairWeights + 2);
      break;
    }
    case ScoringFunc::SoftmaxAfterTopk:
    case ScoringFunc::SigmoidAfterTopk: {
      chosen = topK(logits, k);
      std::vector<double> selected;
      for (int64_t e : chosen)
        selected.push_back(logits[e]);
      if (routing.getScoring() == ScoringFunc::SoftmaxAfterTopk) {
        weights = softmax(selected);
      } else {
        for (double v : selected)
          weights.push_back(sigmoid(v));
      }
      break;
    }
    case ScoringFunc::Softmax:
    case ScoringFunc::Sigmoid: {
      std::vector<double> scores;
      if (routing.getScoring() == ScoringFunc::Softmax) {
        scores = softmax(logits);
      } else {
        for (double v : logits)
          scores.push_back(sigmoid(v));
      }
      // The correction bias only chooses; weights come from the unbiased
      // scores.
      std::vector<double> choice = scores;
      if (correctionBias)
        for (int64_t e = 0; e < numExperts; ++e)
          choice[e] += correctionBias->data[e];
      if (routing.getSelection() == ExpertSelection::GroupLimited)
        maskGroups(routing, choice);

      if (routing.getSelection() == ExpertSelection::TopP) {
        // The smallest prefix of the descending scores whose mass reaches p,
        // crossing element included, at most k experts.
        std::vector<int64_t> order = topK(choice, numExperts);
        double threshold = routing.getTopP().getValueAsDouble(), mass = 0.0;
        for (int64_t e : order) {
          if (static_cast<int64_t>(chosen.size()) == k || mass >= threshold)
            break;
          chosen.push_back(e);
          mass += scores[e];
        }
      } else {
        chosen = topK(choice, k);
      }
      for (int64_t e : chosen)
        weights.push_back(scores[e]);
      break;
    }
    }

    if (routing.getNormalize()) {
      double sum = routing.getNormEpsilonValue();
      for (double w : weights)
        sum += w;
      for (double &w : weights)
        w /= sum;
    }
    double scaling = routing.getScalingValue();
    for (size_t j = 0; j < chosen.size(); ++j) {
      result.ids.row(t)[j] = static_cast<double>(chosen[j]);
      result.weights.row(t)[j] = weights[j] * scaling;
    }
  }
  return result;
}
