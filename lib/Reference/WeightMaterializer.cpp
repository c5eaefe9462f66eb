//===- WeightMaterializer.cpp - values of weight expressions --------------===//

#include "lib/Reference/WeightMaterializer.h"

#include "lib/Compress/LatentFactorization.h"
#include "lib/Reference/Evaluator.h"
#include "lib/Reference/Kernels.h"
#include "lib/Support/FloatFormats.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <algorithm>
#include <array>
#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::reference;

namespace {

/// The static slice `offsets`/`sizes`/`strides` of `t` (all of rank t.rank()).
RefTensor slice(const RefTensor &t, ArrayRef<int64_t> offsets,
                ArrayRef<int64_t> sizes, ArrayRef<int64_t> strides) {
  int64_t rank = t.rank();
  SmallVector<int64_t> stride(rank, 1), index(rank, 0);
  for (int64_t d = rank - 2; d >= 0; --d)
    stride[d] = stride[d + 1] * t.dim(d + 1);
  RefTensor result(sizes);
  for (int64_t linear = 0; linear < result.numel(); ++linear) {
    int64_t offset = 0;
    for (int64_t d = 0; d < rank; ++d)
      offset += (offsets[d] + index[d] * strides[d]) * stride[d];
    result.data[linear] = t.data[offset];
    for (int64_t d = rank - 1; d >= 0 && ++index[d] == sizes[d]; --d)
      index[d] = 0;
  }
  return result;
}

/// Slice `index` of the leading dimension of `t`.
RefTensor leadingSlice(const RefTensor &t, int64_t index) {
  RefTensor slice(ArrayRef<int64_t>(t.shape).drop_front());
  std::copy_n(t.data.data() + index * slice.numel(), slice.numel(),
              slice.data.data());
  return slice;
}

/// Copies the row-major `matrix` into `out` from element `offset`, each value
/// rounded to `element`.
void storeRounded(const compress::LatentMatrix &matrix, Type element,
                  RefTensor &out, int64_t offset) {
  const double *values = matrix.data();
  for (int64_t i = 0, n = matrix.size(); i < n; ++i)
    out.data[offset + i] = roundToType(element, values[i]);
}

/// moe.factorize on group `group` of experts (every group when negative):
/// factors [experts of those groups, N, R] and bases [groups, R, K], each
/// rounded to its result's element type. Memory: one group's stacked matrices.
/// The whitening (a [K, K] eigendecomposition) is recomputed per call; calls
/// are per group, so that is once per group.
FailureOr<std::pair<RefTensor, RefTensor>>
factorizeGroups(WeightMaterializer &source, FactorizeOp op, int64_t group) {
  RankedTensorType input = op.getInput().getType();
  int64_t experts = input.getDimSize(0), rows = input.getDimSize(1),
          columns = input.getDimSize(2);
  int64_t perGroup = op.getGroup(), rank = op.getRank();
  int64_t first = group < 0 ? 0 : group;
  int64_t count = group < 0 ? experts / perGroup : 1;

  std::optional<compress::Whitening> whitening;
  if (Value whiteningRows = op.getWhitening()) {
    FailureOr<RefTensor> calibration = source.get(whiteningRows);
    if (failed(calibration))
      return failure();
    if (calibration->rank() != 2 || calibration->dim(0) < 1 ||
        calibration->dim(1) != columns)
      return op.emitOpError()
             << "whitening rows must be [n >= 1, " << columns << "]";
    whitening =
        compress::whiteningFromRows(Eigen::Map<const compress::LatentMatrix>(
            calibration->data.data(), calibration->dim(0), columns));
  }

  Type factorsElement = op.getFactors().getType().getElementType();
  Type basisElement = op.getBasis().getType().getElementType();
  RefTensor factors({count * perGroup, rows, rank});
  RefTensor bases({count, rank, columns});
  compress::LatentMatrix stack(perGroup * rows, columns);
  for (int64_t g = first; g < first + count; ++g) {
    for (int64_t i = 0; i < perGroup; ++i) {
      FailureOr<RefTensor> weight = source.get(op.getInput(), g * perGroup + i);
      if (failed(weight))
        return failure();
      std::copy_n(weight->data.data(), rows * columns,
                  stack.data() + i * rows * columns);
    }
    compress::LatentFactors latent = compress::factorizeStack(
        stack, rank, whitening ? &*whitening : nullptr);
    storeRounded(latent.a, factorsElement, factors,
                 (g - first) * perGroup * rows * rank);
    storeRounded(latent.b, basisElement, bases, (g - first) * rank * columns);
  }
  return std::make_pair(std::move(factors), std::move(bases));
}

} // namespace

FailureOr<std::pair<Value, int64_t>>
reference::concatPartHolding(tensor::ConcatOp concat, int64_t expert) {
  int64_t first = 0;
  for (Value input : concat.getInputs()) {
    int64_t count = cast<RankedTensorType>(input.getType()).getDimSize(0);
    if (expert < first + count)
      return std::make_pair(input, expert - first);
    first += count;
  }
  return concat.emitOpError()
         << "has no expert " << expert << " (it holds " << first << ")";
}

bool WeightMaterializer::isWeightExpression(Operation *op) {
  return isa<WeightOp, DequantizeOp, QuantizeOp, SelectChannelsOp,
             tensor::ConcatOp, tensor::ExtractSliceOp, arith::ConstantOp,
             ScaleColumnsOp, FactorizeOp, LatentProductOp>(op);
}

FailureOr<const RefTensor *>
WeightMaterializer::getSliceSource(tensor::ExtractSliceOp slice,
                                   int64_t expert) {
  // Passes cut one expert's weight into many slices (micro-expert pruning
  // keeps runs of channels): its source is read once for all of them.
  SliceSourceKey key{slice.getSource(), expert};
  for (auto &[cachedSource, value] : sliceSources)
    if (cachedSource.value == key.value && cachedSource.expert == expert)
      return &value;
  FailureOr<RefTensor> value = get(slice.getSource(), expert);
  if (failed(value))
    return failure();
  // A few recent sources: the gate, up and down of the expert being read.
  if (sliceSources.size() == kSliceSourcesKept)
    sliceSources.erase(sliceSources.begin());
  sliceSources.emplace_back(key, std::move(*value));
  return &sliceSources.back().second;
}

FailureOr<RefTensor> WeightMaterializer::get(Value value, int64_t expert) {
  if (auto weight = value.getDefiningOp<WeightOp>())
    return readWeight(checkpoint, weight, expert);
  if (auto dequant = value.getDefiningOp<DequantizeOp>()) {
    SmallVector<RefTensor> storage;
    for (Value stored : dequant.getStorage()) {
      FailureOr<RefTensor> part = get(stored, expert);
      if (failed(part))
        return failure();
      storage.push_back(std::move(*part));
    }
    SmallVector<const RefTensor *> pointers;
    for (RefTensor &part : storage)
      pointers.push_back(&part);
    RankedTensorType type = dequant.getResult().getType();
    if (expert >= 0)
      type = RankedTensorType::get(type.getShape().drop_front(),
                                   type.getElementType());
    return dequantize([&] { return dequant.emitOpError(); },
                      dequant.getEncoding(), pointers, type);
  }
  if (auto quant = value.getDefiningOp<QuantizeOp>()) {
    // A quantization recorded by a pass runs here, on this expert's slice
    // (it works row by row, so slicing commutes with it); dequantize asks
    // for each stored tensor in turn, so the last result is kept.
    auto key = std::make_pair(quant.getOperation(), expert);
    if (cachedKey != key) {
      FailureOr<RefTensor> input = get(quant.getInput(), expert);
      if (failed(input))
        return failure();
      SmallVector<Type> types;
      for (Type type : quant.getStorage().getTypes()) {
        auto tensor = cast<RankedTensorType>(type);
        types.push_back(
            expert >= 0 ? RankedTensorType::get(tensor.getShape().drop_front(),
                                                tensor.getElementType())
                        : tensor);
      }
      // GPTQ's calibration rows are sliced like the weight: this expert's
      // rows only.
      std::optional<RefTensor> rows;
      if (Value calibration = quant.getCalibration()) {
        FailureOr<RefTensor> read = get(calibration, expert);
        if (failed(read))
          return failure();
        rows = std::move(*read);
      }
      FailureOr<SmallVector<RefTensor>> storage = quantize(
          [&] { return quant.emitOpError(); }, quant.getEncoding(), *input,
          types, rows ? &*rows : nullptr, quant.getClipRatio());
      if (failed(storage))
        return failure();
      cached = std::move(*storage);
      cachedKey = key;
    }
    return cached[cast<OpResult>(value).getResultNumber()];
  }
  if (auto concatOp = value.getDefiningOp<tensor::ConcatOp>()) {
    // An expert's slice of a concatenation of experts is a slice of the part
    // holding it; along a later dimension, the concatenation of the parts'
    // slices.
    int64_t dim = concatOp.getDim();
    if (expert >= 0 && dim == 0) {
      auto part = concatPartHolding(concatOp, expert);
      if (failed(part))
        return failure();
      return get(part->first, part->second);
    }
    SmallVector<RefTensor> parts;
    for (Value input : concatOp.getInputs()) {
      FailureOr<RefTensor> part = get(input, expert);
      if (failed(part))
        return failure();
      parts.push_back(std::move(*part));
    }
    SmallVector<const RefTensor *> pointers;
    for (RefTensor &part : parts)
      pointers.push_back(&part);
    return concat(pointers, expert >= 0 ? dim - 1 : dim);
  }
  if (auto select = value.getDefiningOp<SelectChannelsOp>()) {
    // Each expert's indices along `dim` in its own order, zeros for -1: an
    // expert's slice is [outer, W, inner] read from [outer, source W, inner].
    auto type = cast<RankedTensorType>(select.getType());
    ArrayRef<int64_t> shape = type.getShape();
    int64_t dim = select.getDim(), width = shape[dim];
    int64_t outer = 1, inner = 1;
    for (int64_t d = 1; d < dim; ++d)
      outer *= shape[d];
    for (int64_t d = dim + 1; d < int64_t(shape.size()); ++d)
      inner *= shape[d];
    int64_t sourceWidth =
        cast<RankedTensorType>(select.getInput().getType()).getDimSize(dim);
    ArrayRef<int64_t> channels = select.getChannels();
    auto selectExpert = [&](int64_t e, const RefTensor &source, double *out) {
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < width; ++j) {
          int64_t channel = channels[e * width + j];
          double *to = out + (o * width + j) * inner;
          if (channel < 0) {
            std::fill_n(to, inner, 0.0);
            continue;
          }
          std::copy_n(source.data.data() + (o * sourceWidth + channel) * inner,
                      inner, to);
        }
    };
    int64_t perExpert = outer * width * inner;
    if (expert >= 0) {
      FailureOr<RefTensor> source = get(select.getInput(), expert);
      if (failed(source))
        return failure();
      RefTensor result(shape.drop_front());
      selectExpert(expert, *source, result.data.data());
      return result;
    }
    RefTensor result(shape);
    for (int64_t e = 0; e < shape[0]; ++e) {
      FailureOr<RefTensor> source = get(select.getInput(), e);
      if (failed(source))
        return failure();
      selectExpert(e, *source, result.data.data() + e * perExpert);
    }
    return result;
  }
  if (auto sliceOp = value.getDefiningOp<tensor::ExtractSliceOp>()) {
    // Static, rank-preserving slices only (passes select experts with them);
    // an expert's slice of the result is a slice of source expert
    // offset + stride * expert.
    ArrayRef<int64_t> offsets = sliceOp.getStaticOffsets(),
                      sizes = sliceOp.getStaticSizes(),
                      strides = sliceOp.getStaticStrides();
    if (ShapedType::isDynamicShape(offsets) ||
        ShapedType::isDynamicShape(sizes) ||
        ShapedType::isDynamicShape(strides) ||
        sliceOp.getResultType().getRank() != sliceOp.getSourceType().getRank())
      return sliceOp.emitOpError()
             << "is not a static rank-preserving slice; weights are sliced "
                "only that way";
    if (expert < 0) {
      FailureOr<const RefTensor *> source = getSliceSource(sliceOp, -1);
      if (failed(source))
        return failure();
      return slice(**source, offsets, sizes, strides);
    }
    FailureOr<const RefTensor *> source =
        getSliceSource(sliceOp, offsets[0] + strides[0] * expert);
    if (failed(source))
      return failure();
    return slice(**source, offsets.drop_front(), sizes.drop_front(),
                 strides.drop_front());
  }
  if (auto scaleOp = value.getDefiningOp<ScaleColumnsOp>()) {
    // A smoothing fold recorded by a pass: the scales are one vector over the
    // input columns, so an expert's slice scales the same way as the whole.
    FailureOr<RefTensor> weight = get(scaleOp.getWeight(), expert);
    FailureOr<RefTensor> scales = get(scaleOp.getScales());
    if (failed(weight) || failed(scales))
      return failure();
    Type element = scaleOp.getResult().getType().getElementType();
    int64_t columns = scales->numel();
    for (int64_t i = 0; i < weight->numel(); ++i)
      weight->data[i] =
          roundToType(element, weight->data[i] * scales->data[i % columns]);
    return weight;
  }
  if (auto factorize = value.getDefiningOp<FactorizeOp>()) {
    // Both results are sliced along their own leading dimension: slice
    // `expert` of the factors is expert `expert`'s A, slice `expert` of the
    // basis is group `expert`'s B. One group's SVD serves all of it.
    bool isBasis = cast<OpResult>(value).getResultNumber() == 1;
    int64_t perGroup = factorize.getGroup();
    int64_t slices = cast<RankedTensorType>(value.getType()).getDimSize(0);
    if (expert >= slices)
      return factorize.emitOpError()
             << "has no " << (isBasis ? "group " : "expert ") << expert
             << " (it holds " << slices << ")";
    int64_t group = expert < 0 ? -1 : isBasis ? expert : expert / perGroup;
    // One entry per recent op: the packer reads gate's and up's factors
    // expert by expert, alternating between two factorizations.
    Factorized *entry = nullptr;
    for (Factorized &f : factorized)
      if (f.op == factorize.getOperation() && (f.group == group || f.group < 0))
        entry = &f;
    if (!entry) {
      auto computed = factorizeGroups(*this, factorize, group);
      if (failed(computed))
        return failure();
      llvm::erase_if(factorized, [&](const Factorized &f) {
        return f.op == factorize.getOperation();
      });
      if (factorized.size() == kFactorizationsKept)
        factorized.erase(factorized.begin());
      factorized.push_back({factorize.getOperation(), group,
                            std::move(computed->first),
                            std::move(computed->second)});
      entry = &factorized.back();
    }
    const RefTensor &whole = isBasis ? entry->basis : entry->factors;
    if (expert < 0)
      return whole;
    if (entry->group < 0)
      return leadingSlice(whole, expert);
    return leadingSlice(whole, isBasis ? 0 : expert - group * perGroup);
  }
  if (auto product = value.getDefiningOp<LatentProductOp>()) {
    // Expert e's matrix is A_e B_g with g = e / (experts per basis): one
    // expert's slice reads A's expert e and B's group g only.
    RankedTensorType factorsType = product.getFactors().getType();
    int64_t experts = factorsType.getDimSize(0);
    int64_t perGroup = experts / product.getBasis().getType().getDimSize(0);
    if (expert >= experts)
      return product.emitOpError()
             << "has no expert " << expert << " (it holds " << experts << ")";
    FailureOr<RefTensor> factors = get(product.getFactors(), expert);
    FailureOr<RefTensor> basis =
        get(product.getBasis(), expert < 0 ? int64_t(-1) : expert / perGroup);
    if (failed(factors) || failed(basis))
      return failure();
    int64_t rows = factorsType.getDimSize(1), rank = factorsType.getDimSize(2),
            columns = product.getResult().getType().getDimSize(2);
    int64_t count = expert < 0 ? experts : 1;
    RefTensor result(expert < 0 ? SmallVector<int64_t>{experts, rows, columns}
                                : SmallVector<int64_t>{rows, columns});
    Type element = product.getResult().getType().getElementType();
    for (int64_t e = 0; e < count; ++e) {
      int64_t g = expert < 0 ? e / perGroup : 0;
      compress::LatentMatrix matrix =
          Eigen::Map<const compress::LatentMatrix>(
              factors->data.data() + e * rows * rank, rows, rank) *
          Eigen::Map<const compress::LatentMatrix>(
              basis->data.data() + g * rank * columns, rank, columns);
      storeRounded(matrix, element, result, e * rows * columns);
    }
    return result;
  }
  if (auto constant = value.getDefiningOp<arith::ConstantOp>()) {
    auto elements = dyn_cast<DenseElementsAttr>(constant.getValue());
    if (!elements)
      return constant.emitOpError() << "is not a dense tensor constant";
    RefTensor whole = fromElements(elements);
    if (expert < 0)
      return whole;
    int64_t per = whole.numel() / whole.dim(0);
    RefTensor slice(ArrayRef<int64_t>(whole.shape).drop_front());
    std::copy_n(whole.data.data() + expert * per, per, slice.data.data());
    return slice;
  }
  return emitError(value.getLoc())
         << "is not a weight expression (moe.weight, moe.dequantize, "
            "moe.quantize, tensor.concat, tensor.extract_slice or a "
            "constant)";
}
