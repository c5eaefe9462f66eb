//===- Gptq.cpp - group-wise integer quantization, RTN and GPTQ -----------===//

#include "lib/Compress/Gptq.h"

#include <algorithm>
#include <cmath>

using namespace mlir::moe;
using namespace mlir::moe::compress;

GroupScale compress::chooseGroupScale(const IntGrid &grid, const double *values,
                                      int64_t count, int64_t stride,
                                      const RoundScaleFn &roundScale) {
  double lo = 0.0, hi = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    lo = std::min(lo, values[i * stride]);
    hi = std::max(hi, values[i * stride]);
  }
  double range = grid.symmetric ? grid.clip * std::max(-lo, hi) / grid.qmax()
                                : (hi - lo) / grid.levels();
  GroupScale group;
  group.scale = range > 0 ? roundScale(range) : 1.0;
  group.zero = grid.symmetric ? 0.0 : std::nearbyint(-lo / group.scale);
  return group;
}

double compress::levelOf(const IntGrid &grid, const GroupScale &group,
                         double w) {
  double level = std::nearbyint(w / group.scale) + group.zero;
  return grid.symmetric ? std::clamp(level, -grid.qmax(), grid.qmax())
                        : std::clamp(level, 0.0, grid.levels());
}

QuantMatrix IntQuantized::dequantized(int64_t group) const {
  QuantMatrix result(levels.rows(), levels.cols());
  for (int64_t r = 0; r < levels.rows(); ++r)
    for (int64_t c = 0; c < levels.cols(); ++c)
      result(r, c) =
          (levels(r, c) - zeros(r, c / group)) * scales(r, c / group);
  return result;
}

IntQuantized compress::quantizeRtn(const QuantMatrix &weight,
                                   const IntGrid &grid, int64_t group,
                                   const RoundScaleFn &roundScale) {
  int64_t rows = weight.rows(), cols = weight.cols(), groups = cols / group;
  IntQuantized result{QuantMatrix(rows, cols), QuantMatrix(rows, groups),
                      QuantMatrix(rows, groups)};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      GroupScale scale =
          chooseGroupScale(grid, &weight(r, g * group), group, 1, roundScale);
      result.scales(r, g) = scale.scale;
      result.zeros(r, g) = scale.zero;
      for (int64_t c = g * group; c < (g + 1) * group; ++c)
        result.levels(r, c) = levelOf(grid, scale, weight(r, c));
    }
  return result;
}

QuantMatrix compress::gptqHessian(const QuantMatrix &rows) {
  int64_t n = std::max<int64_t>(rows.rows(), 1);
  QuantMatrix hessian = (2.0 / double(n)) * (rows.transpose() * rows);
  return hessian;
}

IntQuantized compress::quantizeGptq(const QuantMatrix &weight,
                                    QuantMatrix hessian, const IntGrid &grid,
                                    int64_t group,
                                    const RoundScaleFn &roundScale,
                                    double dampening) {
  int64_t rows = weight.rows(), cols = weight.cols(), groups = cols / group;
  if (!(hessian.diagonal().maxCoeff() > 0.0))
    return quantizeRtn(weight, grid, group, roundScale);

  // A column no input reaches has no error to compensate; H_jj = 1 keeps H
  // invertible without changing the other columns' solution, and the column
  // keeps its weight (reference GPTQ zeroes it, which only calibration inputs
  // would not notice).
  for (int64_t j = 0; j < cols; ++j)
    if (hessian(j, j) <= 0.0)
      hessian(j, j) = 1.0;
  double damp = dampening * hessian.diagonal().mean();
  hessian.diagonal().array() += damp;

  // The upper Cholesky factor U of H^-1 (H^-1 = U^T U): row i of U, divided by
  // U_ii, is how column i's error is best absorbed by the later columns.
  Eigen::LLT<QuantMatrix> hessianFactor(hessian);
  if (hessianFactor.info() != Eigen::Success)
    return quantizeRtn(weight, grid, group, roundScale);
  QuantMatrix inverse = hessianFactor.solve(QuantMatrix::Identity(cols, cols));
  Eigen::LLT<QuantMatrix> inverseFactor(inverse);
  if (inverseFactor.info() != Eigen::Success)
    return quantizeRtn(weight, grid, group, roundScale);
  QuantMatrix upper = inverseFactor.matrixU();

  IntQuantized result{QuantMatrix(rows, cols), QuantMatrix(rows, groups),
                      QuantMatrix(rows, groups)};
  QuantMatrix work = weight;
  // Lazy batch updates: errors are applied inside a block of columns at once
  // and to the columns after it once per block. Blocks hold whole groups, so
  // a group's scale is chosen from fully updated columns.
  int64_t block = group * std::max<int64_t>(1, 128 / group);
  std::vector<GroupScale> scales(rows);
  for (int64_t first = 0; first < cols; first += block) {
    int64_t last = std::min(first + block, cols), count = last - first;
    QuantMatrix errors(rows, count);
    for (int64_t i = 0; i < count; ++i) {
      int64_t column = first + i;
      if (column % group == 0)
        for (int64_t r = 0; r < rows; ++r) {
          scales[r] =
              chooseGroupScale(grid, &work(r, column), group, 1, roundScale);
          result.scales(r, column / group) = scales[r].scale;
          result.zeros(r, column / group) = scales[r].zero;
        }
      double diagonal = upper(column, column);
      for (int64_t r = 0; r < rows; ++r) {
        double w = work(r, column);
        double level = levelOf(grid, scales[r], w);
        result.levels(r, column) = level;
        errors(r, i) = (w - dequantizeLevel(scales[r], level)) / diagonal;
      }
      work.block(0, column + 1, rows, last - column - 1).noalias() -=
          errors.col(i) * upper.block(column, column + 1, 1, last - column - 1);
    }
    if (last < cols)
      work.rightCols(cols - last).noalias() -=
          errors * upper.block(first, last, count, cols - last);
  }
  return result;
}

double compress::hessianWeightedError(const QuantMatrix &weight,
                                      const QuantMatrix &quantized,
                                      const QuantMatrix &hessian) {
  QuantMatrix difference = weight - quantized;
  return (difference * hessian).cwiseProduct(difference).sum();
}
