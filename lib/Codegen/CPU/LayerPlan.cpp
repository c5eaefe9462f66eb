//===- LayerPlan.cpp - what the CPU code generator needs of a layer -------===//

#include "lib/Codegen/CPU/LayerPlan.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::cpu;

static FfnPlan ffnPlan(FfnAttr ffn, Value gate, Value up, Value down,
                       Value gateBias, Value upBias, Value downBias,
                       bool stacked) {
  return FfnPlan::get(ffn, gate, up, down, gateBias, upBias, downBias, stacked);
}

/// The value `value` quantizes when it is an integer quantization recorded by
/// a pass (moe.dequantize #moe.int_group of one moe.quantize); else `value`.
static Value unquantized(Value value) {
  auto dequant = value.getDefiningOp<DequantizeOp>();
  if (!dequant || !isa<IntGroupEncodingAttr>(dequant.getEncoding()))
    return value;
  QuantizeOp quant;
  for (Value stored : dequant.getStorage()) {
    auto storedBy = stored.getDefiningOp<QuantizeOp>();
    if (!storedBy || (quant && storedBy != quant))
      return value;
    quant = storedBy;
  }
  return quant ? quant.getInput() : value;
}

/// The moe.factorize result a latent product's factor or basis `value` holds:
/// the result itself, or its integer quantization (moe-quantize-experts), for
/// factors possibly in runs of experts concatenated in order (super experts
/// kept at 8 bits). Null otherwise. The weight packer reads the levels of a
/// quantized one (WeightMaterializer::getIntGroup), so its kernels compute
/// what the IR's dequantization does.
static Value factorizeResult(Value value) {
  value = unquantized(value);
  if (auto concat = value.getDefiningOp<tensor::ConcatOp>()) {
    if (concat.getDim() != 0)
      return {};
    Value source;
    int64_t next = 0;
    for (Value input : concat.getInputs()) {
      auto slice = unquantized(input).getDefiningOp<tensor::ExtractSliceOp>();
      if (!slice || (source && slice.getSource() != source) ||
          ShapedType::isDynamicShape(slice.getStaticOffsets()) ||
          ShapedType::isDynamicShape(slice.getStaticSizes()) ||
          slice.getStaticOffsets()[0] != next ||
          slice.getStaticStrides()[0] != 1 ||
          slice.getResultType().getShape().drop_front() !=
              slice.getSourceType().getShape().drop_front())
        return {};
      source = slice.getSource();
      next += slice.getStaticSizes()[0];
    }
    if (!source ||
        next != cast<RankedTensorType>(source.getType()).getDimSize(0))
      return {};
    value = source;
  }
  return value.getDefiningOp<FactorizeOp>() ? value : Value();
}

/// The latent form of the experts' first projection, when every gate and up
/// row is an f32 moe.latent_product of moe.factorize results (or of their
/// integer quantizations) with one rank and one number of bases: then x B^T
/// followed by A_e is the IR's function up to f32 rounding (a bf16 product
/// would round each weight, which the latent form cannot). Anything else is
/// computed from the materialized product.
static std::optional<LatentPlan> latentPlan(const FfnPlan &experts) {
  LatentPlan latent;
  // The factorization whose product `value` is, added to `latent` once.
  auto factorization = [&](Value value) -> std::optional<int64_t> {
    auto product = value.getDefiningOp<LatentProductOp>();
    if (!product || !product.getResult().getType().getElementType().isF32())
      return std::nullopt;
    Value source = factorizeResult(product.getFactors());
    auto factorize = source ? source.getDefiningOp<FactorizeOp>() : nullptr;
    if (!factorize || source != factorize.getFactors() ||
        factorizeResult(product.getBasis()) != factorize.getBasis())
      return std::nullopt;
    for (auto [i, factors] : llvm::enumerate(latent.factors))
      if (factors == product.getFactors())
        return int64_t(i);
    RankedTensorType basis = product.getBasis().getType();
    if (latent.factors.empty()) {
      latent.rank = factorize.getRank();
      latent.groups = basis.getDimSize(0);
    } else if (latent.rank != int64_t(factorize.getRank()) ||
               latent.groups != basis.getDimSize(0) ||
               basis.getElementType() !=
                   cast<RankedTensorType>(latent.bases[0].getType())
                       .getElementType() ||
               product.getFactors().getType().getElementType() !=
                   cast<RankedTensorType>(latent.factors[0].getType())
                       .getElementType()) {
      return std::nullopt;
    }
    latent.factors.push_back(product.getFactors());
    latent.bases.push_back(product.getBasis());
    return int64_t(latent.factors.size()) - 1;
  };
  GluLayout glu = experts.ffn.getGlu();
  int64_t width = experts.width;
  if (glu == GluLayout::Separate || glu == GluLayout::None) {
    if (experts.gate) {
      std::optional<int64_t> gate = factorization(experts.gate);
      if (!gate)
        return std::nullopt;
      latent.gate = LatentPlan::Source{*gate, 0};
    }
    std::optional<int64_t> up = factorization(experts.up);
    if (!up)
      return std::nullopt;
    latent.up = {*up, 0};
    return latent;
  }
  if (glu != GluLayout::Halves)
    return std::nullopt;
  // Gate and up fused into up: one factorization of the fused weight (fused
  // before factorizing), or the concatenation of gate's and up's products
  // (factorized, then fused).
  if (std::optional<int64_t> both = factorization(experts.up)) {
    latent.gate = LatentPlan::Source{*both, 0};
    latent.up = {*both, width};
    return latent;
  }
  auto concat = experts.up.getDefiningOp<tensor::ConcatOp>();
  if (!concat || concat.getDim() != 1 || concat.getInputs().size() != 2)
    return std::nullopt;
  std::optional<int64_t> gate = factorization(concat.getInputs()[0]);
  std::optional<int64_t> up = factorization(concat.getInputs()[1]);
  if (!gate || !up)
    return std::nullopt;
  latent.gate = LatentPlan::Source{*gate, 0};
  latent.up = {*up, 0};
  return latent;
}

FailureOr<LayerPlan> cpu::buildLayerPlan(func::FuncOp function) {
  LayerPlan plan;
  plan.function = function;
  if (auto index = function->getAttrOfType<IntegerAttr>("moe.layer_index"))
    plan.layerIndex = index.getInt();
  else if (!function.getName().starts_with("layer_") ||
           function.getName().drop_front(6).getAsInteger(10, plan.layerIndex))
    return function.emitOpError() << "has no moe.layer_index and is not named "
                                     "@layer_<N>; the CPU code generator "
                                     "needs the layer index";

  FunctionType type = function.getFunctionType();
  auto input = type.getNumInputs() == 1
                   ? dyn_cast<RankedTensorType>(type.getInput(0))
                   : RankedTensorType();
  if (!input || input.getRank() != 2 || input.isDynamicDim(1) ||
      type.getNumResults() != 1)
    return function.emitOpError()
           << "must take one [tokens, hidden] tensor with a static "
              "hidden size and return one";
  plan.hidden = input.getDimSize(1);

  RouteOp route;
  DispatchOp dispatch;
  ExpertsOp experts;
  SharedExpertOp shared;
  CombineOp combine;
  ScaleChannelsOp scaleInput;
  for (Operation &op : function.getBody().front()) {
    auto once = [&](auto &slot, auto typed) -> LogicalResult {
      if (slot)
        return op.emitOpError()
               << "appears twice in one layer; the CPU code generator "
                  "handles one routed MoE block per layer function";
      slot = typed;
      return success();
    };
    LogicalResult result = success();
    if (auto r = dyn_cast<RouteOp>(op))
      result = once(route, r);
    else if (auto d = dyn_cast<DispatchOp>(op))
      result = once(dispatch, d);
    else if (auto e = dyn_cast<ExpertsOp>(op))
      result = once(experts, e);
    else if (auto s = dyn_cast<SharedExpertOp>(op))
      result = once(shared, s);
    else if (auto c = dyn_cast<CombineOp>(op))
      result = once(combine, c);
    else if (auto sc = dyn_cast<ScaleChannelsOp>(op))
      result = once(scaleInput, sc);
    else if (isa<LayerOp>(op))
      return op.emitOpError()
             << "must be decomposed (moe-decompose) before CPU code generation";
    else if (!reference::WeightMaterializer::isWeightExpression(&op) &&
             !isa<func::ReturnOp>(op))
      return op.emitOpError() << "is not supported by the CPU code generator";
    if (failed(result))
      return failure();
  }
  if (!route || !dispatch || !experts || !combine)
    return function.emitOpError()
           << "needs moe.route, moe.dispatch, moe.experts and "
              "moe.combine for CPU code generation";

  // The chain must be the one moe-decompose builds: the dispatch permutes the
  // function's input by the router's choice, the experts consume the dispatch,
  // the combine gathers. A moe.scale_channels of the argument may stand
  // between the argument and the layer's readers.
  Value arg = function.getArgument(0);
  if (scaleInput) {
    if (scaleInput.getInput() != arg)
      return scaleInput.emitOpError()
             << "must scale the layer function's argument; the CPU code "
                "generator scales only the layer's input";
    auto constant = scaleInput.getScales().getDefiningOp<arith::ConstantOp>();
    auto values = constant ? dyn_cast<DenseElementsAttr>(constant.getValue())
                           : DenseElementsAttr();
    if (!values)
      return scaleInput.emitOpError()
             << "needs its scales as an inline constant (arith.constant "
                "dense<...>) for code generation, which embeds them";
    for (APFloat value : values.getValues<APFloat>()) {
      bool lost;
      value.convert(APFloat::IEEEsingle(), APFloat::rmNearestTiesToEven, &lost);
      plan.inputScales.push_back(value.convertToFloat());
    }
    arg = scaleInput.getResult();
  }
  if (route.getInput() != arg || dispatch.getInput() != arg ||
      dispatch.getTopkIds() != route.getTopkIds() ||
      dispatch.getTopkWeights() != route.getTopkWeights() ||
      experts.getInput() != dispatch.getPermuted() ||
      experts.getExpertOffsets() != dispatch.getExpertOffsets() ||
      combine.getExpertOutputs() != experts.getResult() ||
      combine.getSourceSlots() != dispatch.getSourceSlots() ||
      combine.getTopkWeights() != route.getTopkWeights() ||
      (experts.getRowScales() &&
       experts.getRowScales() != dispatch.getPermutedWeights()) ||
      (shared && (shared.getInput() != arg ||
                  combine.getAddend() != shared.getResult())) ||
      (!shared && combine.getAddend()))
    return combine.emitOpError()
           << "is not fed by the route -> dispatch -> experts chain of "
              "its layer; the CPU code generator needs that chain";
  auto returnOp =
      cast<func::ReturnOp>(function.getBody().front().getTerminator());
  if (returnOp.getOperand(0) != combine.getResult())
    return returnOp.emitOpError() << "must return the combine's result";
  if (bool(experts.getRowScales()) != combine.getUnweighted())
    return combine.emitOpError()
           << "must be unweighted exactly when the experts scale their "
              "input by the routing weight";

  plan.routing = route.getRouting();
  plan.routerWeight = route.getGateWeight();
  plan.routerBias = route.getBias();
  plan.correctionBias = route.getCorrectionBias();
  plan.numExperts =
      cast<RankedTensorType>(plan.routerWeight.getType()).getDimSize(0);
  plan.topK = plan.routing.getK();
  if (FloatAttr capacity = dispatch.getCapacityFactorAttr())
    plan.capacityFactor = capacity.getValueAsDouble();
  plan.experts =
      ffnPlan(experts.getFfn(), experts.getGateProj(), experts.getUpProj(),
              experts.getDownProj(), experts.getGateBias(), experts.getUpBias(),
              experts.getDownBias(), /*stacked=*/true);
  plan.latent = latentPlan(plan.experts);
  plan.weightsScaleInput = bool(experts.getRowScales());
  if (DenseI64ArrayAttr widths = experts.getExpertWidthsAttr())
    plan.expertWidths.assign(widths.asArrayRef().begin(),
                             widths.asArrayRef().end());
  if (shared) {
    plan.shared =
        ffnPlan(shared.getFfn(), shared.getGateProj(), shared.getUpProj(),
                shared.getDownProj(), {}, {}, {}, /*stacked=*/false);
    plan.sharedSigmoidGate = shared.getSigmoidGate();
  }
  return plan;
}
