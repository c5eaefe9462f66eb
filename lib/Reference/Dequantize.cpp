//===- Dequantize.cpp - float64 semantics of moe.dequantize ---------------===//

#include "lib/Reference/Kernels.h"
#include "lib/Support/FloatFormats.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/TypeSwitch.h"

#include <algorithm>

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::reference;

double reference::roundToType(Type type, double value) {
  if (type.isF64())
    return value;
  float single = static_cast<float>(value);
  if (type.isF32())
    return single;
  if (type.isBF16())
    return ::moe::bf16ToFloat(::moe::floatToBf16(single));
  if (auto floatType = dyn_cast<FloatType>(type)) {
    llvm::APFloat rounded(single);
    bool lossy = false;
    rounded.convert(floatType.getFloatSemantics(),
                    llvm::APFloat::rmNearestTiesToEven, &lossy);
    rounded.convert(llvm::APFloat::IEEEdouble(),
                    llvm::APFloat::rmNearestTiesToEven, &lossy);
    return rounded.convertToDouble();
  }
  return value;
}

RefTensor reference::concat(llvm::ArrayRef<const RefTensor *> parts,
                            int64_t dim) {
  SmallVector<int64_t> shape(parts[0]->shape.begin(), parts[0]->shape.end());
  shape[dim] = 0;
  for (const RefTensor *part : parts)
    shape[dim] += part->dim(dim);
  RefTensor result(shape);
  // Outer = product of dims before `dim`; each part contributes a contiguous
  // chunk per outer.
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d)
    outer *= shape[d];
  for (int64_t d = dim + 1; d < int64_t(shape.size()); ++d)
    inner *= shape[d];
  double *out = result.data.data();
  for (int64_t o = 0; o < outer; ++o)
    for (const RefTensor *part : parts) {
      int64_t chunk = part->dim(dim) * inner;
      out = std::copy_n(part->data.data() + o * chunk, chunk, out);
    }
  return result;
}

RefTensor reference::fromElements(DenseElementsAttr elements) {
  auto type = cast<ShapedType>(elements.getType());
  RefTensor result(type.getShape());
  if (isa<FloatType>(type.getElementType())) {
    auto values = elements.getValues<llvm::APFloat>();
    for (int64_t i = 0; i < result.numel(); ++i)
      result.data[i] = values[i].convertToDouble();
  } else {
    auto values = elements.getValues<llvm::APInt>();
    for (int64_t i = 0; i < result.numel(); ++i)
      result.data[i] = double(values[i].getSExtValue());
  }
  return result;
}

namespace {

/// Visits every element of a logical tensor [batch..., rows, cols] with its
/// batch index and (row, col), writing what `element` returns.
template <typename Fn>
RefTensor forEachElement(RankedTensorType resultType, Fn element) {
  RefTensor result(resultType.getShape());
  int64_t rank = resultType.getRank();
  int64_t rows = resultType.getDimSize(rank - 2),
          cols = resultType.getDimSize(rank - 1);
  int64_t batches = result.numel() / (rows * cols);
  Type elementType = resultType.getElementType();
  double *out = result.data.data();
  for (int64_t b = 0; b < batches; ++b)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        *out++ = roundToType(elementType, element(b, r, c));
  return result;
}

/// Element (b, r, c) of a stored tensor whose last two dims are [rows, cols].
double at(const RefTensor &t, int64_t b, int64_t r, int64_t c) {
  int64_t rows = t.dim(t.rank() - 2), cols = t.dim(t.rank() - 1);
  return t.data[(b * rows + r) * cols + c];
}

} // namespace

FailureOr<RefTensor> reference::dequantize(
    EmitErrorFn emitError, WeightEncodingAttrInterface encoding,
    llvm::ArrayRef<const RefTensor *> storage, RankedTensorType resultType) {
  return llvm::TypeSwitch<Attribute, FailureOr<RefTensor>>(encoding)
      .Case([&](Fp8BlockEncodingAttr fp8) -> FailureOr<RefTensor> {
        const RefTensor &values = *storage[0], &scales = *storage[1];
        int64_t br = fp8.getBlockRows(), bc = fp8.getBlockCols();
        // As transformers dequantizes: the product in f32, then the result
        // type.
        return forEachElement(resultType, [&](int64_t b, int64_t r, int64_t c) {
          return double(float(at(values, b, r, c)) *
                        float(at(scales, b, r / br, c / bc)));
        });
      })
      .Case([&](Mxfp4EncodingAttr) -> FailureOr<RefTensor> {
        const RefTensor &blocks = *storage[0], &scales = *storage[1];
        int64_t rank = resultType.getRank();
        int64_t rows = resultType.getDimSize(rank - 2),
                cols = resultType.getDimSize(rank - 1);
        int64_t blocksPerRow = cols / 32;
        return forEachElement(resultType, [&](int64_t b, int64_t r, int64_t c) {
          int64_t block = c / 32, within = c % 32;
          int64_t rowIndex = b * rows + r;
          uint8_t byte = uint8_t(
              blocks.data[(rowIndex * blocksPerRow + block) * 16 + within / 2]);
          uint8_t nibble = within % 2 ? byte >> 4 : byte & 0xF;
          uint8_t scale = uint8_t(scales.data[rowIndex * blocksPerRow + block]);
          return double(::moe::fp4e2m1ToFloat(nibble)) *
                 std::ldexp(1.0, int(scale) - 127);
        });
      })
      .Case([&](IntGroupEncodingAttr quant) -> FailureOr<RefTensor> {
        const RefTensor &values = *storage[0], &scales = *storage[1];
        const RefTensor *zeros = quant.getSymmetric() ? nullptr : storage[2];
        int64_t group = quant.getGroupSize();
        bool packed = quant.getBits() == 4;
        return forEachElement(resultType, [&](int64_t b, int64_t r, int64_t c) {
          double q;
          if (packed) {
            int byte = int(at(values, b, r, c / 2)) & 0xFF;
            int nibble = c % 2 ? byte >> 4 : byte & 0xF;
            // Symmetric 4-bit values are two's complement; asymmetric ones are
            // unsigned.
            q = quant.getSymmetric() && nibble >= 8 ? nibble - 16 : nibble;
          } else {
            q = at(values, b, r, c);
          }
          double zero = zeros ? at(*zeros, b, r, c / group) : 0.0;
          return (q - zero) * at(scales, b, r, c / group);
        });
      })
      .Default(
          [&](Attribute) -> FailureOr<RefTensor> {
            return emitError()
                   << "the reference evaluator has no semantics for encoding "
                   << encoding;
          });
}

FailureOr<SmallVector<RefTensor>>
reference::quantize(EmitErrorFn emitError, WeightEncodingAttrInterface encoding,
                    const RefTensor &input, TypeRange storageTypes) {
  auto quant = dyn_cast<IntGroupEncodingAttr>(encoding);
  if (!quant)
    return emitError() << "has no quantizer for encoding " << encoding,
           failure();
  int64_t bits = quant.getBits(), group = quant.getGroupSize();
  bool symmetric = quant.getSymmetric(), packed = bits == 4;
  int64_t rank = input.rank();
  int64_t rows = input.dim(rank - 2), cols = input.dim(rank - 1);
  int64_t batches = input.numel() / (rows * cols), groups = cols / group;
  SmallVector<RefTensor> storage;
  for (Type type : storageTypes)
    storage.emplace_back(cast<RankedTensorType>(type).getShape());
  RefTensor &values = storage[0], &scales = storage[1];
  Type scaleType = cast<RankedTensorType>(storageTypes[1]).getElementType();
  // Symmetric: [-qmax, qmax] around 0. Asymmetric: 2^bits levels from the
  // group's min to its max (both widened to include 0, so 0 is exact); 8-bit
  // values and zero points are shifted by -128 to fit a signed byte, 4-bit ones
  // stay unsigned nibbles (as moe.dequantize reads them).
  double qmax = double((int64_t(1) << (bits - 1)) - 1);
  double levels = double((int64_t(1) << bits) - 1);
  double shift = !symmetric && !packed ? 128.0 : 0.0;
  std::vector<double> q(cols);
  for (int64_t b = 0; b < batches; ++b)
    for (int64_t r = 0; r < rows; ++r) {
      const double *w = input.data.data() + (b * rows + r) * cols;
      for (int64_t g = 0; g < groups; ++g) {
        const double *v = w + g * group;
        double lo = 0.0, hi = 0.0;
        for (int64_t i = 0; i < group; ++i) {
          lo = std::min(lo, v[i]);
          hi = std::max(hi, v[i]);
        }
        double range =
            symmetric ? std::max(-lo, hi) / qmax : (hi - lo) / levels;
        // The scale is stored in its type; rounding uses the stored value so
        // dequantization reproduces exactly what was chosen here.
        double scale = range > 0 ? roundToType(scaleType, range) : 1.0;
        double zero = symmetric ? 0.0 : std::nearbyint(-lo / scale);
        int64_t at = (b * rows + r) * groups + g;
        scales.data[at] = scale;
        if (!symmetric)
          storage[2].data[at] = zero - shift;
        for (int64_t i = 0; i < group; ++i) {
          double level = std::nearbyint(v[i] / scale) + zero;
          level = symmetric ? std::clamp(level, -qmax, qmax)
                            : std::clamp(level, 0.0, levels);
          q[g * group + i] = level - shift;
        }
      }
      double *out =
          values.data.data() + (b * rows + r) * (packed ? cols / 2 : cols);
      if (!packed) {
        std::copy(q.begin(), q.end(), out);
        continue;
      }
      for (int64_t c = 0; c < cols; c += 2) {
        int byte = (int(q[c]) & 0xF) | ((int(q[c + 1]) & 0xF) << 4);
        out[c / 2] = byte >= 128 ? byte - 256 : byte; // as a signed i8
      }
    }
  return storage;
}
