//===- MoEAttrs.cpp - moe dialect attributes ------------------------------===//
//
// Verifiers of the configuration attributes and the weight encodings. The
// checks here need nothing but the attribute; those that depend on shapes (k <=
// E, group sizes) live in RoutingAttr::verifyForExperts, which the ops call.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoEAttrs.h"
#include "dialects/moe/MoEDialect.h"

#include "llvm/ADT/TypeSwitch.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

using namespace mlir;
using namespace mlir::moe;

#include "dialects/moe/MoEEnums.cpp.inc"
#include "dialects/moe/MoEInterfaces.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/moe/MoEAttrs.cpp.inc"

void MoEDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/moe/MoEAttrs.cpp.inc"
      >();
}

FailureOr<FloatAttr> mlir::moe::parseF64Parameter(AsmParser &parser) {
  double value;
  if (parser.parseFloat(value))
    return failure();
  return FloatAttr::get(Float64Type::get(parser.getContext()), value);
}

void mlir::moe::printF64Parameter(AsmPrinter &printer, FloatAttr value) {
  double number = value.getValueAsDouble();
  char buffer[64];
  // Plain decimals where they are short and exact (16.0, 1000.0, 0.01) ...
  if (std::abs(number) >= 1e-4 && std::abs(number) < 1e15) {
    for (int decimals = 1; decimals <= 6; ++decimals) {
      std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, number);
      if (std::strtod(buffer, nullptr) == number) {
        printer << buffer;
        return;
      }
    }
  }
  // ... otherwise the shortest "%g" form that reads back to the same double.
  std::string text;
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, number);
    text = buffer;
    if (std::strtod(buffer, nullptr) == number)
      break;
  }
  // MLIR's float literals need a '.' ("1e-20" would lex as an integer and an
  // identifier).
  if (text.find_first_of(".ni") == std::string::npos) {
    size_t exponent = text.find('e');
    text.insert(exponent == std::string::npos ? text.size() : exponent, ".0");
  }
  printer << text;
}

static double valueOr(FloatAttr attr, double fallback) {
  return attr ? attr.getValueAsDouble() : fallback;
}

//===----------------------------------------------------------------------===//
// RoutingAttr
//===----------------------------------------------------------------------===//

double RoutingAttr::getScalingValue() const {
  return valueOr(getScaling(), 1.0);
}
double RoutingAttr::getNormEpsilonValue() const {
  return valueOr(getNormEpsilon(), 0.0);
}

bool RoutingAttr::scoresBeforeSelection() const {
  return getScoring() == ScoringFunc::Softmax ||
         getScoring() == ScoringFunc::Sigmoid;
}

LogicalResult RoutingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                  ScoringFunc scoring, unsigned k,
                                  ExpertSelection selection, bool normalize,
                                  FloatAttr normEpsilon, FloatAttr scaling,
                                  unsigned nGroup, unsigned topkGroup,
                                  GroupScore groupScore, FloatAttr topP,
                                  FloatAttr epsilon, Type logitsType) {
  if (k == 0)
    return emitError() << "routing needs k >= 1";
  for (FloatAttr value : {normEpsilon, scaling, topP, epsilon})
    if (value && !std::isfinite(value.getValueAsDouble()))
      return emitError() << "routing parameters must be finite";
  bool beforeSelection =
      scoring == ScoringFunc::Softmax || scoring == ScoringFunc::Sigmoid;

  if (normEpsilon) {
    if (!normalize)
      return emitError() << "norm_epsilon is set but normalize is false";
    if (normEpsilon.getValueAsDouble() < 0.0)
      return emitError() << "norm_epsilon must be >= 0, got "
                         << normEpsilon.getValueAsDouble();
  }
  if (scaling && !(scaling.getValueAsDouble() > 0.0))
    return emitError() << "routed scaling factor must be > 0, got "
                       << scaling.getValueAsDouble();
  if (logitsType && !isa<FloatType>(logitsType))
    return emitError() << "logits_type must be a floating-point type, got "
                       << logitsType;

  // PhiMoE's sparsemixer. Checked before the selection rules, whose own
  // messages would otherwise hide that sparsemixer admits no selection but
  // topk.
  if (scoring == ScoringFunc::Sparsemixer) {
    if (k != 2)
      return emitError()
             << "sparsemixer routes exactly 2 experts per token, got k = " << k;
    if (selection != ExpertSelection::TopK)
      return emitError()
             << "sparsemixer makes its own selection; selection must be topk";
    if (!epsilon || !(epsilon.getValueAsDouble() > 0.0))
      return emitError() << "sparsemixer needs epsilon > 0";
    if (normalize)
      return emitError() << "sparsemixer weights are not renormalized";
  } else if (epsilon) {
    return emitError() << "epsilon applies only to sparsemixer scoring";
  }

  // Group-limited selection (DeepSeek).
  if (selection == ExpertSelection::GroupLimited) {
    if (nGroup == 0 || topkGroup == 0)
      return emitError() << "group_limited selection needs n_group >= 1 and "
                            "topk_group >= 1";
    if (topkGroup > nGroup)
      return emitError() << "topk_group (" << topkGroup << ") exceeds n_group ("
                         << nGroup << ")";
    if (!beforeSelection)
      return emitError()
             << "group_limited selection needs scores over all experts "
                "(softmax or sigmoid scoring)";
  } else {
    if (nGroup != 0 || topkGroup != 0)
      return emitError()
             << "n_group and topk_group apply only to group_limited selection";
    if (groupScore != GroupScore::Max)
      return emitError()
             << "group_score applies only to group_limited selection";
  }

  // Top-p selection (dynamic k).
  if (selection == ExpertSelection::TopP) {
    if (!topP)
      return emitError() << "top_p selection needs a top_p threshold";
    double p = topP.getValueAsDouble();
    if (!(p > 0.0 && p <= 1.0))
      return emitError() << "top_p must be in (0, 1], got " << p;
    if (scoring != ScoringFunc::Softmax)
      return emitError()
             << "top_p selection needs softmax scoring (a probability mass)";
  } else if (topP) {
    return emitError() << "top_p is set but selection is not top_p";
  }

  return success();
}

LogicalResult
RoutingAttr::verifyForExperts(function_ref<InFlightDiagnostic()> emitError,
                              int64_t numExperts) const {
  if (ShapedType::isDynamic(numExperts))
    return success();
  if (getK() > numExperts)
    return emitError() << "k = " << getK() << " exceeds the number of experts ("
                       << numExperts << ")";
  if (getSelection() != ExpertSelection::GroupLimited)
    return success();
  int64_t groups = getNGroup();
  if (numExperts % groups != 0)
    return emitError() << numExperts << " experts do not split into " << groups
                       << " equal groups";
  int64_t groupSize = numExperts / groups;
  if (getGroupScore() == GroupScore::Top2Sum && groupSize < 2)
    return emitError()
           << "top2_sum group scoring needs at least 2 experts per group, got "
           << groupSize;
  int64_t eligible = groupSize * getTopkGroup();
  if (getK() > eligible)
    return emitError() << "k = " << getK() << " exceeds the " << eligible
                       << " experts of the kept groups";
  return success();
}

//===----------------------------------------------------------------------===//
// FfnAttr
//===----------------------------------------------------------------------===//

LogicalResult FfnAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                              Activation activation, GluLayout glu,
                              FloatAttr alpha, FloatAttr limit) {
  for (FloatAttr value : {alpha, limit})
    if (value && !std::isfinite(value.getValueAsDouble()))
      return emitError() << "ffn parameters must be finite";
  if (activation == Activation::ClampedSwiglu) {
    if (glu == GluLayout::None)
      return emitError() << "clamped_swiglu is gated; glu must not be none";
    if (!alpha || !limit)
      return emitError() << "clamped_swiglu needs alpha and limit";
    if (!(limit.getValueAsDouble() > 0.0))
      return emitError() << "clamped_swiglu limit must be > 0, got "
                         << limit.getValueAsDouble();
    return success();
  }
  if (alpha || limit)
    return emitError() << "alpha and limit apply only to clamped_swiglu";
  return success();
}

//===----------------------------------------------------------------------===//
// Weight encodings
//===----------------------------------------------------------------------===//

/// Checks the shape rules every encoding shares: a logical tensor of rank >= 2
/// whose leading (batch, e.g. expert) dimensions every stored tensor repeats.
static LogicalResult
verifyBatchDims(function_ref<InFlightDiagnostic()> emitError,
                RankedTensorType storage, StringRef what,
                RankedTensorType result, int64_t storageRankExtra) {
  if (storage.getRank() != result.getRank() + storageRankExtra)
    return emitError() << what << " must have rank "
                       << result.getRank() + storageRankExtra << ", got "
                       << storage;
  for (int64_t i = 0; i < result.getRank() - 2; ++i)
    if (storage.getDimSize(i) != result.getDimSize(i))
      return emitError() << what << " dimension " << i << " is "
                         << storage.getDimSize(i) << " but the result's is "
                         << result.getDimSize(i);
  return success();
}

static LogicalResult
expectStorageCount(function_ref<InFlightDiagnostic()> emitError,
                   StringRef encoding, TypeRange storage, size_t expected) {
  if (storage.size() != expected)
    return emitError() << encoding << " takes " << expected
                       << " stored tensors, got " << storage.size();
  for (Type type : storage)
    if (!isa<RankedTensorType>(type) ||
        !cast<RankedTensorType>(type).hasStaticShape())
      return emitError() << "stored tensors must be statically shaped, got "
                         << type;
  return success();
}

static LogicalResult
verifyLogicalResult(function_ref<InFlightDiagnostic()> emitError,
                    RankedTensorType result) {
  if (result.getRank() < 2 || !result.hasStaticShape())
    return emitError()
           << "a dequantized weight must be a static tensor of rank >= 2, got "
           << result;
  return success();
}

LogicalResult
Fp8BlockEncodingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                             int64_t blockRows, int64_t blockCols) {
  if (blockRows <= 0 || blockCols <= 0)
    return emitError() << "fp8_block block sizes must be positive, got "
                       << blockRows << "x" << blockCols;
  return success();
}

LogicalResult Fp8BlockEncodingAttr::verifyStorage(
    function_ref<InFlightDiagnostic()> emitError, TypeRange storage,
    RankedTensorType result) const {
  if (failed(verifyLogicalResult(emitError, result)) ||
      failed(expectStorageCount(emitError, "fp8_block", storage, 2)))
    return failure();
  auto values = cast<RankedTensorType>(storage[0]);
  auto scales = cast<RankedTensorType>(storage[1]);
  if (!isa<Float8E4M3FNType, Float8E5M2Type>(values.getElementType()))
    return emitError() << "fp8_block values must be f8E4M3FN or f8E5M2, got "
                       << values.getElementType();
  if (values.getShape() != result.getShape())
    return emitError() << "fp8_block values shape must equal the result shape";
  if (!scales.getElementType().isF32())
    return emitError() << "fp8_block scales must be f32, got "
                       << scales.getElementType();
  if (failed(verifyBatchDims(emitError, scales, "fp8_block scales", result, 0)))
    return failure();
  int64_t rank = result.getRank();
  int64_t rows = llvm::divideCeil(result.getDimSize(rank - 2), getBlockRows());
  int64_t cols = llvm::divideCeil(result.getDimSize(rank - 1), getBlockCols());
  if (scales.getDimSize(rank - 2) != rows ||
      scales.getDimSize(rank - 1) != cols)
    return emitError() << "fp8_block scales must be " << rows << "x" << cols
                       << " in their last two dimensions (one per block), got "
                       << scales.getDimSize(rank - 2) << "x"
                       << scales.getDimSize(rank - 1);
  return success();
}

/// Elements per MXFP4 block, sharing one e8m0 scale.
static constexpr int64_t kMxBlock = 32;

LogicalResult
Mxfp4EncodingAttr::verifyStorage(function_ref<InFlightDiagnostic()> emitError,
                                 TypeRange storage,
                                 RankedTensorType result) const {
  if (failed(verifyLogicalResult(emitError, result)) ||
      failed(expectStorageCount(emitError, "mxfp4", storage, 2)))
    return failure();
  auto blocks = cast<RankedTensorType>(storage[0]);
  auto scales = cast<RankedTensorType>(storage[1]);
  for (auto [type, what] :
       {std::pair{blocks, "blocks"}, std::pair{scales, "scales"}})
    if (!type.getElementType().isInteger(8))
      return emitError() << "mxfp4 " << what << " must be 8-bit integers, got "
                         << type.getElementType();
  int64_t rank = result.getRank();
  int64_t cols = result.getDimSize(rank - 1);
  if (cols % kMxBlock != 0)
    return emitError() << "mxfp4 needs the input dimension (" << cols
                       << ") to be a multiple of 32";
  if (failed(verifyBatchDims(emitError, blocks, "mxfp4 blocks", result, 1)) ||
      failed(verifyBatchDims(emitError, scales, "mxfp4 scales", result, 0)))
    return failure();
  int64_t rows = result.getDimSize(rank - 2);
  if (blocks.getDimSize(rank - 2) != rows ||
      blocks.getDimSize(rank - 1) != cols / kMxBlock ||
      blocks.getDimSize(rank) != kMxBlock / 2)
    return emitError() << "mxfp4 blocks must end in " << rows << "x"
                       << cols / kMxBlock << "x16 for a result of " << rows
                       << "x" << cols;
  if (scales.getDimSize(rank - 2) != rows ||
      scales.getDimSize(rank - 1) != cols / kMxBlock)
    return emitError() << "mxfp4 scales must end in " << rows << "x"
                       << cols / kMxBlock;
  return success();
}

LogicalResult
IntGroupEncodingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                             unsigned bits, int64_t groupSize, bool) {
  if (bits != 4 && bits != 8)
    return emitError() << "int_group supports 4 or 8 bits, got " << bits;
  if (groupSize <= 0)
    return emitError() << "int_group group_size must be positive, got "
                       << groupSize;
  return success();
}

LogicalResult IntGroupEncodingAttr::verifyStorage(
    function_ref<InFlightDiagnostic()> emitError, TypeRange storage,
    RankedTensorType result) const {
  if (failed(verifyLogicalResult(emitError, result)) ||
      failed(expectStorageCount(emitError, "int_group", storage,
                                getSymmetric() ? 2 : 3)))
    return failure();
  auto values = cast<RankedTensorType>(storage[0]);
  auto scales = cast<RankedTensorType>(storage[1]);
  int64_t rank = result.getRank();
  int64_t rows = result.getDimSize(rank - 2);
  int64_t cols = result.getDimSize(rank - 1);
  if (cols % getGroupSize() != 0)
    return emitError() << "int_group group_size " << getGroupSize()
                       << " does not divide the input dimension " << cols;
  if (!values.getElementType().isInteger(8))
    return emitError() << "int_group values must be 8-bit integers, got "
                       << values.getElementType();
  if (getBits() == 4 && cols % 2 != 0)
    return emitError() << "4-bit int_group packs two values per byte and needs "
                          "an even input "
                          "dimension, got "
                       << cols;
  int64_t packedCols = getBits() == 4 ? cols / 2 : cols;
  if (failed(verifyBatchDims(emitError, values, "int_group values", result, 0)))
    return failure();
  if (values.getDimSize(rank - 2) != rows ||
      values.getDimSize(rank - 1) != packedCols)
    return emitError() << "int_group values must end in " << rows << "x"
                       << packedCols
                       << (getBits() == 4 ? " (two 4-bit values per byte)"
                                          : "");
  if (!isa<FloatType>(scales.getElementType()))
    return emitError() << "int_group scales must be floating point, got "
                       << scales.getElementType();
  if (failed(verifyBatchDims(emitError, scales, "int_group scales", result, 0)))
    return failure();
  int64_t groups = cols / getGroupSize();
  if (scales.getDimSize(rank - 2) != rows ||
      scales.getDimSize(rank - 1) != groups)
    return emitError() << "int_group scales must end in " << rows << "x"
                       << groups;
  if (!getSymmetric() &&
      cast<RankedTensorType>(storage[2]).getShape() != scales.getShape())
    return emitError() << "int_group zero points must have the scales' shape";
  return success();
}
