//===- HFImporter.cpp - Hugging Face checkpoint -> moe dialect ------------===//
//
// The families' on-disk layouts and MoE-block math
// (../shared/reference/hf-moe-formats.md, checked against transformers'
// modeling code) become one moe.layer per MoE decoder layer. Every tensor the
// layer names is looked up in the checkpoint and its dtype and shape checked
// against what config.json implies, so a module that imports is a module whose
// weights exist.
//
//===----------------------------------------------------------------------===//

#include "lib/Import/HFImporter.h"

#include "dialects/moe/MoEOps.h"
#include "lib/Import/HFConfig.h"
#include "lib/Support/DType.h"
#include "lib/Weights/Safetensors.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Tools/mlir-translate/Translation.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"

using namespace mlir;
using namespace mlir::moe;
using ::moe::Checkpoint;
using ::moe::HFConfig;

namespace {

std::string shapeString(ArrayRef<int64_t> shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

/// Emits the weights and the moe.layer of one decoder layer, reporting problems
/// at `loc`.
class LayerEmitter {
public:
  LayerEmitter(OpBuilder &builder, Location loc, const Checkpoint &checkpoint,
               Type activationType,
               std::optional<std::array<int64_t, 2>> fp8Blocks)
      : builder(builder), loc(loc), checkpoint(checkpoint),
        activationType(activationType), fp8Blocks(fp8Blocks) {}

  /// A tensor of logical shape `shape`. With `experts` > 0, `name` holds "{e}"
  /// and the tensors of the experts are stacked; with `permutation`, the stored
  /// tensor is that permutation of the logical one (logical dim i = stored dim
  /// permutation[i]). `meaning` says where the expected shape comes from, for
  /// the error message.
  FailureOr<Value> weight(StringRef name, ArrayRef<int64_t> shape,
                          StringRef meaning, int64_t experts = 0,
                          ArrayRef<int64_t> permutation = {}) {
    SmallVector<int64_t> stored(shape.size());
    for (size_t i = 0; i < shape.size(); ++i)
      stored[permutation.empty() ? i : permutation[i]] = shape[i];
    if (experts)
      stored.erase(stored.begin());
    FailureOr<moe_dtype> dtype = checkTensors(name, stored, meaning, experts);
    if (failed(dtype))
      return failure();
    auto type = RankedTensorType::get(
        shape, getElementType(builder.getContext(), *dtype));
    auto op = WeightOp::create(
        builder, loc, type, builder.getStringAttr(name), StringAttr(),
        experts ? builder.getI64IntegerAttr(experts) : IntegerAttr(),
        permutation.empty() ? DenseI64ArrayAttr()
                            : builder.getDenseI64ArrayAttr(permutation));
    return op.getResult();
  }

  /// A linear weight [.., out, in] that is either floating point or, in an FP8
  /// checkpoint, F8_E4M3 with a block scale tensor `<name>_scale_inv`: then it
  /// is dequantized to the activation type where used, keeping the checkpoint's
  /// own scales.
  FailureOr<Value> linear(StringRef name, ArrayRef<int64_t> shape,
                          StringRef meaning, int64_t experts = 0) {
    FailureOr<Value> value = weight(name, shape, meaning, experts);
    if (failed(value))
      return failure();
    auto type = cast<RankedTensorType>(value->getType());
    if (!isa<Float8E4M3FNType, Float8E5M2Type>(type.getElementType()))
      return value;
    if (!fp8Blocks)
      return emitError(loc)
                 << "tensor '" << name
                 << "' is FP8 but config.json has no quantization_config with "
                    "weight_block_size",
             failure();
    auto [rows, cols] = *fp8Blocks;
    int64_t rank = static_cast<int64_t>(shape.size());
    SmallVector<int64_t> scaleShape(shape);
    scaleShape[rank - 2] = llvm::divideCeil(shape[rank - 2], rows);
    scaleShape[rank - 1] = llvm::divideCeil(shape[rank - 1], cols);
    std::string scaleName = (name + "_scale_inv").str();
    FailureOr<Value> scales = weight(
        scaleName, scaleShape,
        llvm::formatv("one scale per {0}x{1} block of '{2}'", rows, cols, name)
            .str(),
        experts);
    if (failed(scales))
      return failure();
    auto resultType = RankedTensorType::get(shape, activationType);
    return DequantizeOp::create(
               builder, loc, resultType, ValueRange{*value, *scales},
               Fp8BlockEncodingAttr::get(builder.getContext(), rows, cols))
        .getResult();
  }

  /// An MXFP4 weight [E, N, K] stored as `<prefix>_blocks` U8 [E, N, K/32, 16]
  /// and
  /// `<prefix>_scales` U8 [E, N, K/32] (GPT-OSS).
  FailureOr<Value> mxfp4(StringRef prefix, ArrayRef<int64_t> shape,
                         StringRef meaning) {
    if (shape.back() % 32 != 0)
      return emitError(loc)
                 << "MXFP4 tensor '" << prefix << "' needs an input dimension "
                 << "divisible by 32, config.json gives " << shape.back(),
             failure();
    SmallVector<int64_t> scaleShape(shape);
    scaleShape.back() /= 32;
    SmallVector<int64_t> blockShape(scaleShape);
    blockShape.push_back(16);
    FailureOr<Value> blocks =
        weight((prefix + "_blocks").str(), blockShape, meaning);
    FailureOr<Value> scales =
        failed(blocks)
            ? FailureOr<Value>(failure())
            : weight((prefix + "_scales").str(), scaleShape, meaning);
    if (failed(scales))
      return failure();
    for (Value stored : {*blocks, *scales})
      if (!cast<RankedTensorType>(stored.getType())
               .getElementType()
               .isInteger(8))
        return emitError(loc)
                   << "MXFP4 tensors of '" << prefix << "' must be U8",
               failure();
    return DequantizeOp::create(builder, loc,
                                RankedTensorType::get(shape, activationType),
                                ValueRange{*blocks, *scales},
                                Mxfp4EncodingAttr::get(builder.getContext()))
        .getResult();
  }

  /// Whether the checkpoint has a tensor called `name`.
  bool has(StringRef name) const { return checkpoint.find(name).has_value(); }

  OpBuilder &builder;
  Location loc;

private:
  /// Checks that every tensor exists with shape `stored` and one dtype; returns
  /// it.
  FailureOr<moe_dtype> checkTensors(StringRef name, ArrayRef<int64_t> stored,
                                    StringRef meaning, int64_t experts) {
    std::optional<moe_dtype> dtype;
    for (int64_t e = 0; e < std::max<int64_t>(experts, 1); ++e) {
      std::string tensorName = name.str();
      if (experts)
        tensorName.replace(tensorName.find("{e}"), 3, std::to_string(e));
      std::optional<Checkpoint::Entry> entry = checkpoint.find(tensorName);
      if (!entry)
        return emitError(loc) << "checkpoint " << checkpoint.getDirectory()
                              << " has no tensor '" << tensorName << "'",
               failure();
      const ::moe::TensorInfo &info = *entry->tensor;
      if (ArrayRef<int64_t>(info.shape) != stored)
        return emitError(loc)
                   << "tensor '" << tensorName << "' has shape "
                   << shapeString(info.shape) << " but config.json implies "
                   << shapeString(stored) << " (" << meaning << ")",
               failure();
      if (dtype && *dtype != info.dtype)
        return emitError(loc) << "tensor '" << tensorName << "' is "
                              << ::moe::getSafetensorsName(info.dtype)
                              << " unlike the other experts' "
                              << ::moe::getSafetensorsName(*dtype),
               failure();
      dtype = info.dtype;
    }
    return *dtype;
  }

  const Checkpoint &checkpoint;
  Type activationType;
  std::optional<std::array<int64_t, 2>> fp8Blocks;
};

/// What every family's layer needs from config.json.
struct LayerShape {
  int64_t hidden, experts, width, k;
};

/// Turns an llvm::Error into a diagnostic at `loc`.
LogicalResult report(Location loc, llvm::Error error) {
  emitError(loc) << llvm::toString(std::move(error));
  return failure();
}

#define MOE_TRY_ASSIGN(var, expr)                                              \
  auto var##OrError = (expr);                                                  \
  if (!var##OrError)                                                           \
    return report(loc, var##OrError.takeError());                              \
  auto var = std::move(*var##OrError)

FailureOr<Activation> parseActivation(Location loc, const HFConfig &config) {
  auto name = config.getString("hidden_act", "silu");
  if (!name)
    return report(loc, name.takeError());
  static const std::pair<StringRef, Activation> known[] = {
      {"silu", Activation::Silu},
      {"swish", Activation::Silu},
      {"gelu", Activation::Gelu},
      {"gelu_pytorch_tanh", Activation::GeluTanh},
      {"gelu_new", Activation::GeluTanh},
      {"relu", Activation::Relu}};
  for (auto [key, activation] : known)
    if (*name == key)
      return activation;
  return emitError(loc) << "unsupported hidden_act '" << *name << "'",
         failure();
}

} // namespace

//===----------------------------------------------------------------------===//
// Families
//===----------------------------------------------------------------------===//

namespace {

/// The operands and configuration of one moe.layer, filled in by a family.
struct LayerParts {
  Value routerWeight, routerBias, correctionBias;
  Value gate, up, down, gateBias, upBias, downBias;
  Value sharedGate, sharedUp, sharedDown, sharedSigmoidGate;
  RoutingAttr routing;
  FfnAttr ffn, sharedFfn;
  bool weightsScaleInput = false;
};

struct FamilyContext {
  LayerEmitter &emit;
  const HFConfig &config;
  int64_t layer;
  Location loc;

  MLIRContext *context() { return emit.builder.getContext(); }
  FloatAttr f64(double value) { return emit.builder.getF64FloatAttr(value); }
};

using LayersFn = llvm::Expected<std::vector<int64_t>> (*)(const HFConfig &);
using PartsFn = LogicalResult (*)(FamilyContext &, LayerParts &);

struct Family {
  StringRef modelType;
  LayersFn moeLayers;
  PartsFn parts;
};

/// The expert count, under `key` or, for configs written by newer transformers
/// versions (which rename Qwen's num_experts), under num_local_experts.
llvm::Expected<int64_t> expertCount(const HFConfig &config, StringRef key) {
  if (!config.has(key) && config.has("num_local_experts"))
    return config.getInt("num_local_experts");
  return config.getInt(key);
}

llvm::Expected<std::vector<int64_t>> allLayers(const HFConfig &config) {
  auto count = config.getInt("num_hidden_layers");
  if (!count)
    return count.takeError();
  std::vector<int64_t> layers;
  for (int64_t l = 0; l < *count; ++l)
    layers.push_back(l);
  return layers;
}

/// Qwen2/3-MoE: MoE iff not in mlp_only_layers, num_experts > 0, and (L + 1) is
/// a multiple of decoder_sparse_step.
llvm::Expected<std::vector<int64_t>> qwenLayers(const HFConfig &config) {
  auto all = allLayers(config);
  auto experts = expertCount(config, "num_experts");
  auto step = config.getInt("decoder_sparse_step", 1);
  auto mlpOnly = config.getIntList("mlp_only_layers");
  if (!all || !experts || !step || !mlpOnly)
    return llvm::joinErrors(
        all.takeError(),
        llvm::joinErrors(
            experts.takeError(),
            llvm::joinErrors(step.takeError(), mlpOnly.takeError())));
  if (*step < 1)
    return config.error("'decoder_sparse_step' must be >= 1");
  std::vector<int64_t> layers;
  for (int64_t l : *all)
    if (*experts > 0 && (l + 1) % *step == 0 &&
        !llvm::is_contained(*mlpOnly, l))
      layers.push_back(l);
  return layers;
}

/// DeepSeek: MoE iff L >= first_k_dense_replace and L % moe_layer_freq == 0.
llvm::Expected<std::vector<int64_t>> deepseekLayers(const HFConfig &config) {
  auto all = allLayers(config);
  auto experts = config.getInt("n_routed_experts", 0);
  auto firstDense = config.getInt("first_k_dense_replace", 0);
  auto frequency = config.getInt("moe_layer_freq", 1);
  if (!all || !experts || !firstDense || !frequency)
    return llvm::joinErrors(
        all.takeError(),
        llvm::joinErrors(
            experts.takeError(),
            llvm::joinErrors(firstDense.takeError(), frequency.takeError())));
  if (*frequency < 1)
    return config.error("'moe_layer_freq' must be >= 1");
  std::vector<int64_t> layers;
  for (int64_t l : *all)
    if (*experts > 0 && l >= *firstDense && l % *frequency == 0)
      layers.push_back(l);
  return layers;
}

/// Llama-4: the explicit moe_layers list when present, else every
/// interleave_moe_layer_step-th layer starting at step - 1.
llvm::Expected<std::vector<int64_t>> llama4Layers(const HFConfig &config) {
  auto count = config.getInt("num_hidden_layers");
  if (!count)
    return count.takeError();
  if (config.has("moe_layers")) {
    auto listed = config.getIntList("moe_layers");
    if (!listed)
      return listed.takeError();
    for (int64_t l : *listed)
      if (l < 0 || l >= *count)
        return config.error("'moe_layers' names layer " + std::to_string(l) +
                            " of a model with " + std::to_string(*count) +
                            " layers");
    return listed;
  }
  auto step = config.getInt("interleave_moe_layer_step", 1);
  if (!step)
    return step.takeError();
  if (*step < 1)
    return config.error("'interleave_moe_layer_step' must be >= 1");
  std::vector<int64_t> layers;
  for (int64_t l = *step - 1; l < *count; l += *step)
    layers.push_back(l);
  return layers;
}

/// Reads hidden size, expert count, expert width and k from the family's keys.
FailureOr<LayerShape> readShape(FamilyContext &ctx, StringRef expertsKey,
                                StringRef widthKey) {
  Location loc = ctx.loc;
  MOE_TRY_ASSIGN(hidden, ctx.config.getInt("hidden_size"));
  MOE_TRY_ASSIGN(experts, expertCount(ctx.config, expertsKey));
  MOE_TRY_ASSIGN(width, ctx.config.getInt(widthKey));
  MOE_TRY_ASSIGN(k, ctx.config.getInt("num_experts_per_tok"));
  for (auto [value, key] :
       {std::pair{hidden, StringRef("hidden_size")},
        std::pair{experts, expertsKey}, std::pair{width, widthKey},
        std::pair{k, StringRef("num_experts_per_tok")}})
    if (value < 1)
      return emitError(loc) << "'" << key << "' must be >= 1, got " << value,
             failure();
  if (k > experts)
    return emitError(loc) << "num_experts_per_tok = " << k << " exceeds "
                          << expertsKey << " = " << experts,
           failure();
  return LayerShape{hidden, experts, width, k};
}

std::string describe(StringRef expertsKey, int64_t experts, StringRef widthKey,
                     int64_t width, int64_t hidden) {
  return llvm::formatv("{0} = {1}, {2} = {3}, hidden_size = {4}", expertsKey,
                       experts, widthKey, width, hidden)
      .str();
}

std::string layerPrefix(int64_t layer) {
  return "model.layers." + std::to_string(layer) + ".";
}

/// Experts stored one tensor per projection per expert:
/// `<prefix>experts.{e}.<name>`.
LogicalResult perExpertWeights(FamilyContext &ctx, LayerParts &parts,
                               StringRef prefix, const LayerShape &s,
                               StringRef widthKey, StringRef expertsKey,
                               StringRef gateName, StringRef upName,
                               StringRef downName) {
  std::string meaning =
      describe(expertsKey, s.experts, widthKey, s.width, s.hidden);
  auto name = [&](StringRef projection) {
    return (prefix + "experts.{e}." + projection).str();
  };
  FailureOr<Value> gate = ctx.emit.linear(
      name(gateName), {s.experts, s.width, s.hidden}, meaning, s.experts);
  if (failed(gate))
    return failure();
  FailureOr<Value> up = ctx.emit.linear(
      name(upName), {s.experts, s.width, s.hidden}, meaning, s.experts);
  if (failed(up))
    return failure();
  FailureOr<Value> down = ctx.emit.linear(
      name(downName), {s.experts, s.hidden, s.width}, meaning, s.experts);
  if (failed(down))
    return failure();
  parts.gate = *gate;
  parts.up = *up;
  parts.down = *down;
  return success();
}

/// A shared expert `<prefix>{gate,up,down}_proj.weight` of width `width`.
LogicalResult sharedWeights(FamilyContext &ctx, LayerParts &parts,
                            StringRef prefix, int64_t width, int64_t hidden,
                            StringRef meaning) {
  FailureOr<Value> gate = ctx.emit.linear((prefix + "gate_proj.weight").str(),
                                          {width, hidden}, meaning);
  if (failed(gate))
    return failure();
  FailureOr<Value> up = ctx.emit.linear((prefix + "up_proj.weight").str(),
                                        {width, hidden}, meaning);
  if (failed(up))
    return failure();
  FailureOr<Value> down = ctx.emit.linear((prefix + "down_proj.weight").str(),
                                          {hidden, width}, meaning);
  if (failed(down))
    return failure();
  parts.sharedGate = *gate;
  parts.sharedUp = *up;
  parts.sharedDown = *down;
  return success();
}

LogicalResult routerWeight(FamilyContext &ctx, LayerParts &parts,
                           StringRef name, const LayerShape &s,
                           StringRef expertsKey) {
  FailureOr<Value> router =
      ctx.emit.weight(name, {s.experts, s.hidden},
                      llvm::formatv("{0} = {1}, hidden_size = {2}", expertsKey,
                                    s.experts, s.hidden)
                          .str());
  if (failed(router))
    return failure();
  parts.routerWeight = *router;
  return success();
}

RoutingAttr makeRouting(FamilyContext &ctx, ScoringFunc scoring, int64_t k,
                        bool normalize = false, Type logitsType = {}) {
  return RoutingAttr::get(
      ctx.context(), scoring, k, ExpertSelection::TopK, normalize, FloatAttr(),
      FloatAttr(), 0, 0, GroupScore::Max, FloatAttr(), FloatAttr(), logitsType);
}

FailureOr<FfnAttr> gatedFfn(FamilyContext &ctx, GluLayout glu) {
  FailureOr<Activation> activation = parseActivation(ctx.loc, ctx.config);
  if (failed(activation))
    return failure();
  return FfnAttr::get(ctx.context(), *activation, glu, FloatAttr(),
                      FloatAttr());
}

// Mixtral and PhiMoE: block_sparse_moe with per-expert w1 (gate), w3 (up), w2
// (down).
LogicalResult mixtralLikeParts(FamilyContext &ctx, LayerParts &parts,
                               bool phimoe) {
  Location loc = ctx.loc;
  FailureOr<LayerShape> s =
      readShape(ctx, "num_local_experts", "intermediate_size");
  if (failed(s))
    return failure();
  std::string prefix = layerPrefix(ctx.layer) + "block_sparse_moe.";
  if (failed(routerWeight(ctx, parts, prefix + "gate.weight", *s,
                          "num_local_experts")) ||
      failed(perExpertWeights(ctx, parts, prefix, *s, "intermediate_size",
                              "num_local_experts", "w1.weight", "w3.weight",
                              "w2.weight")))
    return failure();
  FailureOr<FfnAttr> ffn = gatedFfn(ctx, GluLayout::Separate);
  if (failed(ffn))
    return failure();
  parts.ffn = *ffn;
  if (!phimoe) {
    // Softmax in f32 over the (activation-precision) logits, top-k, always
    // renormalized.
    parts.routing =
        makeRouting(ctx, ScoringFunc::Softmax, s->k, /*normalize=*/true);
    return success();
  }
  // PhiMoE uses router_jitter_noise at inference as the sparsemixer's
  // threshold.
  MOE_TRY_ASSIGN(epsilon, ctx.config.getDouble("router_jitter_noise"));
  if (s->k != 2)
    return emitError(loc) << "PhiMoE's sparsemixer routes exactly 2 experts, "
                             "num_experts_per_tok is "
                          << s->k,
           failure();
  parts.routing = RoutingAttr::get(ctx.context(), ScoringFunc::Sparsemixer, 2,
                                   ExpertSelection::TopK, false, FloatAttr(),
                                   FloatAttr(), 0, 0, GroupScore::Max,
                                   FloatAttr(), ctx.f64(epsilon), Type());
  return success();
}

LogicalResult mixtralParts(FamilyContext &ctx, LayerParts &parts) {
  return mixtralLikeParts(ctx, parts, /*phimoe=*/false);
}
LogicalResult phimoeParts(FamilyContext &ctx, LayerParts &parts) {
  return mixtralLikeParts(ctx, parts, /*phimoe=*/true);
}

// Qwen2-MoE, Qwen3-MoE, OLMoE: mlp.gate and per-expert {gate,up,down}_proj.
LogicalResult qwenLikeParts(FamilyContext &ctx, LayerParts &parts,
                            StringRef widthKey, bool sharedExpert) {
  Location loc = ctx.loc;
  FailureOr<LayerShape> s = readShape(ctx, "num_experts", widthKey);
  if (failed(s))
    return failure();
  std::string prefix = layerPrefix(ctx.layer) + "mlp.";
  if (failed(routerWeight(ctx, parts, prefix + "gate.weight", *s,
                          "num_experts")) ||
      failed(perExpertWeights(ctx, parts, prefix, *s, widthKey, "num_experts",
                              "gate_proj.weight", "up_proj.weight",
                              "down_proj.weight")))
    return failure();
  FailureOr<FfnAttr> ffn = gatedFfn(ctx, GluLayout::Separate);
  if (failed(ffn))
    return failure();
  parts.ffn = *ffn;
  MOE_TRY_ASSIGN(normalize, ctx.config.getBool("norm_topk_prob", false));
  parts.routing = makeRouting(ctx, ScoringFunc::Softmax, s->k, normalize);
  if (!sharedExpert)
    return success();

  // Qwen2-MoE: one shared expert whose output a per-token sigmoid gate scales.
  MOE_TRY_ASSIGN(sharedWidth,
                 ctx.config.getInt("shared_expert_intermediate_size"));
  if (sharedWidth < 1)
    return success();
  std::string meaning =
      llvm::formatv("shared_expert_intermediate_size = {0}, hidden_size = {1}",
                    sharedWidth, s->hidden)
          .str();
  if (failed(sharedWeights(ctx, parts, prefix + "shared_expert.", sharedWidth,
                           s->hidden, meaning)))
    return failure();
  FailureOr<Value> gate =
      ctx.emit.weight(prefix + "shared_expert_gate.weight", {1, s->hidden},
                      "one gate logit per token");
  if (failed(gate))
    return failure();
  parts.sharedSigmoidGate = *gate;
  parts.sharedFfn = *ffn;
  return success();
}

LogicalResult qwen2Parts(FamilyContext &ctx, LayerParts &parts) {
  return qwenLikeParts(ctx, parts, "moe_intermediate_size",
                       /*sharedExpert=*/true);
}
LogicalResult qwen3Parts(FamilyContext &ctx, LayerParts &parts) {
  return qwenLikeParts(ctx, parts, "moe_intermediate_size",
                       /*sharedExpert=*/false);
}
LogicalResult olmoeParts(FamilyContext &ctx, LayerParts &parts) {
  return qwenLikeParts(ctx, parts, "intermediate_size", /*sharedExpert=*/false);
}

// DeepSeek-V2 and V3: mlp.gate (+ V3's e_score_correction_bias), per-expert
// projections (FP8 with block scales in V3 checkpoints), n_shared_experts
// merged into one wider expert.
LogicalResult deepseekParts(FamilyContext &ctx, LayerParts &parts, bool v3) {
  Location loc = ctx.loc;
  FailureOr<LayerShape> s =
      readShape(ctx, "n_routed_experts", "moe_intermediate_size");
  if (failed(s))
    return failure();
  std::string prefix = layerPrefix(ctx.layer) + "mlp.";
  if (failed(routerWeight(ctx, parts, prefix + "gate.weight", *s,
                          "n_routed_experts")) ||
      failed(perExpertWeights(ctx, parts, prefix, *s, "moe_intermediate_size",
                              "n_routed_experts", "gate_proj.weight",
                              "up_proj.weight", "down_proj.weight")))
    return failure();
  FailureOr<FfnAttr> ffn = gatedFfn(ctx, GluLayout::Separate);
  if (failed(ffn))
    return failure();
  parts.ffn = *ffn;

  MOE_TRY_ASSIGN(shared, ctx.config.getInt("n_shared_experts", 0));
  if (shared > 0) {
    int64_t width = s->width * shared;
    std::string meaning =
        llvm::formatv(
            "moe_intermediate_size * n_shared_experts = {0}, hidden_size = {1}",
            width, s->hidden)
            .str();
    if (failed(sharedWeights(ctx, parts, prefix + "shared_experts.", width,
                             s->hidden, meaning)))
      return failure();
    parts.sharedFfn = *ffn;
  }

  MOE_TRY_ASSIGN(scoring, ctx.config.getString("scoring_func",
                                               v3 ? "sigmoid" : "softmax"));
  MOE_TRY_ASSIGN(
      method, ctx.config.getString("topk_method", v3 ? "noaux_tc" : "greedy"));
  MOE_TRY_ASSIGN(scaling, ctx.config.getDouble("routed_scaling_factor", 1.0));
  MOE_TRY_ASSIGN(normalize, ctx.config.getBool("norm_topk_prob", false));
  if (scoring != "softmax" && scoring != "sigmoid")
    return emitError(loc) << "unsupported scoring_func '" << scoring
                          << "' (softmax or sigmoid)",
           failure();
  ScoringFunc scoringFunc =
      scoring == "softmax" ? ScoringFunc::Softmax : ScoringFunc::Sigmoid;

  ExpertSelection selection = ExpertSelection::TopK;
  GroupScore groupScore = GroupScore::Max;
  int64_t groups = 0, keptGroups = 0;
  if (method == "group_limited_greedy" || method == "noaux_tc") {
    selection = ExpertSelection::GroupLimited;
    groupScore = method == "noaux_tc" ? GroupScore::Top2Sum : GroupScore::Max;
    MOE_TRY_ASSIGN(nGroup, ctx.config.getInt("n_group"));
    MOE_TRY_ASSIGN(topkGroup, ctx.config.getInt("topk_group"));
    if (nGroup < 1 || topkGroup < 1)
      return emitError(loc) << "n_group and topk_group must be >= 1", failure();
    groups = nGroup;
    keptGroups = topkGroup;
  } else if (method != "greedy") {
    return emitError(loc) << "unsupported topk_method '" << method
                          << "' (greedy, group_limited_greedy, noaux_tc)",
           failure();
  }

  if (v3) {
    FailureOr<Value> bias =
        ctx.emit.weight(prefix + "gate.e_score_correction_bias", {s->experts},
                        "n_routed_experts");
    if (failed(bias))
      return failure();
    parts.correctionBias = *bias;
  }
  // V3 renormalizes with a 1e-20 guard; V2 ignores norm_topk_prob at inference.
  bool renormalize = v3 && normalize;
  parts.routing = RoutingAttr::get(
      ctx.context(), scoringFunc, s->k, selection, renormalize,
      renormalize ? ctx.f64(1e-20) : FloatAttr(),
      scaling != 1.0 ? ctx.f64(scaling) : FloatAttr(), groups, keptGroups,
      groupScore, FloatAttr(), FloatAttr(), Float32Type::get(ctx.context()));
  return success();
}

LogicalResult deepseekV2Parts(FamilyContext &ctx, LayerParts &parts) {
  return deepseekParts(ctx, parts, /*v3=*/false);
}
LogicalResult deepseekV3Parts(FamilyContext &ctx, LayerParts &parts) {
  return deepseekParts(ctx, parts, /*v3=*/true);
}

// GPT-OSS: router with bias, softmax over the top-k logits; fused experts with
// biases, MXFP4 (gate_up_proj_blocks/_scales) or plain [E, in, out] tensors;
// clamped SwiGLU on interleaved gate/up rows.
LogicalResult gptOssParts(FamilyContext &ctx, LayerParts &parts) {
  Location loc = ctx.loc;
  FailureOr<LayerShape> s =
      readShape(ctx, "num_local_experts", "intermediate_size");
  if (failed(s))
    return failure();
  std::string prefix = layerPrefix(ctx.layer) + "mlp.";
  std::string meaning = describe("num_local_experts", s->experts,
                                 "intermediate_size", s->width, s->hidden);
  if (failed(routerWeight(ctx, parts, prefix + "router.weight", *s,
                          "num_local_experts")))
    return failure();
  FailureOr<Value> routerBias = ctx.emit.weight(
      prefix + "router.bias", {s->experts}, "num_local_experts");
  if (failed(routerBias))
    return failure();
  parts.routerBias = *routerBias;

  std::string experts = prefix + "experts.";
  FailureOr<Value> gateUp, down;
  if (ctx.emit.has(experts + "gate_up_proj_blocks")) {
    gateUp = ctx.emit.mxfp4(experts + "gate_up_proj",
                            {s->experts, 2 * s->width, s->hidden}, meaning);
    if (succeeded(gateUp))
      down = ctx.emit.mxfp4(experts + "down_proj",
                            {s->experts, s->hidden, s->width}, meaning);
  } else {
    // Unquantized checkpoints store x @ W layouts: [E, H, 2I] and [E, I, H].
    gateUp = ctx.emit.weight(experts + "gate_up_proj",
                             {s->experts, 2 * s->width, s->hidden}, meaning, 0,
                             {0, 2, 1});
    if (succeeded(gateUp))
      down = ctx.emit.weight(experts + "down_proj",
                             {s->experts, s->hidden, s->width}, meaning, 0,
                             {0, 2, 1});
  }
  if (failed(gateUp) || failed(down))
    return failure();
  FailureOr<Value> upBias = ctx.emit.weight(
      experts + "gate_up_proj_bias", {s->experts, 2 * s->width}, meaning);
  if (failed(upBias))
    return failure();
  FailureOr<Value> downBias = ctx.emit.weight(experts + "down_proj_bias",
                                              {s->experts, s->hidden}, meaning);
  if (failed(downBias))
    return failure();
  parts.up = *gateUp;
  parts.down = *down;
  parts.upBias = *upBias;
  parts.downBias = *downBias;

  MOE_TRY_ASSIGN(limit, ctx.config.getDouble("swiglu_limit", 7.0));
  parts.ffn =
      FfnAttr::get(ctx.context(), Activation::ClampedSwiglu,
                   GluLayout::Interleaved, ctx.f64(1.702), ctx.f64(limit));
  parts.routing = makeRouting(ctx, ScoringFunc::SoftmaxAfterTopk, s->k);
  return success();
}

// Granite-MoE: router.layer; fused input_linear [E, 2I, H] (gate rows first)
// and output_linear [E, H, I]; top-k on f32 logits, softmax over the chosen
// ones.
LogicalResult graniteParts(FamilyContext &ctx, LayerParts &parts) {
  FailureOr<LayerShape> s =
      readShape(ctx, "num_local_experts", "intermediate_size");
  if (failed(s))
    return failure();
  std::string prefix = layerPrefix(ctx.layer) + "block_sparse_moe.";
  std::string meaning = describe("num_local_experts", s->experts,
                                 "intermediate_size", s->width, s->hidden);
  if (failed(routerWeight(ctx, parts, prefix + "router.layer.weight", *s,
                          "num_local_experts")))
    return failure();
  FailureOr<Value> input =
      ctx.emit.weight(prefix + "input_linear.weight",
                      {s->experts, 2 * s->width, s->hidden}, meaning);
  if (failed(input))
    return failure();
  FailureOr<Value> output =
      ctx.emit.weight(prefix + "output_linear.weight",
                      {s->experts, s->hidden, s->width}, meaning);
  if (failed(output))
    return failure();
  parts.up = *input;
  parts.down = *output;
  FailureOr<FfnAttr> ffn = gatedFfn(ctx, GluLayout::Halves);
  if (failed(ffn))
    return failure();
  parts.ffn = *ffn;
  parts.routing = makeRouting(ctx, ScoringFunc::SoftmaxAfterTopk, s->k, false,
                              Float32Type::get(ctx.context()));
  return success();
}

// Llama-4 text MoE: feed_forward.router; fused experts stored [E, H, 2I] and
// [E, I, H] (x @ W); top-k of the logits whose sigmoid scales the expert INPUT;
// a shared expert of width intermediate_size.
LogicalResult llama4Parts(FamilyContext &ctx, LayerParts &parts) {
  FailureOr<LayerShape> s =
      readShape(ctx, "num_local_experts", "intermediate_size");
  if (failed(s))
    return failure();
  // Multimodal checkpoints keep the text model under "language_model.".
  std::string prefix =
      "language_model." + layerPrefix(ctx.layer) + "feed_forward.";
  if (!ctx.emit.has(prefix + "router.weight"))
    prefix = layerPrefix(ctx.layer) + "feed_forward.";
  std::string meaning = describe("num_local_experts", s->experts,
                                 "intermediate_size", s->width, s->hidden);
  if (failed(routerWeight(ctx, parts, prefix + "router.weight", *s,
                          "num_local_experts")))
    return failure();
  FailureOr<Value> gateUp = ctx.emit.weight(
      prefix + "experts.gate_up_proj", {s->experts, 2 * s->width, s->hidden},
      meaning, 0, {0, 2, 1});
  if (failed(gateUp))
    return failure();
  FailureOr<Value> down =
      ctx.emit.weight(prefix + "experts.down_proj",
                      {s->experts, s->hidden, s->width}, meaning, 0, {0, 2, 1});
  if (failed(down))
    return failure();
  parts.up = *gateUp;
  parts.down = *down;
  if (failed(sharedWeights(ctx, parts, prefix + "shared_expert.", s->width,
                           s->hidden, "intermediate_size, hidden_size")))
    return failure();
  FailureOr<FfnAttr> ffn = gatedFfn(ctx, GluLayout::Halves);
  FailureOr<FfnAttr> sharedFfn = gatedFfn(ctx, GluLayout::Separate);
  if (failed(ffn) || failed(sharedFfn))
    return failure();
  parts.ffn = *ffn;
  parts.sharedFfn = *sharedFfn;
  parts.routing = makeRouting(ctx, ScoringFunc::SigmoidAfterTopk, s->k);
  parts.weightsScaleInput = true;
  return success();
}

const Family kFamilies[] = {
    {"mixtral", allLayers, mixtralParts},
    {"qwen2_moe", qwenLayers, qwen2Parts},
    {"qwen3_moe", qwenLayers, qwen3Parts},
    {"olmoe", allLayers, olmoeParts},
    {"deepseek_v2", deepseekLayers, deepseekV2Parts},
    {"deepseek_v3", deepseekLayers, deepseekV3Parts},
    {"phimoe", allLayers, phimoeParts},
    {"gpt_oss", allLayers, gptOssParts},
    {"granitemoe", allLayers, graniteParts},
    {"llama4", llama4Layers, llama4Parts},
    {"llama4_text", llama4Layers, llama4Parts},
};

} // namespace

//===----------------------------------------------------------------------===//
// Driver
//===----------------------------------------------------------------------===//

llvm::ArrayRef<llvm::StringRef> mlir::moe::getSupportedModelTypes() {
  static const SmallVector<StringRef> types = [] {
    SmallVector<StringRef> names;
    for (const Family &family : kFamilies)
      names.push_back(family.modelType);
    return names;
  }();
  return types;
}

/// The activation precision the checkpoint was saved in ("dtype", or the older
/// "torch_dtype"); bf16 when neither says.
static FailureOr<Type> activationType(Location loc, const HFConfig &config) {
  MLIRContext *context = loc.getContext();
  StringRef key = config.has("dtype") ? "dtype" : "torch_dtype";
  auto name = config.getString(key, "bfloat16");
  if (!name)
    return report(loc, name.takeError());
  if (*name == "bfloat16")
    return Type(BFloat16Type::get(context));
  if (*name == "float16")
    return Type(Float16Type::get(context));
  if (*name == "float32")
    return Type(Float32Type::get(context));
  return emitError(loc) << "unsupported " << key << " '" << *name
                        << "' (bfloat16, float16 or float32)",
         failure();
}

/// weight_block_size of an FP8 quantization_config, if the checkpoint has one.
static FailureOr<std::optional<std::array<int64_t, 2>>>
fp8Blocks(Location loc, const HFConfig &config) {
  MOE_TRY_ASSIGN(quantization, config.getObject("quantization_config"));
  if (!quantization)
    return std::optional<std::array<int64_t, 2>>();
  MOE_TRY_ASSIGN(method, quantization->getString("quant_method", ""));
  if (method != "fp8")
    return std::optional<std::array<int64_t, 2>>();
  MOE_TRY_ASSIGN(blocks, quantization->getIntList("weight_block_size"));
  if (blocks.size() != 2 || blocks[0] < 1 || blocks[1] < 1)
    return emitError(loc)
               << "quantization_config.weight_block_size must be two positive "
                  "integers",
           failure();
  return std::optional<std::array<int64_t, 2>>(
      std::array<int64_t, 2>{blocks[0], blocks[1]});
}

OwningOpRef<ModuleOp> mlir::moe::importHFCheckpoint(StringRef directory,
                                                    MLIRContext *context) {
  context->loadDialect<MoEDialect, func::FuncDialect>();
  SmallString<256> configPath(directory);
  llvm::sys::path::append(configPath, "config.json");
  Location loc = FileLineColLoc::get(context, configPath, 0, 0);
  auto fail = [&](llvm::Error error) -> OwningOpRef<ModuleOp> {
    (void)report(loc, std::move(error));
    return nullptr;
  };

  auto rootOrError = HFConfig::load(configPath);
  if (!rootOrError)
    return fail(rootOrError.takeError());
  HFConfig root = std::move(*rootOrError);
  auto modelType = root.getString("model_type");
  if (!modelType)
    return fail(modelType.takeError());
  const Family *family = llvm::find_if(
      kFamilies, [&](const Family &f) { return f.modelType == *modelType; });
  if (family == std::end(kFamilies)) {
    InFlightDiagnostic diag = emitError(loc)
                              << "unsupported model_type '" << *modelType
                              << "'; moec imports ";
    llvm::interleaveComma(getSupportedModelTypes(), diag);
    return nullptr;
  }
  // Llama-4 keeps the text model's settings under "text_config".
  HFConfig config = root.section("text_config");

  auto checkpoint = ::moe::Checkpoint::open(directory);
  if (!checkpoint)
    return fail(checkpoint.takeError());
  auto layers = family->moeLayers(config);
  if (!layers)
    return fail(layers.takeError());
  if (layers->empty())
    return emitError(loc) << "the configuration has no MoE layer", nullptr;
  FailureOr<Type> actType = activationType(loc, root);
  FailureOr<std::optional<std::array<int64_t, 2>>> blocks =
      fp8Blocks(loc, root);
  auto hidden = config.getInt("hidden_size");
  if (!hidden)
    return fail(hidden.takeError());
  if (failed(actType) || failed(blocks))
    return nullptr;

  OpBuilder builder(context);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  module->getOperation()->setAttr("moe.model_type",
                                  builder.getStringAttr(*modelType));
  for (int64_t layer : *layers) {
    builder.setInsertionPointToEnd(module->getBody());
    auto tensorType =
        RankedTensorType::get({ShapedType::kDynamic, *hidden}, *actType);
    auto function = func::FuncOp::create(
        builder, loc, "layer_" + std::to_string(layer),
        builder.getFunctionType({tensorType}, {tensorType}));
    function->setAttr("moe.layer_index", builder.getI64IntegerAttr(layer));
    Block *body = function.addEntryBlock();
    builder.setInsertionPointToStart(body);

    Location layerLoc = NameLoc::get(
        builder.getStringAttr("layer " + std::to_string(layer)), loc);
    LayerEmitter emitter(builder, layerLoc, **checkpoint, *actType, *blocks);
    FamilyContext ctx{emitter, config, layer, layerLoc};
    LayerParts parts;
    if (failed(family->parts(ctx, parts)))
      return nullptr;
    auto layerOp = LayerOp::create(
        builder, layerLoc, tensorType, body->getArgument(0), parts.routerWeight,
        parts.routerBias, parts.correctionBias, parts.gate, parts.up,
        parts.down, parts.gateBias, parts.upBias, parts.downBias,
        parts.sharedGate, parts.sharedUp, parts.sharedDown,
        parts.sharedSigmoidGate, parts.routing, parts.ffn, parts.sharedFfn,
        /*capacity_factor=*/FloatAttr(),
        parts.weightsScaleInput ? builder.getUnitAttr() : UnitAttr(),
        /*expert_widths=*/DenseI64ArrayAttr());
    func::ReturnOp::create(builder, layerLoc, layerOp.getResult());
  }
  // A configuration the dialect rejects (say k > E) fails here, at the layer it
  // concerns.
  if (failed(verify(*module)))
    return nullptr;
  return module;
}

void mlir::moe::registerImportHFTranslation() {
  static TranslateToMLIRRegistration importHF(
      "import-hf",
      "import a Hugging Face MoE checkpoint folder (give the folder or its "
      "config.json)",
      [](llvm::SourceMgr &sourceMgr,
         MLIRContext *context) -> OwningOpRef<Operation *> {
        // moe-translate passes DIR/config.json for a folder; the checkpoint is
        // its folder.
        StringRef path = sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID())
                             ->getBufferIdentifier();
        StringRef directory = llvm::sys::path::parent_path(path);
        if (directory.empty())
          directory = ".";
        OwningOpRef<ModuleOp> module = importHFCheckpoint(directory, context);
        if (!module)
          return nullptr;
        return OwningOpRef<Operation *>(module.release());
      },
      [](DialectRegistry &registry) {
        registry.insert<MoEDialect, func::FuncDialect>();
      });
}
