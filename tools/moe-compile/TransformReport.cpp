//===- TransformReport.cpp - what the weight-changing passes did, per layer
//===//

#include "tools/moe-compile/TransformReport.h"

#include "lib/Compress/Calibration.h"
#include "lib/Compress/ExpertScores.h"

#include "dialects/moe/MoEOps.h"
#include "lib/Reference/Evaluator.h"
#include "lib/Support/DType.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace mlir::moe;

static uint64_t tensorBytes(Type type) {
  auto tensor = cast<RankedTensorType>(type);
  unsigned bits = tensor.getElementType().getIntOrFloatBitWidth();
  return uint64_t(tensor.getNumElements()) * bits / 8;
}

/// Bytes of the stored tensors a weight value is computed from, following
/// the transformations the weight writer executes: a moe.weight as it is, a
/// moe.dequantize's storage (a moe.quantize's results: values and scales), a
/// moe.latent_product's factors, a concat's pieces, a slice's share of its
/// source (a slice of quantized or factorized storage stays that storage), a
/// column scaling as its result. Inline constants (smoothing scales) and
/// activations count nothing.
static uint64_t bytesOf(Value value) {
  Operation *def = value.getDefiningOp();
  if (!def)
    return 0;
  if (isa<WeightOp, QuantizeOp, FactorizeOp, ScaleColumnsOp>(def))
    return tensorBytes(value.getType());
  if (isa<DequantizeOp, LatentProductOp, tensor::ConcatOp>(def)) {
    uint64_t bytes = 0;
    for (Value operand : def->getOperands())
      bytes += bytesOf(operand);
    return bytes;
  }
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def)) {
    auto source = cast<RankedTensorType>(slice.getSource().getType());
    auto result = cast<RankedTensorType>(slice.getType());
    if (!source.hasStaticShape() || source.getNumElements() == 0)
      return 0;
    return bytesOf(slice.getSource()) * uint64_t(result.getNumElements()) /
           uint64_t(source.getNumElements());
  }
  if (auto select = dyn_cast<SelectChannelsOp>(def)) {
    // The share of the source's channels it keeps (padding stores nothing).
    auto source = cast<RankedTensorType>(select.getInput().getType());
    uint64_t kept = llvm::count_if(
        select.getChannels(), [](int64_t channel) { return channel >= 0; });
    uint64_t all = uint64_t(source.getDimSize(0)) *
                   uint64_t(source.getDimSize(select.getDim()));
    return all ? bytesOf(select.getInput()) * kept / all : 0;
  }
  return 0;
}

static bool isWeightTransform(Operation *op) {
  return isa<WeightOp, QuantizeOp, DequantizeOp, FactorizeOp, LatentProductOp,
             ScaleColumnsOp, SelectChannelsOp, tensor::ConcatOp,
             tensor::ExtractSliceOp, arith::ConstantOp>(op);
}

uint64_t mlir::moe::storedWeightBytes(Operation *function) {
  // Every weight value an op that computes with weights (moe.layer, route,
  // experts, ...) reads, once.
  llvm::DenseSet<Value> counted;
  uint64_t bytes = 0;
  function->walk([&](Operation *op) {
    if (isWeightTransform(op))
      return;
    for (Value operand : op->getOperands()) {
      Operation *def = operand.getDefiningOp();
      if (!def || !isWeightTransform(def) || !counted.insert(operand).second)
        continue;
      bytes += bytesOf(operand);
    }
  });
  return bytes;
}

namespace {

/// A report attribute a pass recorded, as JSON.
nlohmann::ordered_json toJson(Attribute attr) {
  if (auto dict = dyn_cast<DictionaryAttr>(attr)) {
    nlohmann::ordered_json object = nlohmann::ordered_json::object();
    for (NamedAttribute entry : dict)
      object[entry.getName().str()] = toJson(entry.getValue());
    return object;
  }
  if (auto array = dyn_cast<ArrayAttr>(attr)) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (Attribute element : array)
      list.push_back(toJson(element));
    return list;
  }
  if (auto ints = dyn_cast<DenseI64ArrayAttr>(attr))
    return nlohmann::ordered_json(ints.asArrayRef().vec());
  if (auto floats = dyn_cast<DenseF64ArrayAttr>(attr))
    return nlohmann::ordered_json(floats.asArrayRef().vec());
  if (auto boolean = dyn_cast<BoolAttr>(attr))
    return boolean.getValue();
  if (auto integer = dyn_cast<IntegerAttr>(attr))
    return integer.getInt();
  if (auto real = dyn_cast<FloatAttr>(attr))
    return real.getValueAsDouble();
  if (auto string = dyn_cast<StringAttr>(attr))
    return string.str();
  std::string text;
  llvm::raw_string_ostream os(text);
  attr.print(os);
  return text;
}

} // namespace

FailureOr<nlohmann::ordered_json>
mlir::moe::buildTransformReport(ModuleOp original, ModuleOp transformed,
                                const ::moe::Checkpoint &checkpoint,
                                llvm::StringRef calibration,
                                llvm::StringRef passes) {
  std::unique_ptr<::moe::SafetensorsFile> file;
  if (!calibration.empty()) {
    auto opened = ::moe::SafetensorsFile::open(calibration);
    if (!opened)
      return emitError(transformed.getLoc())
                 << llvm::toString(opened.takeError()),
             failure();
    file = std::move(*opened);
  }
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  reference::WeightLoader weights(checkpoint);
  for (auto after : transformed.getOps<func::FuncOp>()) {
    auto before = original.lookupSymbol<func::FuncOp>(after.getName());
    if (!before)
      continue;
    int64_t layer = compress::layerIndexOf(after);
    nlohmann::ordered_json entry;
    entry["layer"] = layer;
    uint64_t bytesBefore = storedWeightBytes(before),
             bytesAfter = storedWeightBytes(after);
    entry["weight_bytes_before"] = bytesBefore;
    entry["weight_bytes_after"] = bytesAfter;
    entry["weight_ratio"] =
        bytesBefore ? double(bytesAfter) / double(bytesBefore) : 1.0;
    if (file) {
      auto input = cast<RankedTensorType>(after.getArgumentTypes()[0]);
      FailureOr<reference::RefTensor> x = compress::calibrationStates(
          *file, calibration, layer, input.getDimSize(1), after.getLoc());
      if (failed(x))
        return failure();
      FailureOr<reference::Evaluation> want =
          reference::evaluate(before, *x, weights);
      FailureOr<reference::Evaluation> got =
          reference::evaluate(after, *x, weights);
      if (failed(want) || failed(got))
        return failure();
      int64_t tokens = x->dim(0);
      int64_t agree = 0;
      if (want->routing && got->routing) {
        const reference::RefTensor &ids = got->routing->ids;
        // A pruned layer numbers its experts among the kept ones; compare
        // original indices.
        ArrayRef<int64_t> kept;
        after.walk([&](LayerOp layer) {
          if (auto attr = layer->getAttrOfType<DenseI64ArrayAttr>(
                  compress::kKeptExpertsAttr))
            kept = attr.asArrayRef();
        });
        agree = reference::tokensWithSameExperts(
            want->routing->ids, [&](int64_t t, int64_t j) {
              int64_t id = int64_t(ids.data[t * ids.dim(1) + j]);
              return id >= 0 && id < int64_t(kept.size()) ? kept[id] : id;
            });
      }
      entry["calibration_tokens"] = tokens;
      entry["rel_err"] = reference::relativeError(
          want->output, [&](int64_t i) { return got->output.data[i]; });
      entry["routing_agreement"] = double(agree) / double(tokens);
    }
    // What each pass recorded about this layer (moe.report.<pass>).
    for (NamedAttribute attr : after->getAttrs())
      if (attr.getName().strref().starts_with(compress::kReportPrefix))
        entry[attr.getName()
                  .strref()
                  .drop_front(compress::kReportPrefix.size())
                  .str()] = toJson(attr.getValue());
    layers.push_back(entry);
  }
  nlohmann::ordered_json report;
  report["passes"] = passes.str();
  report["calibration"] = calibration.str();
  report["layers"] = layers;
  return report;
}
