//===- Calibration.cpp - what data-driven passes measure on a layer -------===//

#include "lib/Compress/Calibration.h"

#include "lib/Reference/Evaluator.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

#include <cstdio>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::compress;
using reference::RefTensor;

std::string compress::optionOrModuleAttr(Operation *root, StringRef option,
                                         StringRef name) {
  if (!option.empty())
    return option.str();
  Operation *module =
      isa<ModuleOp>(root) ? root : root->getParentOfType<ModuleOp>();
  if (module)
    if (auto attr = module->getAttrOfType<StringAttr>(name))
      return attr.str();
  return "";
}

std::string compress::shortNumber(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", value);
  return buffer;
}

FailureOr<std::unique_ptr<PassData>>
PassData::open(Operation *root, StringRef pass, StringRef weightsDir,
               StringRef calibration, bool needCalibration) {
  auto data = std::unique_ptr<PassData>(new PassData());
  std::string dir = optionOrModuleAttr(root, weightsDir, kWeightsDirAttr);
  if (dir.empty())
    return root->emitError()
               << pass
               << ": needs the checkpoint's weights: give the `weights` option "
                  "(a checkpoint folder) or run it from moe-compile",
           failure();
  auto checkpoint = ::moe::Checkpoint::open(dir);
  if (!checkpoint)
    return root->emitError()
               << pass << ": " << llvm::toString(checkpoint.takeError()),
           failure();
  data->checkpoint = std::move(*checkpoint);
  data->materializer =
      std::make_unique<reference::WeightMaterializer>(*data->checkpoint);

  std::string path = optionOrModuleAttr(root, calibration, kCalibrationAttr);
  if (path.empty()) {
    if (needCalibration)
      return root->emitError()
                 << pass
                 << ": needs calibration hidden states: give the `calibration` "
                    "option (a safetensors file; `moe-run CKPT "
                    "--calibration-tokens N --output FILE` makes one) or "
                    "moe-compile --calibration",
             failure();
    return data;
  }
  auto file = ::moe::SafetensorsFile::open(path);
  if (!file)
    return root->emitError()
               << pass << ": " << llvm::toString(file.takeError()),
           failure();
  data->calibration = std::move(*file);
  data->calibrationPath = path;
  return data;
}

LogicalResult compress::requireStaticHidden(LayerOp layer, StringRef pass) {
  auto input = cast<RankedTensorType>(layer.getInput().getType());
  if (input.isDynamicDim(1))
    return layer.emitOpError()
           << pass << " needs a static hidden size, got " << input;
  return success();
}

LogicalResult compress::transformLayers(
    Operation *root, StringRef pass, StringRef weightsDir,
    StringRef calibration, bool needCalibration,
    function_ref<LogicalResult(LayerOp)> check,
    function_ref<LogicalResult(LayerOp, PassData &)> transform) {
  SmallVector<LayerOp> layers;
  root->walk([&](LayerOp layer) { layers.push_back(layer); });
  if (layers.empty())
    return success();
  for (LayerOp layer : layers)
    if (failed(requireStaticHidden(layer, pass)) || failed(check(layer)))
      return failure();
  FailureOr<std::unique_ptr<PassData>> data =
      PassData::open(root, pass, weightsDir, calibration, needCalibration);
  if (failed(data))
    return failure();
  for (LayerOp layer : layers)
    if (failed(transform(layer, **data)))
      return failure();
  return success();
}

int64_t compress::layerIndexOf(Operation *op) {
  auto function = isa<func::FuncOp>(op) ? cast<func::FuncOp>(op)
                                        : op->getParentOfType<func::FuncOp>();
  if (!function)
    return -1;
  if (auto index = function->getAttrOfType<IntegerAttr>("moe.layer_index"))
    return index.getInt();
  int64_t index = -1;
  if (function.getName().starts_with("layer_"))
    (void)function.getName().drop_front(6).getAsInteger(10, index);
  return index;
}

FailureOr<RefTensor>
compress::calibrationStates(const ::moe::SafetensorsFile &file, StringRef path,
                            int64_t layer, int64_t hidden, Location loc) {
  std::string name = "layer" + std::to_string(layer) + ".hidden_states";
  if (!file.find(name))
    name = "hidden_states";
  if (!file.find(name))
    return emitError(loc) << path << ": no 'layer" << layer
                          << ".hidden_states' and no 'hidden_states' tensor",
           failure();
  auto states = reference::readHiddenStates(file, path, name);
  if (!states)
    return emitError(loc) << llvm::toString(states.takeError()), failure();
  if (states->dim(1) != hidden)
    return emitError(loc) << path << ": '" << name << "' must be [tokens >= 1, "
                          << hidden << "]",
           failure();
  return std::move(*states);
}

FailureOr<RefTensor> PassData::statesFor(Operation *op, int64_t hidden) {
  if (!calibration)
    return op->emitError() << "no calibration states were given", failure();
  FailureOr<RefTensor> states = calibrationStates(
      *calibration, calibrationPath, layerIndexOf(op), hidden, op->getLoc());
  if (failed(states))
    return failure();
  // A smoothed layer (moe-smooth-experts) reads its input through
  // moe.scale_channels and its router and experts were scaled to match: what
  // they see are the scaled states (in float64, as the reference evaluator).
  if (auto layer = dyn_cast<LayerOp>(op)) {
    Value input = layer.getInput();
    while (auto scale = input.getDefiningOp<ScaleChannelsOp>()) {
      FailureOr<RefTensor> scales = materializer->get(scale.getScales());
      if (failed(scales))
        return failure();
      int64_t channels = scales->numel();
      for (int64_t i = 0; i < states->numel(); ++i)
        states->data[i] *= scales->data[i % channels];
      input = scale.getInput();
    }
  }
  return states;
}

reference::FfnValues compress::routedExperts(LayerOp layer) {
  return reference::FfnValues::get(layer.getFfn(), layer.getGateProj(),
                                   layer.getUpProj(), layer.getDownProj(),
                                   layer.getGateBias(), layer.getUpBias(),
                                   layer.getDownBias(), /*stacked=*/true);
}

std::optional<reference::FfnValues> compress::sharedExpert(LayerOp layer) {
  if (!layer.getSharedUpProj())
    return std::nullopt;
  return reference::FfnValues::get(
      *layer.getSharedFfn(), layer.getSharedGateProj(), layer.getSharedUpProj(),
      layer.getSharedDownProj(), {}, {}, {}, /*stacked=*/false);
}

RefTensor LayerObservation::routedRows(int64_t expert) const {
  const auto &pairs = assignments[expert];
  int64_t hidden = input.dim(1);
  RefTensor rows({int64_t(pairs.size()), hidden});
  for (auto [i, pair] : llvm::enumerate(pairs))
    std::copy_n(input.row(pair.first), hidden, rows.row(i));
  return rows;
}

std::vector<double> LayerObservation::routedWeights(int64_t expert) const {
  int64_t k = routing.ids.dim(1);
  std::vector<double> weights;
  for (auto [token, slot] : assignments[expert])
    weights.push_back(routing.weights.data[token * k + slot]);
  return weights;
}

FailureOr<LayerObservation>
compress::observeLayer(LayerOp layer, reference::WeightMaterializer &weights,
                       RefTensor input) {
  FailureOr<RefTensor> router = weights.get(layer.getRouterWeight());
  if (failed(router))
    return failure();
  std::optional<RefTensor> bias, correction;
  if (Value v = layer.getRouterBias()) {
    FailureOr<RefTensor> t = weights.get(v);
    if (failed(t))
      return failure();
    bias = std::move(*t);
  }
  if (Value v = layer.getCorrectionBias()) {
    FailureOr<RefTensor> t = weights.get(v);
    if (failed(t))
      return failure();
    correction = std::move(*t);
  }
  LayerObservation observation;
  observation.routing = reference::route(layer.getRouting(), input, *router,
                                         bias ? &*bias : nullptr,
                                         correction ? &*correction : nullptr);
  observation.numExperts = router->dim(0);
  observation.assignments.resize(observation.numExperts);
  const RefTensor &ids = observation.routing.ids;
  int64_t tokens = ids.dim(0), k = ids.dim(1);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < k; ++j) {
      int64_t e = int64_t(ids.data[t * k + j]);
      if (e >= 0 && e < observation.numExperts)
        observation.assignments[e].push_back({t, j});
    }
  observation.input = std::move(input);
  return observation;
}

/// y = W x (+ b) for one row; W is [rows, cols] row-major.
static void matVec(const RefTensor &w, const double *x, const double *bias,
                   double *y) {
  int64_t rows = w.dim(0), cols = w.dim(1);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = bias ? bias[r] : 0.0;
    const double *row = w.row(r);
    for (int64_t c = 0; c < cols; ++c)
      sum += row[c] * x[c];
    y[r] = sum;
  }
}

RefTensor compress::expertForward(FfnAttr ffn,
                                  const reference::ExpertMatrices &expert,
                                  const RefTensor &rows,
                                  RefTensor *intermediate) {
  int64_t n = rows.dim(0), width = expert.up.dim(0),
          hidden = expert.down.dim(0);
  RefTensor h({n, width}), y({n, hidden});
  std::vector<double> up(width), gate(width);
  for (int64_t r = 0; r < n; ++r) {
    matVec(expert.up, rows.row(r),
           expert.upBias ? expert.upBias->data.data() : nullptr, up.data());
    if (expert.gate) {
      matVec(*expert.gate, rows.row(r),
             expert.gateBias ? expert.gateBias->data.data() : nullptr,
             gate.data());
      for (int64_t i = 0; i < width; ++i)
        h.row(r)[i] = reference::gatedActivation(ffn, gate[i], up[i]);
    } else {
      for (int64_t i = 0; i < width; ++i)
        h.row(r)[i] = reference::activate(ffn.getActivation(), up[i]);
    }
    matVec(expert.down, h.row(r),
           expert.downBias ? expert.downBias->data.data() : nullptr, y.row(r));
  }
  if (intermediate)
    *intermediate = std::move(h);
  return y;
}
