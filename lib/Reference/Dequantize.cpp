//===- Dequantize.cpp - float64 semantics of moe.dequantize ---------------===//

#include "lib/Compress/Gptq.h"
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

namespace {

/// The e4m3 (f8E4M3FN) value nearest to `value`, saturating at +-448 (the
/// format has no infinity).
double roundToE4m3(double value) {
  constexpr double kMax = 448.0;
  llvm::APFloat rounded(std::clamp(value, -kMax, kMax));
  bool lossy = false;
  rounded.convert(llvm::APFloat::Float8E4M3FN(),
                  llvm::APFloat::rmNearestTiesToEven, &lossy);
  return rounded.convertToDouble();
}

/// #moe.fp8_block as DeepSeek-V3 ships it: per block scale_inv = amax / 448
/// (stored f32) and values w / scale_inv rounded to the nearest e4m3.
SmallVector<RefTensor> quantizeFp8Block(Fp8BlockEncodingAttr fp8,
                                        const RefTensor &input,
                                        TypeRange storageTypes) {
  SmallVector<RefTensor> storage;
  for (Type type : storageTypes)
    storage.emplace_back(cast<RankedTensorType>(type).getShape());
  RefTensor &values = storage[0], &scales = storage[1];
  int64_t rank = input.rank();
  int64_t rows = input.dim(rank - 2), cols = input.dim(rank - 1);
  int64_t batches = input.numel() / (rows * cols);
  int64_t br = fp8.getBlockRows(), bc = fp8.getBlockCols();
  int64_t blockRows = scales.dim(rank - 2), blockCols = scales.dim(rank - 1);
  Type scaleType = cast<RankedTensorType>(storageTypes[1]).getElementType();
  for (int64_t b = 0; b < batches; ++b)
    for (int64_t i = 0; i < blockRows; ++i)
      for (int64_t j = 0; j < blockCols; ++j) {
        int64_t rowEnd = std::min(rows, (i + 1) * br),
                colEnd = std::min(cols, (j + 1) * bc);
        double amax = 0.0;
        for (int64_t r = i * br; r < rowEnd; ++r)
          for (int64_t c = j * bc; c < colEnd; ++c)
            amax = std::max(amax, std::abs(at(input, b, r, c)));
        double scale = amax > 0 ? roundToType(scaleType, amax / 448.0) : 1.0;
        scales.data[(b * blockRows + i) * blockCols + j] = scale;
        for (int64_t r = i * br; r < rowEnd; ++r)
          for (int64_t c = j * bc; c < colEnd; ++c)
            values.data[(b * rows + r) * cols + c] =
                roundToE4m3(at(input, b, r, c) / scale);
      }
  return storage;
}

/// The e2m1 nibble nearest to `x` (ties to the even encoding, saturating at
/// +-6): magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6 are encodings 0..7, bit 3 is
/// the sign.
uint8_t nearestE2m1(double x) {
  static constexpr double kMagnitudes[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  double magnitude = std::min(std::abs(x), 6.0);
  uint8_t best = 0;
  for (uint8_t code = 1; code < 8; ++code) {
    double distance = std::abs(magnitude - kMagnitudes[code]),
           bestDistance = std::abs(magnitude - kMagnitudes[best]);
    if (distance < bestDistance || (distance == bestDistance && code % 2 == 0))
      best = code;
  }
  return best != 0 && x < 0 ? best | 8 : best;
}

/// #moe.mxfp4 as GPT-OSS ships it (OCP MX): per block of 32 inputs the shared
/// exponent floor(log2(amax)) - 2 puts amax in [4, 8) on e2m1's scale (max 6,
/// so the top of that range saturates, as the spec accepts), stored as the
/// e8m0 byte exponent + 127; each value is the nearest e2m1 of w / 2^exponent.
/// Bytes are stored unsigned (ui8), low nibble first.
SmallVector<RefTensor> quantizeMxfp4(const RefTensor &input,
                                     TypeRange storageTypes) {
  SmallVector<RefTensor> storage;
  for (Type type : storageTypes)
    storage.emplace_back(cast<RankedTensorType>(type).getShape());
  RefTensor &blocks = storage[0], &scales = storage[1];
  int64_t rank = input.rank();
  int64_t rows = input.dim(rank - 2), cols = input.dim(rank - 1);
  int64_t batches = input.numel() / (rows * cols), perRow = cols / 32;
  for (int64_t row = 0; row < batches * rows; ++row)
    for (int64_t block = 0; block < perRow; ++block) {
      const double *v = input.data.data() + row * cols + block * 32;
      double amax = 0.0;
      for (int64_t i = 0; i < 32; ++i)
        amax = std::max(amax, std::abs(v[i]));
      int exponent = -127;
      if (amax > 0) {
        int binary = 0;
        std::frexp(amax, &binary); // amax = m * 2^binary, m in [0.5, 1)
        exponent = std::clamp(binary - 1 - 2, -127, 127);
      }
      scales.data[row * perRow + block] = double(exponent + 127);
      double *out = blocks.data.data() + (row * perRow + block) * 16;
      for (int64_t i = 0; i < 32; i += 2) {
        uint8_t lo = nearestE2m1(std::ldexp(v[i], -exponent)),
                hi = nearestE2m1(std::ldexp(v[i + 1], -exponent));
        out[i / 2] = double(lo | (hi << 4));
      }
    }
  return storage;
}

} // namespace

FailureOr<SmallVector<RefTensor>>
reference::quantize(EmitErrorFn emitError, WeightEncodingAttrInterface encoding,
                    const RefTensor &input, TypeRange storageTypes,
                    const RefTensor *calibration, std::optional<double> clip) {
  if (auto fp8 = dyn_cast<Fp8BlockEncodingAttr>(encoding))
    return quantizeFp8Block(fp8, input, storageTypes);
  if (isa<Mxfp4EncodingAttr>(encoding))
    return quantizeMxfp4(input, storageTypes);
  auto quant = dyn_cast<IntGroupEncodingAttr>(encoding);
  if (!quant)
    return emitError() << "has no quantizer for encoding " << encoding,
           failure();
  int64_t bits = quant.getBits(), group = quant.getGroupSize();
  bool symmetric = quant.getSymmetric(), packed = bits == 4;
  int64_t rank = input.rank();
  int64_t rows = input.dim(rank - 2), cols = input.dim(rank - 1);
  int64_t batches = input.numel() / (rows * cols), groups = cols / group;
  int64_t calibrationRows = calibration ? calibration->dim(rank - 2) : 0;
  if (calibration &&
      (calibration->rank() != rank || calibration->dim(rank - 1) != cols ||
       calibration->numel() != batches * calibrationRows * cols))
    return emitError() << "calibration rows do not match the input", failure();
  SmallVector<RefTensor> storage;
  for (Type type : storageTypes)
    storage.emplace_back(cast<RankedTensorType>(type).getShape());
  RefTensor &values = storage[0], &scales = storage[1];
  Type scaleType = cast<RankedTensorType>(storageTypes[1]).getElementType();
  // The scale is stored in its type; levels are chosen against the stored
  // value so dequantization reproduces exactly what was chosen here.
  compress::RoundScaleFn roundScale = [&](double scale) {
    return roundToType(scaleType, scale);
  };
  compress::IntGrid grid{bits, symmetric, clip.value_or(1.0)};
  // 8-bit asymmetric values and zero points are shifted by -128 to fit a
  // signed byte; 4-bit ones stay unsigned nibbles (as moe.dequantize reads
  // them).
  double shift = !symmetric && !packed ? 128.0 : 0.0;
  for (int64_t b = 0; b < batches; ++b) {
    Eigen::Map<const compress::QuantMatrix> weight(
        input.data.data() + b * rows * cols, rows, cols);
    compress::IntQuantized levels =
        calibration
            ? compress::quantizeGptq(
                  weight,
                  compress::gptqHessian(Eigen::Map<const compress::QuantMatrix>(
                      calibration->data.data() + b * calibrationRows * cols,
                      calibrationRows, cols)),
                  grid, group, roundScale)
            : compress::quantizeRtn(weight, grid, group, roundScale);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        int64_t at = (b * rows + r) * groups + g;
        scales.data[at] = levels.scales(r, g);
        if (!symmetric)
          storage[2].data[at] = levels.zeros(r, g) - shift;
      }
      double *out =
          values.data.data() + (b * rows + r) * (packed ? cols / 2 : cols);
      if (!packed) {
        for (int64_t c = 0; c < cols; ++c)
          out[c] = levels.levels(r, c) - shift;
        continue;
      }
      for (int64_t c = 0; c < cols; c += 2) {
        int byte = (int(levels.levels(r, c)) & 0xF) |
                   ((int(levels.levels(r, c + 1)) & 0xF) << 4);
        out[c / 2] = byte >= 128 ? byte - 256 : byte; // as a signed i8
      }
    }
  }
  return storage;
}
