//===- RouterClipping.h - EAQuant's router quantization search --*- C++ -*-===//
//
// A router is quantized per output channel (one scale per expert row, the
// whole row one group). A few huge input columns set that scale and leave the
// other columns a coarse grid; clipping the scale to r * max|w| trades error on
// the outliers for resolution everywhere else. EAQuant chooses r on a grid in
// [0.35, 1] by the KL divergence between the full-precision routing
// distribution and the quantized one, restricted to the experts the
// full-precision router selects (the ones whose probabilities reach the
// output).
//
// Kept free of MLIR: the pass and the unit tests share it.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_COMPRESS_ROUTERCLIPPING_H
#define MOEC_LIB_COMPRESS_ROUTERCLIPPING_H

#include "lib/Compress/Gptq.h"

#include <vector>

namespace mlir::moe::compress {

/// EAQuant's grid: kRouterClipSteps ratios from kRouterClipLowest to 1.
inline constexpr double kRouterClipLowest = 0.35;
inline constexpr int64_t kRouterClipSteps = 101;

/// The router `router` [E, H] quantized symmetrically per row to `bits` with
/// clipping ratio `clip` and read back, each value rounded by `roundWeight`
/// (to the router's element type, as moe.dequantize writes it).
QuantMatrix quantizeRouter(const QuantMatrix &router, int64_t bits, double clip,
                           const RoundScaleFn &roundScale,
                           const RoundScaleFn &roundWeight);

/// Logits [T, E] = states [T, H] * router^T + bias (bias may be empty).
QuantMatrix routerLogits(const QuantMatrix &states, const QuantMatrix &router,
                         const std::vector<double> &bias);

/// Mean over tokens of sum_{i in topk_fp} p_i (log p_i - log q_i) +
/// p_rest (log p_rest - log q_rest), p and q the softmax of the
/// full-precision and the quantized logits and p_rest, q_rest the mass of the
/// experts outside the full-precision top-k (so it is a KL divergence, >= 0).
double routerKl(const QuantMatrix &fullLogits, const QuantMatrix &quantLogits,
                int64_t k);

/// Fraction of tokens whose top-k expert sets (by logit) are equal.
double topkAgreement(const QuantMatrix &fullLogits,
                     const QuantMatrix &quantLogits, int64_t k);

struct RouterClipChoice {
  double clip = 1.0;
  double klUnclipped = 0.0, klChosen = 0.0;
  double agreementUnclipped = 0.0, agreementChosen = 0.0;
};

/// The clipping ratio minimising routerKl on `states` over EAQuant's grid
/// (ties keep the larger ratio), or 1 without `search`; with the KL and top-k
/// agreement of r = 1 and of the choice.
RouterClipChoice chooseRouterClip(const QuantMatrix &router,
                                  const std::vector<double> &bias,
                                  const QuantMatrix &states, int64_t k,
                                  int64_t bits, bool search,
                                  const RoundScaleFn &roundScale,
                                  const RoundScaleFn &roundWeight);

} // namespace mlir::moe::compress

#endif // MOEC_LIB_COMPRESS_ROUTERCLIPPING_H
