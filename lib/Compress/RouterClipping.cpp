//===- RouterClipping.cpp - EAQuant's router quantization search ----------===//

#include "lib/Compress/RouterClipping.h"

#include <algorithm>
#include <cmath>
#include <numeric>

using namespace mlir::moe;
using namespace mlir::moe::compress;

QuantMatrix compress::quantizeRouter(const QuantMatrix &router, int64_t bits,
                                     double clip,
                                     const RoundScaleFn &roundScale,
                                     const RoundScaleFn &roundWeight) {
  IntGrid grid{bits, /*symmetric=*/true, clip};
  QuantMatrix result = quantizeRtn(router, grid, router.cols(), roundScale)
                           .dequantized(router.cols());
  return result.unaryExpr([&](double v) { return roundWeight(v); });
}

QuantMatrix compress::routerLogits(const QuantMatrix &states,
                                   const QuantMatrix &router,
                                   const std::vector<double> &bias) {
  QuantMatrix logits = states * router.transpose();
  if (!bias.empty())
    for (int64_t t = 0; t < logits.rows(); ++t)
      for (int64_t e = 0; e < logits.cols(); ++e)
        logits(t, e) += bias[e];
  return logits;
}

/// The indices of the k largest entries of row `t` (ties: lower index).
static std::vector<int64_t> topk(const QuantMatrix &logits, int64_t t,
                                 int64_t k) {
  std::vector<int64_t> order(logits.cols());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return logits(t, a) > logits(t, b);
  });
  order.resize(std::min<int64_t>(k, order.size()));
  std::sort(order.begin(), order.end());
  return order;
}

/// log softmax of row `t`.
static std::vector<double> logSoftmax(const QuantMatrix &logits, int64_t t) {
  double peak = logits.row(t).maxCoeff(), sum = 0.0;
  for (int64_t e = 0; e < logits.cols(); ++e)
    sum += std::exp(logits(t, e) - peak);
  std::vector<double> result(logits.cols());
  for (int64_t e = 0; e < logits.cols(); ++e)
    result[e] = logits(t, e) - peak - std::log(sum);
  return result;
}

double compress::routerKl(const QuantMatrix &fullLogits,
                          const QuantMatrix &quantLogits, int64_t k) {
  int64_t tokens = fullLogits.rows();
  if (tokens == 0)
    return 0.0;
  double total = 0.0;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> logP = logSoftmax(fullLogits, t),
                        logQ = logSoftmax(quantLogits, t);
    double restP = 1.0, restQ = 1.0;
    for (int64_t e : topk(fullLogits, t, k)) {
      double p = std::exp(logP[e]);
      total += p * (logP[e] - logQ[e]);
      restP -= p;
      restQ -= std::exp(logQ[e]);
    }
    // The other experts pooled as one outcome: without it the restricted sum
    // rewards a quantized router that is merely more confident (it can go
    // negative); with it this is the KL of the coarsened distributions.
    if (restP > 0.0 && restQ > 0.0)
      total += restP * (std::log(restP) - std::log(restQ));
  }
  return total / double(tokens);
}

double compress::topkAgreement(const QuantMatrix &fullLogits,
                               const QuantMatrix &quantLogits, int64_t k) {
  int64_t tokens = fullLogits.rows(), same = 0;
  for (int64_t t = 0; t < tokens; ++t)
    same += topk(fullLogits, t, k) == topk(quantLogits, t, k);
  return tokens ? double(same) / double(tokens) : 1.0;
}

RouterClipChoice compress::chooseRouterClip(
    const QuantMatrix &router, const std::vector<double> &bias,
    const QuantMatrix &states, int64_t k, int64_t bits, bool search,
    const RoundScaleFn &roundScale, const RoundScaleFn &roundWeight) {
  QuantMatrix full = routerLogits(states, router, bias);
  auto logitsAt = [&](double clip) {
    return routerLogits(
        states, quantizeRouter(router, bits, clip, roundScale, roundWeight),
        bias);
  };
  RouterClipChoice choice;
  QuantMatrix unclipped = logitsAt(1.0);
  choice.klUnclipped = choice.klChosen = routerKl(full, unclipped, k);
  choice.agreementUnclipped = choice.agreementChosen =
      topkAgreement(full, unclipped, k);
  if (!search)
    return choice;
  // From r = 1 down, so a tie keeps the larger ratio (less clipping).
  for (int64_t step = kRouterClipSteps - 2; step >= 0; --step) {
    double clip = kRouterClipLowest + (1.0 - kRouterClipLowest) * double(step) /
                                          double(kRouterClipSteps - 1);
    QuantMatrix logits = logitsAt(clip);
    double kl = routerKl(full, logits, k);
    if (kl < choice.klChosen) {
      choice.clip = clip;
      choice.klChosen = kl;
      choice.agreementChosen = topkAgreement(full, logits, k);
    }
  }
  return choice;
}
