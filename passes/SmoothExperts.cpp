//===- SmoothExperts.cpp - EAQuant's smoothing fold -----------------------===//
//
// Per-channel scales s are measured on calibration states and folded out of
// the layer's input into every linear map that reads it: x / s at the input,
// W * s on the input columns of the router, the routed and shared experts'
// gate/up and the shared expert's sigmoid gate. Both sides are recorded as
// ops (moe.scale_channels, moe.scale_columns); weights stay references.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "lib/Compress/Calibration.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <cmath>

namespace mlir::moe {
#define GEN_PASS_DEF_MOESMOOTHEXPERTS
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;
using reference::RefTensor;

namespace {

constexpr llvm::StringLiteral kPassName = "moe-smooth-experts";

/// The moe.dequantize in the expression computing `weight`, if any: such a
/// weight is stored quantized and its grid would not survive scaling.
DequantizeOp findDequantize(Value weight) {
  SmallVector<Value> worklist{weight};
  while (!worklist.empty()) {
    Operation *op = worklist.pop_back_val().getDefiningOp();
    if (!op)
      continue;
    if (auto dequant = dyn_cast<DequantizeOp>(op))
      return dequant;
    llvm::append_range(worklist, op->getOperands());
  }
  return {};
}

/// The operands of `layer` that read its input through a linear map, with
/// their names for diagnostics.
SmallVector<std::pair<OpOperand *, StringRef>> inputReaders(LayerOp layer) {
  SmallVector<std::pair<OpOperand *, StringRef>> readers;
  auto add = [&](MutableOperandRange range, StringRef name) {
    for (OpOperand &operand : range)
      readers.push_back({&operand, name});
  };
  add(layer.getRouterWeightMutable(), "router weight");
  add(layer.getGateProjMutable(), "gate_proj");
  add(layer.getUpProjMutable(), "up_proj");
  add(layer.getSharedGateProjMutable(), "shared_gate_proj");
  add(layer.getSharedUpProjMutable(), "shared_up_proj");
  add(layer.getSharedSigmoidGateMutable(), "shared_sigmoid_gate");
  return readers;
}

/// Raises `columnMax[j]` to max |m[r, j]| over the rows of a [R, H] matrix.
void raiseToColumnMax(const RefTensor &m, std::vector<double> &columnMax) {
  int64_t hidden = columnMax.size();
  for (int64_t r = 0, rows = m.numel() / hidden; r < rows; ++r)
    for (int64_t j = 0; j < hidden; ++j)
      columnMax[j] = std::max(columnMax[j], std::abs(m.data[r * hidden + j]));
}

/// max |W_{:,j}| over the first projection (gate and up rows together: one
/// input feeds both) of one expert.
std::vector<double> firstProjectionColumnMax(const reference::ExpertMatrices &m,
                                             int64_t hidden) {
  std::vector<double> columnMax(hidden, 0.0);
  raiseToColumnMax(m.up, columnMax);
  if (m.gate)
    raiseToColumnMax(*m.gate, columnMax);
  return columnMax;
}

struct SmoothExpertsPass
    : mlir::moe::impl::MoESmoothExpertsBase<SmoothExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    Operation *root = getOperation();
    if (!(alpha >= 0.0 && alpha <= 1.0)) {
      root->emitError() << kPassName << ": alpha must be in [0, 1], got "
                        << alpha;
      return signalPassFailure();
    }
    if (failed(compress::transformLayers(
            root, kPassName, weights, calibration, /*needCalibration=*/true,
            [&](LayerOp layer) { return checkLayer(layer); },
            [&](LayerOp layer, compress::PassData &data) {
              return smoothLayer(layer, data);
            })))
      return signalPassFailure();
  }

  LogicalResult checkLayer(LayerOp layer) {
    for (auto [operand, name] : inputReaders(layer))
      if (DequantizeOp dequant = findDequantize(operand->get())) {
        InFlightDiagnostic diag =
            layer.emitOpError()
            << kPassName << ": the " << name << " is already quantized ("
            << dequant->getName() << " " << dequant.getEncoding()
            << "); smoothing must come before quantization (run "
               "moe-smooth-experts before moe-quantize-experts, "
               "moe-quantize-router and moe-mixed-precision, on "
               "unquantized weights)";
        diag.attachNote(dequant.getLoc()) << "quantized here";
        return diag;
      }
    return success();
  }

  /// s_j = max over the layer's components of
  /// max|X_j|^alpha / max|W_{:,j}|^(1 - alpha).
  FailureOr<std::vector<double>>
  measureScales(LayerOp layer, compress::PassData &data, int64_t hidden) {
    FailureOr<RefTensor> states = data.statesFor(layer, hidden);
    if (failed(states))
      return failure();
    reference::WeightMaterializer &materializer = data.getWeights();
    FailureOr<compress::LayerObservation> observed =
        compress::observeLayer(layer, materializer, std::move(*states));
    if (failed(observed))
      return failure();
    double a = alpha;
    std::vector<double> scales(hidden, 0.0); // 0: not measured yet
    auto merge = [&](ArrayRef<double> inputMax, ArrayRef<double> weightMax) {
      for (int64_t j = 0; j < hidden; ++j)
        if (inputMax[j] > 0.0 && weightMax[j] > 0.0)
          scales[j] = std::max(scales[j], std::pow(inputMax[j], a) /
                                              std::pow(weightMax[j], 1.0 - a));
    };
    std::vector<double> allTokensMax(hidden, 0.0);
    raiseToColumnMax(observed->input, allTokensMax);

    FailureOr<RefTensor> router = materializer.get(layer.getRouterWeight());
    if (failed(router))
      return failure();
    std::vector<double> routerMax(hidden, 0.0);
    raiseToColumnMax(*router, routerMax);
    merge(allTokensMax, routerMax);

    reference::FfnValues routed = compress::routedExperts(layer);
    for (int64_t e = 0; e < routed.numExperts; ++e) {
      const auto &assigned = observed->assignments[e];
      if (assigned.empty())
        continue; // no calibration token measures this expert
      std::vector<double> routedMax(hidden, 0.0);
      for (auto [token, slot] : assigned)
        for (int64_t j = 0; j < hidden; ++j)
          routedMax[j] =
              std::max(routedMax[j], std::abs(observed->input.row(token)[j]));
      FailureOr<reference::ExpertMatrices> m = reference::loadExpertMatrices(
          materializer, routed, e, reference::ExpertPart::First);
      if (failed(m))
        return failure();
      merge(routedMax, firstProjectionColumnMax(*m, hidden));
    }
    if (std::optional<reference::FfnValues> shared =
            compress::sharedExpert(layer)) {
      FailureOr<reference::ExpertMatrices> m = reference::loadExpertMatrices(
          materializer, *shared, 0, reference::ExpertPart::First);
      if (failed(m))
        return failure();
      merge(allTokensMax, firstProjectionColumnMax(*m, hidden));
    }
    for (double &s : scales)
      if (s == 0.0)
        s = 1.0;
    return scales;
  }

  LogicalResult smoothLayer(LayerOp layer, compress::PassData &data) {
    auto inputType = cast<RankedTensorType>(layer.getInput().getType());
    int64_t hidden = inputType.getDimSize(1);
    FailureOr<std::vector<double>> measured =
        measureScales(layer, data, hidden);
    if (failed(measured))
      return failure();
    // Both constants are f32 as stored; the fold's only inexactness is the
    // rounding of the scaled weights to their type (and f32 products).
    SmallVector<float> scales, inverse;
    for (double s : *measured) {
      float rounded = static_cast<float>(s);
      if (!std::isfinite(rounded) || !(rounded > 0.0f))
        return layer.emitOpError()
               << kPassName << ": a smoothing scale is not a positive finite "
               << "f32 (" << s << "); the calibration states or weights hold "
               << "extreme values";
      scales.push_back(rounded);
      inverse.push_back(1.0f / rounded);
    }

    OpBuilder b(layer);
    Location loc = layer.getLoc();
    auto scaleType = RankedTensorType::get({hidden}, b.getF32Type());
    Value s = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(scaleType, ArrayRef<float>(scales)));
    Value inv = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(scaleType, ArrayRef<float>(inverse)));
    Value input = layer.getInput();
    layer.getInputMutable().assign(
        ScaleChannelsOp::create(b, loc, inputType, input, inv));
    // One scaled weight per value: a weight read twice is scaled once.
    DenseMap<Value, Value> scaled;
    for (auto [operand, name] : inputReaders(layer)) {
      Value weight = operand->get();
      auto it = scaled.find(weight);
      if (it == scaled.end())
        it = scaled
                 .insert({weight,
                          ScaleColumnsOp::create(b, weight.getLoc(),
                                                 weight.getType(), weight, s)})
                 .first;
      operand->set(it->second);
    }
    recordReport(layer, scales);
    return success();
  }

  /// Adds the layer's largest and smallest scale to its function's report
  /// (over every layer the function holds).
  void recordReport(LayerOp layer, ArrayRef<float> scales) {
    auto function = layer->getParentOfType<func::FuncOp>();
    if (!function)
      return;
    double maxScale = *llvm::max_element(scales);
    double minScale = *llvm::min_element(scales);
    std::string name = compress::reportName(kPassName);
    Builder b(&getContext());
    if (auto previous = function->getAttrOfType<DictionaryAttr>(name)) {
      if (auto v = previous.getAs<FloatAttr>("scale_max"))
        maxScale = std::max(maxScale, v.getValueAsDouble());
      if (auto v = previous.getAs<FloatAttr>("scale_min"))
        minScale = std::min(minScale, v.getValueAsDouble());
    }
    function->setAttr(
        name, b.getDictionaryAttr(
                  {b.getNamedAttr("alpha", b.getF64FloatAttr(double(alpha))),
                   b.getNamedAttr("scale_max", b.getF64FloatAttr(maxScale)),
                   b.getNamedAttr("scale_min", b.getF64FloatAttr(minScale))}));
  }
};

} // namespace
