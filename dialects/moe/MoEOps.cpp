//===- MoEOps.cpp - moe dialect operations --------------------------------===//
//
// Verifiers. Shapes are checked wherever both sides are known; a dynamic
// dimension (usually the token count T) is compatible with anything.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoEOps.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallSet.h"

using namespace mlir;
using namespace mlir::moe;

#define GET_OP_CLASSES
#include "dialects/moe/MoEOps.cpp.inc"

namespace {

bool dimsMatch(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

/// Prints a dimension for diagnostics ("?" when dynamic).
std::string dimStr(int64_t dim) {
  return ShapedType::isDynamic(dim) ? std::string("?") : std::to_string(dim);
}

RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

/// Checks that `value` has rank `rank`; `layout` names the dimensions for the
/// message.
LogicalResult expectRank(Operation *op, Value value, StringRef name,
                         int64_t rank, StringRef layout) {
  RankedTensorType type = tensorType(value);
  if (type.getRank() != rank)
    return op->emitOpError() << name << " must be a " << rank << "-D tensor "
                             << layout << ", got " << type;
  return success();
}

/// Checks dimension `dim` of `value` against `expected` (skipped when either is
/// dynamic).
LogicalResult expectDim(Operation *op, Value value, StringRef name, int64_t dim,
                        int64_t expected, StringRef meaning) {
  int64_t actual = tensorType(value).getDimSize(dim);
  if (!dimsMatch(actual, expected))
    return op->emitOpError()
           << name << " dimension " << dim << " is " << actual
           << " but must equal the " << meaning << " (" << expected << ")";
  return success();
}

/// The router's operands: input [T, H], gate weight [E, H], optional bias and
/// correction bias [E]. Shared by moe.route and moe.layer.
LogicalResult verifyRouter(Operation *op, RoutingAttr routing, Value input,
                           Value gateWeight, Value bias, Value correctionBias) {
  if (failed(expectRank(op, input, "input", 2, "[tokens, hidden]")) ||
      failed(
          expectRank(op, gateWeight, "router weight", 2, "[experts, hidden]")))
    return failure();
  int64_t hidden = tensorType(input).getDimSize(1);
  int64_t experts = tensorType(gateWeight).getDimSize(0);
  if (failed(expectDim(op, gateWeight, "router weight", 1, hidden,
                       "input hidden size")))
    return failure();
  if (failed(
          routing.verifyForExperts([&] { return op->emitOpError(); }, experts)))
    return failure();
  for (auto [value, name] : {std::pair{bias, "router bias"},
                             std::pair{correctionBias, "correction bias"}}) {
    if (!value)
      continue;
    if (failed(expectRank(op, value, name, 1, "[experts]")) ||
        failed(expectDim(op, value, name, 0, experts, "number of experts")))
      return failure();
  }
  if (correctionBias && !routing.scoresBeforeSelection())
    return op->emitOpError()
           << "a correction bias needs scores over all experts before "
              "selection (softmax or sigmoid scoring)";
  return success();
}

/// The weights of a feed-forward expert: `batch` leading expert dimensions (0
/// for a shared expert, 1 for stacked experts [E, ...]) followed by [out, in]
/// in nn.Linear orientation.
struct FfnWeights {
  Value gate, up, down, gateBias, upBias, downBias;
};

LogicalResult verifyFfn(Operation *op, FfnAttr ffn, const FfnWeights &w,
                        int64_t batch, int64_t numExperts, int64_t hidden,
                        StringRef prefix) {
  std::string gateName = (prefix + "gate_proj").str();
  std::string upName = (prefix + "up_proj").str();
  std::string downName = (prefix + "down_proj").str();
  StringRef layout = batch ? "[experts, out, in]" : "[out, in]";
  for (auto [value, name] :
       {std::pair{w.gate, gateName}, std::pair{w.up, upName},
        std::pair{w.down, downName}}) {
    if (!value)
      continue;
    if (failed(expectRank(op, value, name, batch + 2, layout)))
      return failure();
    if (batch &&
        failed(expectDim(op, value, name, 0, numExperts, "number of experts")))
      return failure();
  }

  // Where the gate projection lives must agree with the glu layout.
  if (ffn.getGlu() == GluLayout::Separate && !w.gate)
    return op->emitOpError()
           << "glu = separate needs a " << gateName << " weight";
  if (ffn.getGlu() != GluLayout::Separate && w.gate)
    return op->emitOpError() << gateName << " is given but glu is '"
                             << stringifyGluLayout(ffn.getGlu())
                             << "'; a separate gate needs glu = separate";

  RankedTensorType upType = tensorType(w.up);
  int64_t upRows = upType.getDimSize(batch);
  if (failed(expectDim(op, w.up, upName, batch + 1, hidden, "hidden size")))
    return failure();
  int64_t width = upRows;
  if (ffn.isFused() && !ShapedType::isDynamic(upRows)) {
    if (upRows % 2 != 0)
      return op->emitOpError()
             << "fused gate/up weight " << upName << " must have an even "
             << "number of rows (gate and up), got " << upRows;
    width = upRows / 2;
  }
  if (w.gate && tensorType(w.gate).getShape() != upType.getShape())
    return op->emitOpError()
           << gateName << " and " << upName << " must have the same shape";
  if (failed(expectDim(op, w.down, downName, batch, hidden, "hidden size")) ||
      failed(expectDim(op, w.down, downName, batch + 1, width, "expert width")))
    return failure();

  // Biases: one row per expert (when stacked) with one entry per output
  // feature.
  auto checkBias = [&](Value bias, StringRef name,
                       int64_t features) -> LogicalResult {
    if (!bias)
      return success();
    if (failed(expectRank(op, bias, name, batch + 1,
                          batch ? "[experts, out]" : "[out]")))
      return failure();
    if (batch &&
        failed(expectDim(op, bias, name, 0, numExperts, "number of experts")))
      return failure();
    return expectDim(op, bias, name, batch, features, "output features");
  };
  if (w.gateBias && !w.gate)
    return op->emitOpError() << "gate_bias needs a separate gate_proj";
  return failure(
      failed(checkBias(w.gateBias, prefix.str() + "gate_bias", width)) ||
      failed(checkBias(w.upBias, prefix.str() + "up_bias", upRows)) ||
      failed(checkBias(w.downBias, prefix.str() + "down_bias", hidden)));
}

LogicalResult verifyCapacity(Operation *op, FloatAttr capacity) {
  if (capacity && !(capacity.getValueAsDouble() > 0.0))
    return op->emitOpError() << "capacity_factor must be > 0, got "
                             << capacity.getValueAsDouble();
  return success();
}

LogicalResult expectSameType(Operation *op, Value value, StringRef name,
                             Type expected) {
  if (value.getType() != expected)
    return op->emitOpError() << name << " must have type " << expected
                             << ", got " << value.getType();
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// WeightOp
//===----------------------------------------------------------------------===//

std::string WeightOp::getTensorName(int64_t expert) {
  std::string name = getName().str();
  size_t pos = name.find(kExpertPlaceholder.data());
  if (pos != std::string::npos)
    name.replace(pos, kExpertPlaceholder.size(), std::to_string(expert));
  return name;
}

SmallVector<int64_t> WeightOp::getStoredShape() {
  ArrayRef<int64_t> shape = getResult().getType().getShape();
  SmallVector<int64_t> stored(shape.size());
  std::optional<ArrayRef<int64_t>> perm = getPermutation();
  for (size_t i = 0; i < shape.size(); ++i)
    stored[perm ? (*perm)[i] : i] = shape[i];
  if (getExperts())
    stored.erase(stored.begin());
  return stored;
}

LogicalResult WeightOp::verify() {
  StringRef name = getName();
  if (name.empty())
    return emitOpError() << "tensor name must not be empty";
  if (getFile() && getFile()->empty())
    return emitOpError() << "file must not be empty when given";
  RankedTensorType type = getResult().getType();
  if (!type.hasStaticShape())
    return emitOpError() << "a weight must have a static shape, got " << type;
  if (!getStorageDType(type.getElementType()))
    return emitOpError() << "element type " << type.getElementType()
                         << " has no safetensors dtype";

  size_t placeholders = 0;
  for (size_t pos = name.find(kExpertPlaceholder); pos != StringRef::npos;
       pos = name.find(kExpertPlaceholder, pos + 1))
    ++placeholders;
  if (std::optional<int64_t> experts = getExperts()) {
    if (*experts <= 0)
      return emitOpError() << "expert count must be positive, got " << *experts;
    if (placeholders != 1)
      return emitOpError()
             << "a stacked weight's name must contain the placeholder '"
             << kExpertPlaceholder << "' exactly once";
    if (type.getRank() < 1 || type.getDimSize(0) != *experts)
      return emitOpError() << "expert count " << *experts
                           << " does not match the leading result dimension of "
                           << type;
  } else if (placeholders != 0) {
    return emitOpError() << "name contains '" << kExpertPlaceholder
                         << "' but no expert count is given";
  }

  if (std::optional<ArrayRef<int64_t>> perm = getPermutation()) {
    llvm::SmallSet<int64_t, 4> seen;
    bool valid = static_cast<int64_t>(perm->size()) == type.getRank();
    for (int64_t dim : *perm)
      valid &= dim >= 0 && dim < type.getRank() && seen.insert(dim).second;
    if (!valid)
      return emitOpError() << "permutation must be a permutation of 0.."
                           << type.getRank() - 1;
    if (getExperts() && (*perm)[0] != 0)
      return emitOpError()
             << "a stacked weight's permutation must keep the expert "
                "dimension first";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// DequantizeOp
//===----------------------------------------------------------------------===//

RankedTensorType
DequantizeOp::getResultTypeFor(RankedTensorType weight,
                               WeightEncodingAttrInterface) {
  return RankedTensorType::get(weight.getShape(),
                               Float32Type::get(weight.getContext()));
}

LogicalResult DequantizeOp::verify() {
  return getEncoding().verifyStorage([&] { return emitOpError(); },
                                     getStorage().getTypes(),
                                     getResult().getType());
}

//===----------------------------------------------------------------------===//
// QuantizeOp
//===----------------------------------------------------------------------===//

LogicalResult QuantizeOp::verify() {
  // Only encodings with a quantizer: a pass may not invent storage the weight
  // writer cannot produce.
  auto intGroup = dyn_cast<IntGroupEncodingAttr>(getEncoding());
  if (!intGroup && !isa<Fp8BlockEncodingAttr, Mxfp4EncodingAttr>(getEncoding()))
    return emitOpError() << "has no quantizer for encoding " << getEncoding()
                         << "; only #moe.int_group, #moe.fp8_block and "
                            "#moe.mxfp4 can be produced";
  if (auto fp8 = dyn_cast<Fp8BlockEncodingAttr>(getEncoding());
      fp8 &&
      !isa<Float8E4M3FNType>(
          cast<RankedTensorType>(getStorage()[0].getType()).getElementType()))
    return emitOpError() << "produces fp8_block values as f8E4M3FN only";
  if (std::optional<double> clip = getClipRatio()) {
    if (!intGroup || !intGroup.getSymmetric())
      return emitOpError() << "clip applies to symmetric #moe.int_group only";
    if (!(*clip > 0.0 && *clip <= 1.0))
      return emitOpError() << "clip must be in (0, 1], got " << *clip;
  }
  if (Value rows = getCalibration()) {
    if (!intGroup)
      return emitOpError()
             << "calibration rows (GPTQ) apply to #moe.int_group only";
    // The rows share the input's leading (expert) dimensions and its input
    // columns; their count n is free.
    RankedTensorType input = getInput().getType();
    auto type = cast<RankedTensorType>(rows.getType());
    int64_t rank = input.getRank();
    if (type.getRank() != rank ||
        type.getShape().take_front(rank - 2) !=
            input.getShape().take_front(rank - 2) ||
        type.getDimSize(rank - 1) != input.getDimSize(rank - 1))
      return emitOpError() << "calibration rows must be [..., n, "
                           << input.getDimSize(rank - 1)
                           << "] with the input's leading dimensions, got "
                           << type;
  }
  return getEncoding().verifyStorage([&] { return emitOpError(); },
                                     getStorage().getTypes(),
                                     getInput().getType());
}

//===----------------------------------------------------------------------===//
// ScaleColumnsOp
//===----------------------------------------------------------------------===//

LogicalResult ScaleColumnsOp::verify() {
  RankedTensorType weight = tensorType(getWeight());
  if (weight.getRank() < 2)
    return emitOpError() << "weight must be a tensor of rank >= 2 [..., out, "
                            "in], got "
                         << weight;
  int64_t columns = weight.getDimSize(weight.getRank() - 1);
  if (failed(expectRank(*this, getScales(), "scales", 1, "[in]")) ||
      failed(expectDim(*this, getScales(), "scales", 0, columns,
                       "weight's input columns")))
    return failure();
  return expectSameType(*this, getResult(), "result", weight);
}

//===----------------------------------------------------------------------===//
// SelectChannelsOp
//===----------------------------------------------------------------------===//

LogicalResult SelectChannelsOp::verify() {
  RankedTensorType input = tensorType(getInput()),
                   result = tensorType(getResult());
  int64_t rank = input.getRank(), dim = getDim();
  if (rank < 2 || !input.hasStaticShape())
    return emitOpError()
           << "input must be a static stacked tensor [E, ...], got " << input;
  if (dim < 1 || dim >= rank)
    return emitOpError() << "dim must be in [1, " << rank
                         << ") (not the expert dimension), got " << dim;
  auto sameElsewhere = [&] {
    if (result.getRank() != rank ||
        result.getElementType() != input.getElementType())
      return false;
    for (int64_t d = 0; d < rank; ++d)
      if (d != dim && result.getDimSize(d) != input.getDimSize(d))
        return false;
    return true;
  };
  if (!sameElsewhere())
    return emitOpError() << "result must be " << input
                         << " with another size along dim " << dim << ", got "
                         << result;
  int64_t width = result.getDimSize(dim), experts = input.getDimSize(0);
  ArrayRef<int64_t> channels = getChannels();
  if (int64_t(channels.size()) != experts * width)
    return emitOpError() << "needs " << experts << " x " << width
                         << " channel indices (one list per expert), got "
                         << channels.size();
  int64_t available = input.getDimSize(dim);
  for (auto [i, channel] : llvm::enumerate(channels))
    if (channel < -1 || channel >= available)
      return emitOpError() << "channel " << channel << " of expert "
                           << int64_t(i) / width << " is not -1 or in [0, "
                           << available << ")";
  return success();
}

//===----------------------------------------------------------------------===//
// FactorizeOp, LatentProductOp
//===----------------------------------------------------------------------===//

namespace {

std::string shapeString(ArrayRef<int64_t> shape) {
  std::string text = "[";
  for (auto [i, dim] : llvm::enumerate(shape))
    text += (i ? ", " : "") + std::to_string(dim);
  return text + "]";
}

/// Checks that `value` is [d0, d1, d2] with every given (non-negative) entry
/// of `shape` matching; `layout` names the dimensions for the message.
LogicalResult expectShape3(Operation *op, Value value, StringRef name,
                           ArrayRef<int64_t> shape, StringRef layout) {
  if (failed(expectRank(op, value, name, 3, layout)))
    return failure();
  RankedTensorType type = tensorType(value);
  for (auto [dim, expected] : llvm::enumerate(shape))
    if (type.getDimSize(dim) != expected)
      return op->emitOpError() << name << " must have shape " << layout << " = "
                               << shapeString(shape) << ", got " << type;
  return success();
}

} // namespace

LogicalResult FactorizeOp::verify() {
  if (failed(expectRank(*this, getInput(), "input", 3, "[experts, out, in]")))
    return failure();
  RankedTensorType input = tensorType(getInput());
  // The factorization runs at compile time on whole expert matrices: every
  // size is part of the recorded result.
  if (!input.hasStaticShape())
    return emitOpError() << "input must have a static shape, got " << input;
  int64_t experts = input.getDimSize(0), rows = input.getDimSize(1),
          columns = input.getDimSize(2);
  int64_t group = getGroup(), rank = getRank();
  if (group < 1 || experts % group != 0)
    return emitOpError() << "group " << group
                         << " must be positive and divide the number of "
                            "experts ("
                         << experts << ")";
  int64_t maxRank = std::min(group * rows, columns);
  if (rank < 1 || rank > maxRank)
    return emitOpError() << "rank " << rank
                         << " must be in [1, min(group * out, in)] = [1, "
                         << maxRank << "]";
  if (failed(expectShape3(*this, getFactors(), "factors", {experts, rows, rank},
                          "[experts, out, rank]")) ||
      failed(expectShape3(*this, getBasis(), "basis",
                          {experts / group, rank, columns},
                          "[experts / group, rank, in]")))
    return failure();
  if (Value whitening = getWhitening()) {
    if (failed(expectRank(*this, whitening, "whitening", 2, "[rows, in]")) ||
        failed(expectDim(*this, whitening, "whitening", 1, columns,
                         "input's input columns")))
      return failure();
    if (tensorType(whitening).getDimSize(0) == 0)
      return emitOpError() << "whitening needs at least one calibration row";
  }
  return success();
}

LogicalResult LatentProductOp::verify() {
  if (failed(expectRank(*this, getFactors(), "factors", 3,
                        "[experts, out, rank]")) ||
      failed(expectRank(*this, getBasis(), "basis", 3, "[groups, rank, in]")))
    return failure();
  RankedTensorType factors = tensorType(getFactors());
  RankedTensorType basis = tensorType(getBasis());
  if (!factors.hasStaticShape() || !basis.hasStaticShape())
    return emitOpError() << "factors and basis must have static shapes";
  int64_t experts = factors.getDimSize(0), groups = basis.getDimSize(0);
  if (groups < 1 || experts % groups != 0)
    return emitOpError() << "the number of bases (" << groups
                         << ") must be positive and divide the number of "
                            "experts ("
                         << experts << ")";
  if (failed(expectDim(*this, getBasis(), "basis", 1, factors.getDimSize(2),
                       "factors' rank")))
    return failure();
  return expectShape3(*this, getResult(), "result",
                      {experts, factors.getDimSize(1), basis.getDimSize(2)},
                      "[experts, out, in]");
}

//===----------------------------------------------------------------------===//
// RouteOp
//===----------------------------------------------------------------------===//

LogicalResult RouteOp::verify() {
  RoutingAttr routing = getRouting();
  if (failed(verifyRouter(*this, routing, getInput(), getGateWeight(),
                          getBias(), getCorrectionBias())))
    return failure();
  int64_t tokens = tensorType(getInput()).getDimSize(0);
  for (auto [value, name] : {std::pair{getTopkIds(), "topk_ids"},
                             std::pair{getTopkWeights(), "topk_weights"}}) {
    RankedTensorType type = tensorType(value);
    if (type.getRank() != 2 || !dimsMatch(type.getDimSize(0), tokens) ||
        type.getDimSize(1) != routing.getK())
      return emitOpError() << name << " must have shape [" << dimStr(tokens)
                           << ", " << routing.getK() << "] (tokens x k), got "
                           << type;
  }
  if (!tensorType(getTopkWeights()).getElementType().isF32())
    return emitOpError() << "topk_weights must be f32";
  return success();
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::verify() {
  if (failed(expectRank(*this, getInput(), "input", 2, "[tokens, hidden]")) ||
      failed(expectRank(*this, getTopkIds(), "topk_ids", 2, "[tokens, k]")))
    return failure();
  RankedTensorType input = tensorType(getInput());
  RankedTensorType ids = tensorType(getTopkIds());
  if (failed(expectDim(*this, getTopkIds(), "topk_ids", 0, input.getDimSize(0),
                       "number of input tokens")))
    return failure();
  if (tensorType(getTopkWeights()).getShape() != ids.getShape())
    return emitOpError() << "topk_weights must have the shape of topk_ids, got "
                         << getTopkWeights().getType();
  if (failed(verifyCapacity(*this, getCapacityFactorAttr())))
    return failure();

  RankedTensorType offsets = tensorType(getExpertOffsets());
  if (offsets.getRank() != 1 || offsets.isDynamicDim(0) ||
      offsets.getDimSize(0) < 2)
    return emitOpError()
           << "expert_offsets must be a static 1-D tensor of E + 1 elements "
              "(E >= 1), got "
           << offsets;

  // One row per (token, slot) assignment: N = T * k (unknown when either is
  // dynamic).
  int64_t rows = ids.hasStaticShape() ? ids.getDimSize(0) * ids.getDimSize(1)
                                      : ShapedType::kDynamic;
  RankedTensorType permuted = tensorType(getPermuted());
  if (permuted.getRank() != 2 || !dimsMatch(permuted.getDimSize(0), rows) ||
      !dimsMatch(permuted.getDimSize(1), input.getDimSize(1)) ||
      permuted.getElementType() != input.getElementType())
    return emitOpError() << "permuted must be [" << dimStr(rows) << ", "
                         << dimStr(input.getDimSize(1))
                         << "] (tokens * k, hidden) of "
                         << input.getElementType() << ", got " << permuted;
  for (auto [value, name] :
       {std::pair{getPermutedWeights(), "permuted_weights"},
        std::pair{getSourceSlots(), "source_slots"}}) {
    RankedTensorType type = tensorType(value);
    if (type.getRank() != 1 ||
        !dimsMatch(type.getDimSize(0), permuted.getDimSize(0)))
      return emitOpError()
             << name << " must be 1-D with one entry per permuted row, got "
             << type;
  }
  return success();
}

/// `expert_widths` of moe.experts / moe.layer: one entry per expert, each in
/// [0, I] with I the down projection's input width (known once the ffn
/// weights verified).
static LogicalResult verifyExpertWidths(Operation *op, DenseI64ArrayAttr widths,
                                        int64_t experts, Value down) {
  if (!widths)
    return success();
  if (int64_t(widths.size()) != experts)
    return op->emitOpError() << "expert_widths must have one entry per expert ("
                             << experts << "), got " << widths.size();
  int64_t width = tensorType(down).getDimSize(2);
  for (auto [e, w] : llvm::enumerate(widths.asArrayRef()))
    if (w < 0 || (!ShapedType::isDynamic(width) && w > width))
      return op->emitOpError()
             << "expert_widths[" << e << "] = " << w << " is outside [0, "
             << dimStr(width) << "] (the experts' intermediate width)";
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertsOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertsOp::verify() {
  if (failed(expectRank(*this, getInput(), "input", 2, "[rows, hidden]")))
    return failure();
  RankedTensorType offsets = tensorType(getExpertOffsets());
  if (offsets.getRank() != 1 || offsets.isDynamicDim(0) ||
      offsets.getDimSize(0) < 2)
    return emitOpError()
           << "expert_offsets must be a static 1-D tensor of E + 1 elements, "
              "got "
           << offsets;
  int64_t experts = offsets.getDimSize(0) - 1;
  RankedTensorType input = tensorType(getInput());
  FfnWeights weights{getGateProj(), getUpProj(), getDownProj(),
                     getGateBias(), getUpBias(), getDownBias()};
  if (failed(verifyFfn(*this, getFfn(), weights, /*batch=*/1, experts,
                       input.getDimSize(1), "")) ||
      failed(verifyExpertWidths(*this, getExpertWidthsAttr(), experts,
                                getDownProj())))
    return failure();
  if (Value scales = getRowScales()) {
    if (failed(expectRank(*this, scales, "row_scales", 1, "[rows]")) ||
        failed(expectDim(*this, scales, "row_scales", 0, input.getDimSize(0),
                         "number of input rows")))
      return failure();
  }
  return expectSameType(*this, getResult(), "result", input);
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

LogicalResult CombineOp::verify() {
  if (failed(expectRank(*this, getExpertOutputs(), "expert_outputs", 2,
                        "[rows, hidden]")) ||
      failed(
          expectRank(*this, getSourceSlots(), "source_slots", 1, "[rows]")) ||
      failed(expectRank(*this, getTopkWeights(), "topk_weights", 2,
                        "[tokens, k]")))
    return failure();
  RankedTensorType outputs = tensorType(getExpertOutputs());
  if (failed(expectDim(*this, getSourceSlots(), "source_slots", 0,
                       outputs.getDimSize(0), "number of expert output rows")))
    return failure();
  int64_t tokens = tensorType(getTopkWeights()).getDimSize(0);
  RankedTensorType result = tensorType(getResult());
  if (result.getRank() != 2 || !dimsMatch(result.getDimSize(0), tokens) ||
      !dimsMatch(result.getDimSize(1), outputs.getDimSize(1)))
    return emitOpError() << "result must be [" << dimStr(tokens) << ", "
                         << dimStr(outputs.getDimSize(1))
                         << "] (tokens, hidden), got " << result;
  if (Value addend = getAddend())
    return expectSameType(*this, addend, "addend", result);
  return success();
}

//===----------------------------------------------------------------------===//
// SharedExpertOp
//===----------------------------------------------------------------------===//

LogicalResult SharedExpertOp::verify() {
  if (failed(expectRank(*this, getInput(), "input", 2, "[tokens, hidden]")))
    return failure();
  RankedTensorType input = tensorType(getInput());
  FfnWeights weights{getGateProj(), getUpProj(), getDownProj(), {}, {}, {}};
  if (failed(verifyFfn(*this, getFfn(), weights, /*batch=*/0, /*numExperts=*/1,
                       input.getDimSize(1), "")))
    return failure();
  if (Value gate = getSigmoidGate()) {
    if (failed(expectRank(*this, gate, "sigmoid_gate", 2, "[1, hidden]")) ||
        failed(expectDim(*this, gate, "sigmoid_gate", 0, 1,
                         "single gate output")) ||
        failed(expectDim(*this, gate, "sigmoid_gate", 1, input.getDimSize(1),
                         "hidden size")))
      return failure();
  }
  return expectSameType(*this, getResult(), "result", input);
}

//===----------------------------------------------------------------------===//
// ScaleChannelsOp
//===----------------------------------------------------------------------===//

LogicalResult ScaleChannelsOp::verify() {
  if (failed(expectRank(*this, getInput(), "input", 2, "[tokens, hidden]")) ||
      failed(expectRank(*this, getScales(), "scales", 1, "[hidden]")) ||
      failed(expectDim(*this, getScales(), "scales", 0,
                       tensorType(getInput()).getDimSize(1), "hidden size")))
    return failure();
  return expectSameType(*this, getResult(), "result", getInput().getType());
}

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

LogicalResult LayerOp::verify() {
  if (failed(verifyRouter(*this, getRouting(), getInput(), getRouterWeight(),
                          getRouterBias(), getCorrectionBias())))
    return failure();
  int64_t hidden = tensorType(getInput()).getDimSize(1);
  int64_t experts = tensorType(getRouterWeight()).getDimSize(0);
  FfnWeights routed{getGateProj(), getUpProj(), getDownProj(),
                    getGateBias(), getUpBias(), getDownBias()};
  if (failed(verifyFfn(*this, getFfn(), routed, /*batch=*/1, experts, hidden,
                       "")) ||
      failed(verifyExpertWidths(*this, getExpertWidthsAttr(), experts,
                                getDownProj())))
    return failure();

  bool hasShared = getSharedGateProj() || getSharedUpProj() ||
                   getSharedDownProj() || getSharedSigmoidGate();
  if (hasShared && (!getSharedUpProj() || !getSharedDownProj()))
    return emitOpError()
           << "a shared expert needs shared_up_proj and shared_down_proj";
  if (hasShared != static_cast<bool>(getSharedFfnAttr()))
    return emitOpError()
           << (hasShared ? "shared expert weights need a shared_ffn attribute"
                         : "shared_ffn is set but no shared expert is given");
  if (hasShared) {
    FfnWeights shared{getSharedGateProj(),
                      getSharedUpProj(),
                      getSharedDownProj(),
                      {},
                      {},
                      {}};
    if (failed(verifyFfn(*this, *getSharedFfn(), shared, /*batch=*/0, 1, hidden,
                         "shared_")))
      return failure();
  }
  if (Value gate = getSharedSigmoidGate()) {
    if (failed(
            expectRank(*this, gate, "shared_sigmoid_gate", 2, "[1, hidden]")) ||
        failed(expectDim(*this, gate, "shared_sigmoid_gate", 0, 1,
                         "single gate output")) ||
        failed(expectDim(*this, gate, "shared_sigmoid_gate", 1, hidden,
                         "hidden size")))
      return failure();
  }
  if (failed(verifyCapacity(*this, getCapacityFactorAttr())))
    return failure();
  return expectSameType(*this, getResult(), "result", getInput().getType());
}
