//===- QuantizeRouter.cpp - integer router weights, EAQuant clipping ------===//
//
// A router is small but decides which experts run: quantizing it is worth
// doing only if the routing survives. Per layer, the clipping ratio of the
// per-row scale is chosen on calibration states by EAQuant's KL search
// (lib/Compress/RouterClipping.h) and recorded on the moe.quantize.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "lib/Compress/Calibration.h"
#include "lib/Compress/RouterClipping.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <set>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEQUANTIZEROUTER
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;
using reference::RefTensor;

namespace {

constexpr llvm::StringLiteral kPassName = "moe-quantize-router";

compress::QuantMatrix toMatrix(const RefTensor &tensor) {
  return Eigen::Map<const compress::QuantMatrix>(
      tensor.data.data(), tensor.dim(0), tensor.numel() / tensor.dim(0));
}

/// Fraction of tokens `a` and `b` route to the same set of experts.
double sameExperts(const reference::Routing &a, const reference::Routing &b) {
  int64_t tokens = a.ids.dim(0), k = a.ids.dim(1), same = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    std::set<double> left(a.ids.data.begin() + t * k,
                          a.ids.data.begin() + (t + 1) * k),
        right(b.ids.data.begin() + t * k, b.ids.data.begin() + (t + 1) * k);
    same += left == right;
  }
  return tokens ? double(same) / double(tokens) : 1.0;
}

struct QuantizeRouterPass
    : mlir::moe::impl::MoEQuantizeRouterBase<QuantizeRouterPass> {
  using Base::Base;

  void runOnOperation() override {
    Operation *root = getOperation();
    if (bits != 8 && bits != 4) {
      root->emitError() << kPassName << ": bits must be 8 or 4, got "
                        << int64_t(bits);
      return signalPassFailure();
    }
    SmallVector<LayerOp> layers;
    root->walk([&](LayerOp layer) {
      if (!layer.getRouterWeight().getDefiningOp<DequantizeOp>())
        layers.push_back(layer);
    });
    if (layers.empty())
      return;
    FailureOr<std::unique_ptr<compress::PassData>> data =
        compress::PassData::open(root, kPassName, weights, calibration,
                                 /*needCalibration=*/true);
    if (failed(data))
      return signalPassFailure();
    for (LayerOp layer : layers)
      if (failed(quantizeRouter(layer, **data)))
        return signalPassFailure();
  }

  LogicalResult quantizeRouter(LayerOp layer, compress::PassData &data) {
    reference::WeightMaterializer &materializer = data.getWeights();
    Value routerValue = layer.getRouterWeight();
    auto type = cast<RankedTensorType>(routerValue.getType());
    int64_t hidden = type.getDimSize(1);
    if (bits == 4 && hidden % 2 != 0)
      return layer.emitError()
             << kPassName << ": 4-bit router weights pack two values per byte "
             << "and need an even hidden size, got " << hidden;
    FailureOr<RefTensor> states = data.statesFor(layer, hidden);
    FailureOr<RefTensor> router = materializer.get(routerValue);
    if (failed(states) || failed(router))
      return failure();
    std::optional<RefTensor> bias, correction;
    if (Value v = layer.getRouterBias()) {
      FailureOr<RefTensor> t = materializer.get(v);
      if (failed(t))
        return failure();
      bias = std::move(*t);
    }
    if (Value v = layer.getCorrectionBias()) {
      FailureOr<RefTensor> t = materializer.get(v);
      if (failed(t))
        return failure();
      correction = std::move(*t);
    }
    Type element = type.getElementType();
    Type scaleType = Builder(&getContext()).getF32Type();
    compress::RoundScaleFn roundScale = [&](double v) {
      return reference::roundToType(scaleType, v);
    };
    compress::RoundScaleFn roundWeight = [&](double v) {
      return reference::roundToType(element, v);
    };
    compress::QuantMatrix routerMatrix = toMatrix(*router);
    std::vector<double> biasValues = bias ? bias->data : std::vector<double>();
    compress::RouterClipChoice choice = compress::chooseRouterClip(
        routerMatrix, biasValues, toMatrix(*states), layer.getRouting().getK(),
        bits, clipSearch, roundScale, roundWeight);

    // Top-k agreement by the layer's own routing (group limits, correction
    // biases, top-p), which the KL search on plain logits approximates.
    auto routeWith = [&](const compress::QuantMatrix &matrix) {
      RefTensor weight(router->shape);
      std::copy_n(matrix.data(), weight.numel(), weight.data.data());
      return reference::route(layer.getRouting(), *states, weight,
                              bias ? &*bias : nullptr,
                              correction ? &*correction : nullptr);
    };
    reference::Routing full = routeWith(routerMatrix);
    double agreementUnclipped = sameExperts(
        full, routeWith(compress::quantizeRouter(routerMatrix, bits, 1.0,
                                                 roundScale, roundWeight)));
    double agreementChosen = sameExperts(
        full, routeWith(compress::quantizeRouter(
                  routerMatrix, bits, choice.clip, roundScale, roundWeight)));

    OpBuilder b(layer);
    auto encoding = IntGroupEncodingAttr::get(&getContext(), bits, hidden,
                                              /*symmetric=*/true);
    int64_t experts = type.getDimSize(0);
    SmallVector<Type> storage{
        RankedTensorType::get({experts, bits == 4 ? hidden / 2 : hidden},
                              b.getIntegerType(8)),
        RankedTensorType::get({experts, 1}, scaleType)};
    // r = 1 is plain per-row quantization: no clip attribute.
    FloatAttr clip =
        choice.clip < 1.0 ? b.getF64FloatAttr(choice.clip) : FloatAttr();
    Location loc = routerValue.getLoc();
    auto quant = QuantizeOp::create(b, loc, storage, routerValue, encoding,
                                    Value(), clip);
    Value dequantized = DequantizeOp::create(
        b, loc, DequantizeOp::getResultTypeFor(type, encoding),
        quant.getStorage(), encoding);
    layer.getRouterWeightMutable().assign(dequantized);
    recordReport(layer, choice, agreementUnclipped, agreementChosen);
    return success();
  }

  /// The layer's choice in its function's report (the last layer's when a
  /// function holds several, with the worst agreement over all of them).
  void recordReport(LayerOp layer, const compress::RouterClipChoice &choice,
                    double agreementUnclipped, double agreementChosen) {
    auto function = layer->getParentOfType<func::FuncOp>();
    if (!function)
      return;
    std::string name = compress::reportName(kPassName);
    if (auto previous = function->getAttrOfType<DictionaryAttr>(name)) {
      if (auto v = previous.getAs<FloatAttr>("topk_agreement"))
        agreementChosen = std::min(agreementChosen, v.getValueAsDouble());
      if (auto v = previous.getAs<FloatAttr>("topk_agreement_unclipped"))
        agreementUnclipped = std::min(agreementUnclipped, v.getValueAsDouble());
    }
    Builder b(&getContext());
    function->setAttr(
        name, b.getDictionaryAttr(
                  {b.getNamedAttr("bits", b.getI64IntegerAttr(bits)),
                   b.getNamedAttr("clip", b.getF64FloatAttr(choice.clip)),
                   b.getNamedAttr("kl", b.getF64FloatAttr(choice.klChosen)),
                   b.getNamedAttr("kl_unclipped",
                                  b.getF64FloatAttr(choice.klUnclipped)),
                   b.getNamedAttr("topk_agreement",
                                  b.getF64FloatAttr(agreementChosen)),
                   b.getNamedAttr("topk_agreement_unclipped",
                                  b.getF64FloatAttr(agreementUnclipped))}));
  }
};

} // namespace
