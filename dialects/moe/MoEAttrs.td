//===- MoEAttrs.td - moe dialect enums and attributes ------*- tablegen -*-===//

#ifndef MOE_ATTRS_TD
#define MOE_ATTRS_TD

include "dialects/moe/MoEDialect.td"
include "dialects/moe/MoEInterfaces.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def MoE_ScoringFunc : I32EnumAttr<"ScoringFunc", "how router logits become scores", [
    I32EnumAttrCase<"Softmax", 0, "softmax">,
    I32EnumAttrCase<"Sigmoid", 1, "sigmoid">,
    I32EnumAttrCase<"Sparsemixer", 2, "sparsemixer">,
    I32EnumAttrCase<"SoftmaxAfterTopk", 3, "softmax_after_topk">,
    I32EnumAttrCase<"SigmoidAfterTopk", 4, "sigmoid_after_topk">]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
  let description = [{
    - softmax / sigmoid: scores over all experts, then selection (Mixtral, Qwen, OLMoE,
      DeepSeek).
    - sparsemixer: PhiMoE's two-step masked softmax; `epsilon` is the mask threshold.
    - softmax_after_topk: select the top-k logits, softmax over those k (GPT-OSS, Granite).
    - sigmoid_after_topk: select the top-k logits, sigmoid of each (Llama-4).
  }];
}

def MoE_ExpertSelection : I32EnumAttr<"ExpertSelection", "how experts are chosen per token", [
    I32EnumAttrCase<"TopK", 0, "topk">,
    I32EnumAttrCase<"GroupLimited", 1, "group_limited">,
    I32EnumAttrCase<"TopP", 2, "top_p">]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
  let description = [{
    - topk: the k highest scores.
    - group_limited: experts fall into `n_group` equal groups; only the `topk_group` best
      groups (by `group_score`) stay eligible, the others are excluded; then top-k
      (DeepSeek; transformers masks them with -inf).
    - top_p: dynamic k, the smallest prefix of the descending scores whose mass reaches
      `top_p`, at most k experts; unused slots hold id -1 and weight 0.
  }];
}

def MoE_GroupScore : I32EnumAttr<"GroupScore", "how a group of experts is scored", [
    I32EnumAttrCase<"Max", 0, "max">,
    I32EnumAttrCase<"Top2Sum", 1, "top2_sum">]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}

def MoE_Activation : I32EnumAttr<"Activation", "expert activation function", [
    I32EnumAttrCase<"Silu", 0, "silu">,
    I32EnumAttrCase<"Gelu", 1, "gelu">,
    I32EnumAttrCase<"GeluTanh", 2, "gelu_tanh">,
    I32EnumAttrCase<"Relu", 3, "relu">,
    I32EnumAttrCase<"ClampedSwiglu", 4, "clamped_swiglu">]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
  let description = [{
    clamped_swiglu is GPT-OSS's: gate = min(gate, limit), up = clamp(up, -limit, limit),
    h = (up + 1) * gate * sigmoid(alpha * gate).
  }];
}

def MoE_GluLayout : I32EnumAttr<"GluLayout", "where the gate projection lives", [
    I32EnumAttrCase<"None", 0, "none">,
    I32EnumAttrCase<"Separate", 1, "separate">,
    I32EnumAttrCase<"Halves", 2, "halves">,
    I32EnumAttrCase<"Interleaved", 3, "interleaved">]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
  let description = [{
    - none: a plain MLP, h = act(x * up^T).
    - separate: gated, h = act(x * gate^T) * (x * up^T), gate and up given as two weights.
    - halves: gated, one fused up weight of 2I rows: rows [0, I) gate, [I, 2I) up.
    - interleaved: gated, fused: even rows gate, odd rows up (GPT-OSS).
  }];
}

class MoE_EnumParameter<EnumAttrInfo info, string default>
    : EnumParameter<info> {
  let defaultValue = default;
}

// Floating-point parameters are kept as f64 FloatAttrs and printed as the shortest decimal
// that reads back to the same double (`0.01`, `1.0e-20`), so the IR round-trips bit for bit.
class MoE_OptionalFloatParameter<string desc>
    : OptionalParameter<"::mlir::FloatAttr", desc> {
  let parser = "::mlir::moe::parseF64Parameter($_parser)";
  let printer = "::mlir::moe::printF64Parameter($_printer, $_self)";
}

//===----------------------------------------------------------------------===//
// Configuration attributes
//===----------------------------------------------------------------------===//

class MoE_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<MoE_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def MoE_RoutingAttr : MoE_Attr<"Routing", "routing"> {
  let summary = "the router's scoring and selection rule";
  let description = [{
    Everything that turns router logits into `[T, k]` expert ids and weights:
    ```
    #moe.routing<scoring = softmax, k = 2, normalize = true>                       // Mixtral
    #moe.routing<scoring = sigmoid, k = 8, selection = group_limited, n_group = 8,
                 topk_group = 4, group_score = top2_sum, normalize = true,
                 norm_epsilon = 1.0e-20, scaling = 2.5, logits_type = f32>          // DeepSeek-V3
    #moe.routing<scoring = sparsemixer, k = 2, epsilon = 0.01>                     // PhiMoE
    #moe.routing<scoring = softmax, k = 4, selection = top_p, top_p = 0.4>         // dynamic k
    ```
    `normalize` divides the selected weights by their sum (+ `norm_epsilon`); `scaling`
    multiplies them afterwards (DeepSeek's routed_scaling_factor). `logits_type` is the
    precision the router matmul is computed in (absent: the input's type).
  }];
  let parameters = (ins
    EnumParameter<MoE_ScoringFunc>:$scoring,
    "unsigned":$k,
    MoE_EnumParameter<MoE_ExpertSelection, "::mlir::moe::ExpertSelection::TopK">:$selection,
    DefaultValuedParameter<"bool", "false">:$normalize,
    MoE_OptionalFloatParameter<"added to the denominator when normalizing">:$norm_epsilon,
    MoE_OptionalFloatParameter<"multiplies the final weights">:$scaling,
    DefaultValuedParameter<"unsigned", "0", "number of expert groups">:$n_group,
    DefaultValuedParameter<"unsigned", "0", "groups kept">:$topk_group,
    MoE_EnumParameter<MoE_GroupScore, "::mlir::moe::GroupScore::Max">:$group_score,
    MoE_OptionalFloatParameter<"mass threshold of top_p selection">:$top_p,
    MoE_OptionalFloatParameter<"sparsemixer mask threshold">:$epsilon,
    OptionalParameter<"::mlir::Type", "router matmul precision">:$logits_type
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// The routed scaling factor (1.0 when absent).
    double getScalingValue() const;
    /// The normalization epsilon (0.0 when absent).
    double getNormEpsilonValue() const;
    /// True when scores are computed over all experts before selection.
    bool scoresBeforeSelection() const;
    /// Checks the parts of the rule that depend on the expert count.
    ::llvm::LogicalResult verifyForExperts(
        ::llvm::function_ref<::mlir::InFlightDiagnostic()> emitError,
        int64_t numExperts) const;
  }];
}

def MoE_FfnAttr : MoE_Attr<"Ffn", "ffn"> {
  let summary = "an expert's feed-forward shape: activation and gate layout";
  let description = [{
    ```
    #moe.ffn<activation = silu, glu = separate>                                    // Mixtral
    #moe.ffn<activation = silu, glu = halves>                                      // Granite
    #moe.ffn<activation = clamped_swiglu, glu = interleaved, alpha = 1.702,
             limit = 7.0>                                                          // GPT-OSS
    #moe.ffn<activation = gelu, glu = none>                                        // plain MLP
    ```
  }];
  let parameters = (ins
    EnumParameter<MoE_Activation>:$activation,
    MoE_EnumParameter<MoE_GluLayout, "::mlir::moe::GluLayout::Separate">:$glu,
    MoE_OptionalFloatParameter<"clamped_swiglu sigmoid slope">:$alpha,
    MoE_OptionalFloatParameter<"clamped_swiglu clamp limit">:$limit
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    bool isGated() const { return getGlu() != ::mlir::moe::GluLayout::None; }
    /// True when gate and up projections share one weight tensor.
    bool isFused() const {
      return getGlu() == ::mlir::moe::GluLayout::Halves ||
             getGlu() == ::mlir::moe::GluLayout::Interleaved;
    }
  }];
}

//===----------------------------------------------------------------------===//
// Weight encodings (implement WeightEncodingAttrInterface)
//===----------------------------------------------------------------------===//

def MoE_Fp8BlockEncodingAttr : MoE_Attr<"Fp8BlockEncoding", "fp8_block",
    [DeclareAttrInterfaceMethods<MoE_WeightEncodingAttrInterface>]> {
  let summary = "FP8 values with one f32 scale per block (DeepSeek-V3)";
  let description = [{
    Storage: FP8 values `[..., N, K]` and f32 `scale_inv` `[..., ceil(N/bn), ceil(K/bk)]`;
    W[i, j] = fp8[i, j] * scale_inv[i / bn, j / bk]. Example: `#moe.fp8_block<128, 128>`.
  }];
  let parameters = (ins "int64_t":$block_rows, "int64_t":$block_cols);
  let assemblyFormat = "`<` $block_rows `,` $block_cols `>`";
  let genVerifyDecl = 1;
}

def MoE_Mxfp4EncodingAttr : MoE_Attr<"Mxfp4Encoding", "mxfp4",
    [DeclareAttrInterfaceMethods<MoE_WeightEncodingAttrInterface>]> {
  let summary = "OCP MXFP4: e2m1 nibbles in blocks of 32 with an e8m0 scale (GPT-OSS)";
  let description = [{
    Storage: ui8 blocks `[..., N, K/32, 16]` (low nibble = even element) and ui8 scales
    `[..., N, K/32]`; value = e2m1(nibble) * 2^(scale - 127).
  }];
}

def MoE_IntGroupEncodingAttr : MoE_Attr<"IntGroupEncoding", "int_group",
    [DeclareAttrInterfaceMethods<MoE_WeightEncodingAttrInterface>]> {
  let summary = "group-wise integer quantization along the input dimension";
  let description = [{
    Storage: integer values `[..., N, K]` (8-bit) or packed two per byte `[..., N, K/2]`
    (4-bit, low nibble = even element), float scales `[..., N, K/group]` and, when
    asymmetric, zero points of the scales' shape. W = (q - zero) * scale. Symmetric values
    are signed (two's complement nibbles for 4 bits), asymmetric ones unsigned.
    Example: `#moe.int_group<bits = 4, group_size = 128, symmetric = false>`.
  }];
  let parameters = (ins
    "unsigned":$bits,
    "int64_t":$group_size,
    DefaultValuedParameter<"bool", "true">:$symmetric
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // MOE_ATTRS_TD
