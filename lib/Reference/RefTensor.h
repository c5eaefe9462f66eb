//===- RefTensor.h - float64 tensors of the reference evaluator -*- C++ -*-===//

#ifndef MOEC_LIB_REFERENCE_REFTENSOR_H
#define MOEC_LIB_REFERENCE_REFTENSOR_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace mlir::moe::reference {

/// A dense row-major tensor of doubles. Integer tensors (expert ids, offsets,
/// stored bytes) are held as doubles too: every value they take is exact in a
/// double.
struct RefTensor {
  llvm::SmallVector<int64_t, 4> shape;
  std::vector<double> data;

  RefTensor() = default;
  explicit RefTensor(llvm::ArrayRef<int64_t> shape, double fill = 0.0)
      : shape(shape.begin(), shape.end()), data(numElements(shape), fill) {}
  explicit RefTensor(std::initializer_list<int64_t> shape, double fill = 0.0)
      : RefTensor(llvm::ArrayRef<int64_t>(shape), fill) {}

  static int64_t numElements(llvm::ArrayRef<int64_t> shape) {
    int64_t count = 1;
    for (int64_t dim : shape)
      count *= dim;
    return count;
  }
  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t dim(int64_t i) const { return shape[i]; }
  /// Row `row` of a 2-D tensor.
  double *row(int64_t r) { return data.data() + r * shape.back(); }
  const double *row(int64_t r) const { return data.data() + r * shape.back(); }
  /// The 2-D matrix `index` of a 3-D tensor [B, R, C] (e.g. one expert's
  /// weight).
  const double *matrix(int64_t index) const {
    return data.data() + index * shape[rank() - 2] * shape[rank() - 1];
  }
};

} // namespace mlir::moe::reference

#endif // MOEC_LIB_REFERENCE_REFTENSOR_H
