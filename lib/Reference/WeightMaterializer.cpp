//===- WeightMaterializer.cpp - values of weight expressions --------------===//

#include "lib/Reference/WeightMaterializer.h"

#include "lib/Reference/Evaluator.h"
#include "lib/Reference/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::reference;

namespace {

/// Rows `rows` (every other row from `first` when `step` is 2) of a [R, C] or
/// [R] tensor.
RefTensor takeRows(const RefTensor &t, int64_t first, int64_t count,
                   int64_t step) {
  int64_t cols = t.rank() == 2 ? t.dim(1) : 1;
  RefTensor result(t.rank() == 2 ? SmallVector<int64_t>{count, cols}
                                 : SmallVector<int64_t>{count});
  for (int64_t r = 0; r < count; ++r)
    std::copy_n(t.data.data() + (first + r * step) * cols, cols,
                result.data.data() + r * cols);
  return result;
}

} // namespace

bool WeightMaterializer::isWeightExpression(Operation *op) {
  return isa<WeightOp, DequantizeOp, QuantizeOp, tensor::ConcatOp,
             arith::ConstantOp>(op);
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
      FailureOr<SmallVector<RefTensor>> storage =
          quantize([&] { return quant.emitOpError(); }, quant.getEncoding(),
                   *input, types);
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
      int64_t first = 0;
      for (Value input : concatOp.getInputs()) {
        int64_t count = cast<RankedTensorType>(input.getType()).getDimSize(0);
        if (expert < first + count)
          return get(input, expert - first);
        first += count;
      }
      return concatOp.emitOpError()
             << "has no expert " << expert << " (it holds " << first << ")";
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
            "moe.quantize, tensor.concat or a constant)";
}

FailureOr<ExpertMatrices>
reference::loadExpertMatrices(WeightMaterializer &source, const FfnValues &ffn,
                              int64_t expert, ExpertPart part) {
  int64_t e = ffn.stacked ? expert : -1;
  auto get = [&](Value v, bool wanted) -> FailureOr<std::optional<RefTensor>> {
    if (!v || !wanted)
      return std::optional<RefTensor>();
    FailureOr<RefTensor> t = source.get(v, e);
    if (failed(t))
      return failure();
    return std::optional<RefTensor>(std::move(*t));
  };
  bool all = part == ExpertPart::All;
  bool first = all || part == ExpertPart::First,
       firstBias = all || part == ExpertPart::FirstBias;
  // A fused first projection's bias is split like its weight, so both halves
  // come through `up`.
  auto up = get(ffn.up, first),
       down = get(ffn.down, all || part == ExpertPart::Down),
       gate = get(ffn.gate, first), upBias = get(ffn.upBias, firstBias),
       downBias = get(ffn.downBias, all || part == ExpertPart::DownBias),
       gateBias = get(ffn.gateBias, firstBias);
  if (failed(up) || failed(down) || failed(gate) || failed(upBias) ||
      failed(downBias) || failed(gateBias))
    return failure();
  ExpertMatrices m{*gate,
                   *gateBias,
                   *up ? std::move(**up) : RefTensor(),
                   *down ? std::move(**down) : RefTensor(),
                   *upBias,
                   *downBias};
  int64_t width = ffn.width;
  // Fused layouts split into the separate gate and up the kernels pack side by
  // side.
  if (ffn.ffn.getGlu() == GluLayout::Halves ||
      ffn.ffn.getGlu() == GluLayout::Interleaved) {
    bool halves = ffn.ffn.getGlu() == GluLayout::Halves;
    if (first) {
      RefTensor fused = std::move(m.up);
      m.gate = takeRows(fused, 0, width, halves ? 1 : 2);
      m.up = takeRows(fused, halves ? width : 1, width, halves ? 1 : 2);
    }
    if (m.upBias) {
      RefTensor bias = std::move(*m.upBias);
      m.gateBias = takeRows(bias, 0, width, halves ? 1 : 2);
      m.upBias = takeRows(bias, halves ? width : 1, width, halves ? 1 : 2);
    }
  }
  return m;
}
