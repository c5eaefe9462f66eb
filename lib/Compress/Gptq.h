//===- Gptq.h - group-wise integer quantization, RTN and GPTQ ---*- C++ -*-===//
//
// The integer grid of #moe.int_group (symmetric: levels [-qmax, qmax] around
// zero; asymmetric: 2^bits levels from the group's minimum to its maximum)
// and two ways of choosing levels on it for a weight W [rows, cols]:
//
// - round to nearest (RTN): each group of `group` columns gets its scale from
//   its own values and each value the nearest level;
// - GPTQ (Frantar et al.): with a Hessian H = (2/n) X^T X of the inputs X
//   [n, cols] the weight sees, columns are quantized in order and each
//   column's rounding error is spread over the columns not yet quantized
//   through the Cholesky factor of H^-1, minimising tr((W - Q) H (W - Q)^T).
//   MoEQuant's router-weighted variant is the same with each input row scaled
//   by the square root of its routing weight.
//
// Kept free of MLIR so the weight materializer (which executes a recorded
// moe.quantize) and the unit tests share it.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_COMPRESS_GPTQ_H
#define MOEC_LIB_COMPRESS_GPTQ_H

#include <Eigen/Dense>

#include <cstdint>
#include <functional>

namespace mlir::moe::compress {

using QuantMatrix =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// How scales are stored: the chosen scale rounded to the storage type, so
/// levels are computed against exactly the scale dequantization reads.
using RoundScaleFn = std::function<double(double)>;

/// The integer grid of one #moe.int_group encoding.
struct IntGrid {
  int64_t bits = 8;
  bool symmetric = true;
  /// Symmetric only: the scale covers clip * max|w| (values beyond clamp).
  double clip = 1.0;

  double qmax() const { return double((int64_t(1) << (bits - 1)) - 1); }
  double levels() const { return double((int64_t(1) << bits) - 1); }
};

/// One group's scale and zero point (0 when symmetric).
struct GroupScale {
  double scale = 1.0;
  double zero = 0.0;
};

/// The scale and zero point of the `count` values `values[0], values[stride],
/// ...`: symmetric clip * max|w| / qmax, asymmetric (max - min) / (2^bits - 1)
/// with min and max widened to include 0 (so 0 is exact) and zero point
/// round(-min / scale). An all-zero group gets scale 1.
GroupScale chooseGroupScale(const IntGrid &grid, const double *values,
                            int64_t count, int64_t stride,
                            const RoundScaleFn &roundScale);

/// The level of `w` (symmetric in [-qmax, qmax], asymmetric in [0, 2^bits-1]).
double levelOf(const IntGrid &grid, const GroupScale &group, double w);

/// What w becomes: (level - zero) * scale.
inline double dequantizeLevel(const GroupScale &group, double level) {
  return (level - group.zero) * group.scale;
}

/// Levels [rows, cols], scales and zero points [rows, cols / group].
struct IntQuantized {
  QuantMatrix levels, scales, zeros;

  /// The weight the levels stand for.
  QuantMatrix dequantized(int64_t group) const;
};

/// Round to nearest, group by group.
IntQuantized quantizeRtn(const QuantMatrix &weight, const IntGrid &grid,
                         int64_t group, const RoundScaleFn &roundScale);

/// The relative dampening GPTQ adds to H's diagonal (of its mean diagonal).
inline constexpr double kGptqDampening = 0.01;

/// H = (2 / n) X^T X for inputs `rows` [n, cols] (zero rows add nothing).
QuantMatrix gptqHessian(const QuantMatrix &rows);

/// GPTQ of `weight` [rows, cols] with Hessian `hessian` [cols, cols], columns
/// in order, each group's scale chosen from the updated weights when the group
/// starts. Columns with H_jj = 0 (no input reaches them) get H_jj = 1 and keep
/// their weight; an all-zero H falls back to round to nearest.
IntQuantized quantizeGptq(const QuantMatrix &weight, QuantMatrix hessian,
                          const IntGrid &grid, int64_t group,
                          const RoundScaleFn &roundScale,
                          double dampening = kGptqDampening);

/// tr((W - Q) H (W - Q)^T): the output error the inputs of H see.
double hessianWeightedError(const QuantMatrix &weight,
                            const QuantMatrix &quantized,
                            const QuantMatrix &hessian);

} // namespace mlir::moe::compress

#endif // MOEC_LIB_COMPRESS_GPTQ_H
