//===- TransformReport.cpp - what the weight-changing passes did, per layer
//===//

#include "tools/moe-compile/TransformReport.h"

#include "dialects/moe/MoEOps.h"
#include "lib/Reference/Evaluator.h"
#include "lib/Support/DType.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace mlir::moe;

static uint64_t tensorBytes(Type type) {
  auto tensor = cast<RankedTensorType>(type);
  unsigned bits = tensor.getElementType().getIntOrFloatBitWidth();
  return uint64_t(tensor.getNumElements()) * bits / 8;
}

uint64_t mlir::moe::storedWeightBytes(Operation *function) {
  uint64_t bytes = 0;
  function->walk([&](Operation *op) {
    if (auto weight = dyn_cast<WeightOp>(op)) {
      bool onlyQuantized =
          !weight->use_empty() &&
          llvm::all_of(weight->getUsers(),
                       [](Operation *user) { return isa<QuantizeOp>(user); });
      if (!onlyQuantized)
        bytes += tensorBytes(weight.getType());
    } else if (auto quant = dyn_cast<QuantizeOp>(op)) {
      for (Type type : quant.getStorage().getTypes())
        bytes += tensorBytes(type);
    }
  });
  return bytes;
}

namespace {

/// `layer<N>.hidden_states`, else `hidden_states`, as doubles.
FailureOr<reference::RefTensor>
calibrationFor(const ::moe::SafetensorsFile &file, llvm::StringRef path,
               int64_t layer, int64_t hidden, Location loc) {
  std::string name = "layer" + std::to_string(layer) + ".hidden_states";
  if (!file.find(name))
    name = "hidden_states";
  if (!file.find(name))
    return emitError(loc) << path << ": no 'layer" << layer
                          << ".hidden_states' and no 'hidden_states' tensor",
           failure();
  llvm::Expected<reference::RefTensor> states =
      reference::readHiddenStates(file, path, name);
  if (!states)
    return emitError(loc) << llvm::toString(states.takeError()), failure();
  if (states->dim(1) != hidden)
    return emitError(loc) << path << ": '" << name << "' must be [tokens >= 1, "
                          << hidden << "]",
           failure();
  return std::move(*states);
}

int64_t layerIndexOf(func::FuncOp function) {
  if (auto index = function->getAttrOfType<IntegerAttr>("moe.layer_index"))
    return index.getInt();
  int64_t index = -1;
  if (function.getName().starts_with("layer_"))
    (void)function.getName().drop_front(6).getAsInteger(10, index);
  return index;
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
    int64_t layer = layerIndexOf(after);
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
      FailureOr<reference::RefTensor> x = calibrationFor(
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
        agree = reference::tokensWithSameExperts(
            want->routing->ids, [&](int64_t t, int64_t j) {
              return int64_t(ids.data[t * ids.dim(1) + j]);
            });
      }
      entry["calibration_tokens"] = tokens;
      entry["rel_err"] = reference::relativeError(
          want->output, [&](int64_t i) { return got->output.data[i]; });
      entry["routing_agreement"] = double(agree) / double(tokens);
    }
    layers.push_back(entry);
  }
  nlohmann::ordered_json report;
  report["passes"] = passes.str();
  report["calibration"] = calibration.str();
  report["layers"] = layers;
  return report;
}
