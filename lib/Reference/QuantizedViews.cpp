//===- QuantizedViews.cpp - stored levels and codes of weight values ------===//
//
// Compiled kernels read quantized weights as stored: the integer levels of
// #moe.int_group weights, the codes of FP8 and MXFP4 ones, with their scales,
// through the concatenations and expert selections passes make of them.
//
//===----------------------------------------------------------------------===//

#include "lib/Reference/WeightMaterializer.h"

#include "lib/Reference/Kernels.h"
#include "lib/Support/FloatFormats.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/TypeUtilities.h"

#include <array>
#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::reference;

/// Whether `slice` selects experts only: every dimension but the first whole.
static bool slicesExpertsOnly(tensor::ExtractSliceOp slice) {
  ArrayRef<int64_t> offsets = slice.getStaticOffsets(),
                    sizes = slice.getStaticSizes(),
                    strides = slice.getStaticStrides();
  RankedTensorType source = slice.getSourceType();
  if (ShapedType::isDynamicShape(offsets) ||
      ShapedType::isDynamicShape(sizes) ||
      ShapedType::isDynamicShape(strides) ||
      slice.getResultType().getRank() != source.getRank())
    return false;
  for (int64_t d = 1; d < source.getRank(); ++d)
    if (offsets[d] != 0 || sizes[d] != source.getDimSize(d) || strides[d] != 1)
      return false;
  return true;
}

IntGroupEncodingAttr WeightMaterializer::getIntGroupEncoding(Value value) {
  if (auto dequant = value.getDefiningOp<DequantizeOp>())
    return dyn_cast<IntGroupEncodingAttr>(dequant.getEncoding());
  if (auto slice = value.getDefiningOp<tensor::ExtractSliceOp>())
    return slicesExpertsOnly(slice) ? getIntGroupEncoding(slice.getSource())
                                    : IntGroupEncodingAttr();
  if (auto concatOp = value.getDefiningOp<tensor::ConcatOp>()) {
    // Along experts or along output rows; never along the grouped input
    // dimension.
    int64_t rank = concatOp.getResultType().getRank();
    if (int64_t(concatOp.getDim()) == rank - 1)
      return {};
    // Parts of different widths (per-expert mixed precision) share the wider
    // one: narrower levels fit its storage unchanged.
    IntGroupEncodingAttr common;
    for (Value input : concatOp.getInputs()) {
      IntGroupEncodingAttr encoding = getIntGroupEncoding(input);
      if (!encoding)
        return {};
      if (common && (common.getGroupSize() != encoding.getGroupSize() ||
                     common.getSymmetric() != encoding.getSymmetric()))
        return {};
      if (!common || encoding.getBits() > common.getBits())
        common = encoding;
    }
    return common;
  }
  return {};
}

Attribute WeightMaterializer::getFloatCodeEncoding(Value value) {
  if (auto dequant = value.getDefiningOp<DequantizeOp>()) {
    Attribute encoding = dequant.getEncoding();
    Type values = getElementTypeOrSelf(dequant.getStorage()[0].getType());
    if (isa<Mxfp4EncodingAttr>(encoding) ||
        (isa<Fp8BlockEncodingAttr>(encoding) && isa<Float8E4M3FNType>(values)))
      return encoding;
    return {};
  }
  if (auto slice = value.getDefiningOp<tensor::ExtractSliceOp>())
    return slicesExpertsOnly(slice) ? getFloatCodeEncoding(slice.getSource())
                                    : Attribute();
  if (auto concatOp = value.getDefiningOp<tensor::ConcatOp>()) {
    // Along experts or output rows, every part with the same encoding.
    int64_t rank = concatOp.getResultType().getRank();
    if (int64_t(concatOp.getDim()) == rank - 1)
      return {};
    Attribute common;
    for (Value input : concatOp.getInputs()) {
      Attribute encoding = getFloatCodeEncoding(input);
      if (!encoding || (common && encoding != common))
        return {};
      common = encoding;
    }
    return common;
  }
  return {};
}

/// The e4m3 code of `value`, one of the format's values (NaN becomes the NaN
/// code with its sign); none when `value` is not an e4m3 value.
static std::optional<uint8_t> e4m3Code(double value) {
  // Codes 0..0x7E are the non-negative finite values in increasing order.
  static const std::array<float, 0x7F> magnitudes = [] {
    std::array<float, 0x7F> table;
    for (int code = 0; code < 0x7F; ++code)
      table[code] = ::moe::f8e4m3fnToFloat(uint8_t(code));
    return table;
  }();
  uint8_t sign = std::signbit(value) ? 0x80 : 0;
  if (std::isnan(value))
    return uint8_t(sign | 0x7F);
  double magnitude = std::abs(value);
  const float *at =
      std::lower_bound(magnitudes.begin(), magnitudes.end(), magnitude);
  if (at == magnitudes.end() || double(*at) != magnitude)
    return std::nullopt;
  return uint8_t(sign | (at - magnitudes.begin()));
}

/// The codes and per-(row, group of k) scales of a float-coded
/// moe.dequantize's storage (getFloatCodeEncoding), as getIntGroup returns
/// them.
static FailureOr<WeightMaterializer::IntGroupValues>
floatCodes(DequantizeOp dequant, MutableArrayRef<RefTensor> storage) {
  WeightMaterializer::IntGroupValues result;
  RefTensor &stored = storage[0], &scales = storage[1];
  int64_t rank = stored.rank();
  if (auto fp8 = dyn_cast<Fp8BlockEncodingAttr>(dequant.getEncoding())) {
    // values [..., N, K], scale_inv [..., N / blockRows, K / blockCols]: each
    // row gets its block row's scales.
    int64_t rows = stored.dim(rank - 2), cols = stored.dim(rank - 1);
    int64_t blockRows = scales.dim(rank - 2), groups = scales.dim(rank - 1);
    int64_t batches = stored.numel() / (rows * cols);
    result.levels = RefTensor(stored.shape);
    for (int64_t i = 0; i < stored.numel(); ++i) {
      std::optional<uint8_t> code = e4m3Code(stored.data[i]);
      if (!code)
        return dequant.emitOpError()
               << "holds " << stored.data[i] << ", which is not an e4m3 value";
      result.levels.data[i] = *code;
    }
    SmallVector<int64_t> shape(stored.shape.begin(), stored.shape.end());
    shape.back() = groups;
    result.scales = RefTensor(shape);
    double *out = result.scales.data.data();
    for (int64_t b = 0; b < batches; ++b)
      for (int64_t r = 0; r < rows; ++r)
        out = std::copy_n(scales.data.data() +
                              (b * blockRows + r / fp8.getBlockRows()) * groups,
                          groups, out);
    return result;
  }
  // mxfp4: blocks [..., N, K / 32, 16] of two e2m1 codes a byte (low nibble
  // first), e8m0 scales [..., N, K / 32].
  SmallVector<int64_t> shape(stored.shape.begin(), stored.shape.end() - 1);
  shape.back() *= 32;
  result.levels = RefTensor(shape);
  for (int64_t i = 0; i < stored.numel(); ++i) {
    int byte = int(stored.data[i]) & 0xFF;
    result.levels.data[2 * i] = byte & 0xF;
    result.levels.data[2 * i + 1] = byte >> 4;
  }
  result.scales = RefTensor(scales.shape);
  for (int64_t i = 0; i < scales.numel(); ++i)
    result.scales.data[i] = std::ldexp(1.0, (int(scales.data[i]) & 0xFF) - 127);
  return result;
}

FailureOr<WeightMaterializer::IntGroupValues>
WeightMaterializer::getIntGroup(Value value, int64_t expert) {
  if (auto dequant = value.getDefiningOp<DequantizeOp>()) {
    auto encoding = dyn_cast<IntGroupEncodingAttr>(dequant.getEncoding());
    bool codes = bool(getFloatCodeEncoding(value));
    if (!encoding && !codes)
      return dequant.emitOpError()
             << "is not stored as #moe.int_group, #moe.fp8_block with e4m3 "
                "values or #moe.mxfp4";
    SmallVector<RefTensor> storage;
    for (Value stored : dequant.getStorage()) {
      FailureOr<RefTensor> part = get(stored, expert);
      if (failed(part))
        return failure();
      storage.push_back(std::move(*part));
    }
    if (codes)
      return floatCodes(dequant, storage);
    IntGroupValues result;
    if (encoding.getBits() == 4) {
      // Two values a byte, low nibble first; two's complement when symmetric.
      const RefTensor &packed = storage[0];
      SmallVector<int64_t> shape(packed.shape.begin(), packed.shape.end());
      shape.back() *= 2;
      result.levels = RefTensor(shape);
      for (int64_t i = 0; i < packed.numel(); ++i) {
        int byte = int(packed.data[i]) & 0xFF;
        for (int half = 0; half < 2; ++half) {
          int nibble = half ? byte >> 4 : byte & 0xF;
          result.levels.data[2 * i + half] =
              encoding.getSymmetric() && nibble >= 8 ? nibble - 16 : nibble;
        }
      }
    } else {
      result.levels = std::move(storage[0]);
    }
    result.scales = std::move(storage[1]);
    if (!encoding.getSymmetric())
      result.zeros = std::move(storage[2]);
    return result;
  }
  if (auto slice = value.getDefiningOp<tensor::ExtractSliceOp>()) {
    if (!slicesExpertsOnly(slice) || expert < 0)
      return slice.emitOpError()
             << "is read as integer levels only one expert at a time";
    return getIntGroup(slice.getSource(),
                       slice.getStaticOffsets()[0] +
                           slice.getStaticStrides()[0] * expert);
  }
  if (auto concatOp = value.getDefiningOp<tensor::ConcatOp>()) {
    int64_t dim = concatOp.getDim();
    if (dim == 0 && expert >= 0) {
      auto part = concatPartHolding(concatOp, expert);
      if (failed(part))
        return failure();
      return getIntGroup(part->first, part->second);
    }
    SmallVector<IntGroupValues> parts;
    for (Value input : concatOp.getInputs()) {
      FailureOr<IntGroupValues> part = getIntGroup(input, expert);
      if (failed(part))
        return failure();
      parts.push_back(std::move(*part));
    }
    int64_t along = expert >= 0 ? dim - 1 : dim;
    auto join = [&](RefTensor IntGroupValues::*member) {
      SmallVector<const RefTensor *> pointers;
      for (IntGroupValues &part : parts)
        pointers.push_back(&(part.*member));
      return concat(pointers, along);
    };
    IntGroupValues result;
    result.levels = join(&IntGroupValues::levels);
    result.scales = join(&IntGroupValues::scales);
    if (!parts.front().zeros.shape.empty())
      result.zeros = join(&IntGroupValues::zeros);
    return result;
  }
  return emitError(value.getLoc())
         << "is not a #moe.int_group weight (a moe.dequantize, or "
            "concatenations and expert slices of one)";
}
