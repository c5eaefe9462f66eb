//===- MoEOps.td - moe dialect operations ------------------*- tablegen -*-===//

#ifndef MOE_OPS_TD
#define MOE_OPS_TD

include "dialects/moe/MoEAttrs.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/CommonTypeConstraints.td"

def MoE_FloatTensor : RankedTensorOf<[AnyFloat]>;
def MoE_IndexTensor : RankedTensorOf<[I32]>;
def MoE_EncodingAttr : Attr<
    CPred<"::llvm::isa<::mlir::moe::WeightEncodingAttrInterface>($_self)">,
    "a weight encoding attribute"> {
  let storageType = "::mlir::moe::WeightEncodingAttrInterface";
  let returnType = "::mlir::moe::WeightEncodingAttrInterface";
  let convertFromStorage = "$_self";
}

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

def MoE_WeightOp : MoE_Op<"weight", [Pure]> {
  let summary = "a tensor read from an external safetensors file by name";
  let description = [{
    Weights stay on disk: the op names a tensor, and the result type is its shape and dtype.
    With `experts(E)` the name holds the placeholder `{e}` and the result stacks the E tensors
    named by substituting 0..E-1 (one per expert, as Mixtral and Qwen store them). With
    `permutation` the stored (stacked) tensor is transposed: result dim i is stored dim
    permutation[i] (Llama-4 stores expert weights as [E, in, out]). `file` names the shard
    (relative to the weights directory); absent, the checkpoint's index resolves the name.

    ```mlir
    %wg = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x4096xbf16>
    %w1 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight" experts(8)
            : tensor<8x14336x4096xbf16>
    ```
  }];
  let arguments = (ins StrAttr:$name, OptionalAttr<StrAttr>:$file,
                       OptionalAttr<I64Attr>:$experts,
                       OptionalAttr<DenseI64ArrayAttr>:$permutation);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $name (`from` $file^)? (`experts` `(` $experts^ `)`)?
    (`permutation` $permutation^)? attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The placeholder a stacked weight's name holds for the expert index.
    static constexpr ::llvm::StringLiteral kExpertPlaceholder = "{e}";
    /// The name of expert `expert`'s tensor (the name itself when not stacked).
    std::string getTensorName(int64_t expert);
    /// The shape of one stored tensor (per expert when stacked, before any permutation).
    ::llvm::SmallVector<int64_t> getStoredShape();
  }];
}

def MoE_DequantizeOp : MoE_Op<"dequantize", [Pure]> {
  let summary = "a logical weight from its stored (quantized) tensors";
  let description = [{
    ```mlir
    %w = moe.dequantize #moe.fp8_block<128, 128> %fp8, %scale_inv
           : (tensor<8x256x512xf8E4M3FN>, tensor<8x2x4xf32>) -> tensor<8x256x512xbf16>
    ```
    The encoding attribute says how the stored tensors combine and checks their shapes.
  }];
  let arguments = (ins Variadic<AnyRankedTensor>:$storage, MoE_EncodingAttr:$encoding);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $encoding $storage attr-dict `:` functional-type($storage, $result)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The result type quantization passes give the dequantization of a
    /// weight of type `weight`: f32, which holds the grids' values
    /// ((level - zero) * scale, code * scale) to one rounding at most, so
    /// compiled kernels can apply each scale once per group instead of
    /// rounding every weight to the original type.
    static ::mlir::RankedTensorType
    getResultTypeFor(::mlir::RankedTensorType weight,
                     ::mlir::moe::WeightEncodingAttrInterface encoding);
  }];
}

def MoE_QuantizeOp : MoE_Op<"quantize", [Pure]> {
  let summary = "the stored (quantized) tensors of a logical weight";
  let description = [{
    The inverse of `moe.dequantize`, recorded by quantization passes and executed where weights
    are written (the weight packer) or evaluated (the reference evaluator), never on a device:
    weights do not enter the IR. `#moe.int_group` rounds each group of `group_size` input
    columns of each row to the nearest of 2^bits levels: symmetric with scale max|w| / qmax
    (qmax = 127 or 7) and values in [-qmax, qmax]; asymmetric with scale (max - min) /
    (2^bits - 1), zero point round(-min / scale) and values in [0, 2^bits - 1]. 4-bit values
    are packed two per byte, low nibble first.

    With `clip(r)` (symmetric int_group only, 0 < r <= 1) the scale is r * max|w| / qmax and
    values are clamped to [-qmax, qmax] (EAQuant's router clipping, moe-quantize-router).

    With `calibration %rows` (int_group only) the levels are chosen by GPTQ instead of
    rounding to nearest (MoEQuant, moe-quantize-experts method=gptq): rows [E, n, K]
    (stacked input [E, N, K]) or [n, K] (input [N, K]) are the projection's inputs, each
    already scaled by the square root of its routing weight; per expert
    H = (2 / n) * rows^T rows + 1% of its mean diagonal, columns are quantized in order with
    the error spread over the remaining columns through the Cholesky factor of H^-1, and each
    group's scale (and zero point) is chosen from the updated weights when the group starts.
    Zero rows add nothing to H (padding); an expert whose rows are all zero is rounded to
    nearest. Columns no row reaches keep their weight (H_jj = 1 there).

    `#moe.fp8_block<bn, bk>` (f8E4M3FN values): per block scale_inv = max|w| / 448, values
    w / scale_inv rounded to the nearest e4m3 (saturating). `#moe.mxfp4`: per block of 32
    inputs the shared exponent is floor(log2(max|w|)) - 2 (OCP MX; scale byte + 127) and
    values are rounded to the nearest e2m1 (ties to even, saturating at +-6).

    ```mlir
    %q, %s = moe.quantize #moe.int_group<bits = 8, group_size = 128, symmetric = true> %w
        : (tensor<8x14336x4096xbf16>) -> (tensor<8x14336x4096xi8>, tensor<8x14336x32xf32>)
    %wq = moe.dequantize #moe.int_group<bits = 8, group_size = 128, symmetric = true> %q, %s
        : (tensor<8x14336x4096xi8>, tensor<8x14336x32xf32>) -> tensor<8x14336x4096xbf16>
    %g, %gs = moe.quantize #moe.int_group<bits = 4, group_size = 128> %w1 calibration %x
        : (tensor<8x14336x4096xbf16>, tensor<8x512x4096xf32>)
        -> (tensor<8x14336x2048xi8>, tensor<8x14336x32xf32>)
    %r, %rs = moe.quantize #moe.int_group<bits = 8, group_size = 4096> %router clip(0.87)
        : (tensor<8x4096xbf16>) -> (tensor<8x4096xi8>, tensor<8x1xf32>)
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_EncodingAttr:$encoding,
                       Optional<MoE_FloatTensor>:$calibration,
                       OptionalAttr<F64Attr>:$clip);
  let results = (outs Variadic<AnyRankedTensor>:$storage);
  let assemblyFormat = [{
    $encoding $input (`calibration` $calibration^)? (`clip` `(` $clip^ `)`)? attr-dict
    `:` functional-type(operands, $storage)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The clipping ratio, when one is recorded.
    std::optional<double> getClipRatio() {
      if (::mlir::FloatAttr clip = getClipAttr())
        return clip.getValueAsDouble();
      return std::nullopt;
    }
  }];
}

def MoE_ScaleColumnsOp : MoE_Op<"scale_columns", [Pure]> {
  let summary = "a weight with each input column multiplied by a per-channel scale";
  let description = [{
    result[..., n, j] = weight[..., n, j] * scales[j], rounded to the result's element type.
    Recorded by smoothing passes (moe-smooth-experts) on the weights that read the layer's
    input (router, gate/up, the shared expert's sigmoid gate) and executed where weights are
    written or evaluated, one expert at a time for stacked weights: the scaled weight never
    enters the IR.

    ```mlir
    %w1s = moe.scale_columns %w1, %s
        : (tensor<8x14336x4096xbf16>, tensor<4096xf32>) -> tensor<8x14336x4096xbf16>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$weight, MoE_FloatTensor:$scales);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $weight `,` $scales attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_SelectChannelsOp : MoE_Op<"select_channels", [Pure]> {
  let summary = "per expert, a chosen list of a stacked weight's rows or columns";
  let description = [{
    For every expert e of a stacked tensor [E, ...] (weights [E, N, K], biases [E, N]), keeps
    the indices along `dim` (not the expert dimension) listed in
    `channels[e * W : (e + 1) * W]`, in that order, where W is the result's size along
    `dim`; an index of -1 gives zeros. Recorded by
    micro-expert pruning (an expert's kept intermediate channels first, padding after) and
    executed where weights are written or evaluated, one expert at a time: one op per weight
    however many runs of channels are kept.

    ```mlir
    %g2 = moe.select_channels %g dim(1) channels([0, 2, 3, 1, -1, 3])
        : (tensor<2x4x64xbf16>) -> tensor<2x3x64xbf16>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, I64Attr:$dim,
                       DenseI64ArrayAttr:$channels);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `dim` `(` $dim `)` `channels` `(` $channels `)` attr-dict `:`
    functional-type($input, $result)
  }];
  let hasVerifier = 1;
}

def MoE_FactorizeOp : MoE_Op<"factorize", [Pure]> {
  let summary = "experts as a small per-expert factor times a basis shared by a group";
  let description = [{
    MoLE latent experts: each group of `group` consecutive experts e (group g = e / group)
    shares one basis B_g [R, K] and keeps a small factor A_e [N, R] with W_e ~ A_e B_g, of
    rank R = `rank`. Per group, the stacked S = [W_(g*G); ...; W_(g*G+G-1)] ([G*N, K]) is
    replaced by its truncated SVD S ~ U_R Sigma_R V_R^T: B_g = V_R^T and A is U_R Sigma_R
    split into row blocks, so ||S - A B||_F^2 is the discarded singular energy.

    With `whiten`, calibration rows X [n, K] (the projection's input) weight the error:
    C = X^T X / n + 1e-6 * trace(C) / K * I (the ridge keeps C invertible when the rows do
    not span K), S C^{1/2} is factorized instead and B_g = V_R^T C^{-1/2}, minimising
    sum_e ||(W_e - A_e B_g) C^{1/2}||_F.

    Recorded by moe-latent-factorize and executed where weights are materialized (one group
    at a time, never on a device); `moe.latent_product` takes the product back.

    ```mlir
    %a, %b = moe.factorize %w rank(16) group(4)
        : (tensor<8x32x64xbf16>) -> (tensor<8x32x16xf32>, tensor<2x16x64xf32>)
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, Optional<MoE_FloatTensor>:$whitening,
                       I64Attr:$rank, I64Attr:$group);
  let results = (outs MoE_FloatTensor:$factors, MoE_FloatTensor:$basis);
  let assemblyFormat = [{
    $input `rank` `(` $rank `)` `group` `(` $group `)` (`whiten` $whitening^)? attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_LatentProductOp : MoE_Op<"latent_product", [Pure]> {
  let summary = "expert weights from their latent factors: W_e = A_e B_{e / group}";
  let description = [{
    The weight a `moe.factorize` approximates, for consumers that read whole expert matrices
    (the weight packer writes the product; the reference evaluator computes with it): expert
    e's matrix is A_e B_g with g = e / (E / number of bases), rounded to the result's element
    type. One expert's slice reads A's expert e and B's group g only.

    ```mlir
    %w2 = moe.latent_product %a, %b
        : (tensor<8x32x16xf32>, tensor<2x16x64xf32>) -> tensor<8x32x64xbf16>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$factors, MoE_FloatTensor:$basis);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $factors `,` $basis attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Explicit pieces: route -> dispatch -> experts -> combine
//===----------------------------------------------------------------------===//

def MoE_RouteOp : MoE_Op<"route", [Pure, AttrSizedOperandSegments]> {
  let summary = "router: logits, scoring and expert selection per token";
  let description = [{
    logits = input * gate^T (+ bias), computed in the routing's `logits_type`; then scoring
    and selection as the routing attribute says. `correction_bias` (DeepSeek-V3's
    e_score_correction_bias) is added to the scores only to choose experts; the weights are
    the unbiased scores. Results: expert ids `[T, k]` i32 and weights `[T, k]` f32; with
    top_p selection, slots past a token's dynamic k hold id -1 and weight 0.

    ```mlir
    %ids, %weights = moe.route #moe.routing<scoring = softmax, k = 2, normalize = true> %x, %wg
        : (tensor<?x4096xbf16>, tensor<8x4096xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_FloatTensor:$gate_weight,
                       Optional<MoE_FloatTensor>:$bias,
                       Optional<MoE_FloatTensor>:$correction_bias,
                       MoE_RoutingAttr:$routing);
  let results = (outs MoE_IndexTensor:$topk_ids, MoE_FloatTensor:$topk_weights);
  let assemblyFormat = [{
    qualified($routing) $input `,` $gate_weight (`bias` $bias^)?
    (`correction_bias` $correction_bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

def MoE_DispatchOp : MoE_Op<"dispatch", [Pure]> {
  let summary = "permute tokens into expert-contiguous order";
  let description = [{
    Each (token, slot) assignment of `topk_ids` becomes one row of `permuted`, grouped by
    expert in ascending id and, within an expert, in ascending token order. Results:
    - `permuted` `[N, H]`: the assigned token rows;
    - `permuted_weights` `[N]`: each row's routing weight;
    - `source_slots` `[N]` i32: each row's flat slot `t * k + j`, or -1 for an unused row;
    - `expert_offsets` `[E + 1]` i32: rows of expert e are [offsets[e], offsets[e+1]).
    Dropless by default (N = T * k; ids of -1 are skipped and their rows left unused). With
    `capacity_factor` c, each expert keeps at most ceil(c * T * k / E) assignments in token
    order and drops the rest (their tokens get nothing from that expert).
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_IndexTensor:$topk_ids,
                       MoE_FloatTensor:$topk_weights,
                       OptionalAttr<F64Attr>:$capacity_factor);
  let results = (outs MoE_FloatTensor:$permuted, MoE_FloatTensor:$permuted_weights,
                      MoE_IndexTensor:$source_slots, MoE_IndexTensor:$expert_offsets);
  let assemblyFormat = [{
    $input `,` $topk_ids `,` $topk_weights attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getNumExperts() {
      return ::llvm::cast<::mlir::RankedTensorType>(getExpertOffsets().getType())
                 .getDimSize(0) - 1;
    }
  }];
}

def MoE_ExpertsOp : MoE_Op<"experts", [Pure, AttrSizedOperandSegments]> {
  let summary = "grouped feed-forward: rows of expert e through expert e's weights";
  let description = [{
    For each expert e, rows [offsets[e], offsets[e+1]) of `input` go through
    down(act(gate) * up) (or down(act(up)) for glu = none) with expert e's slice of the
    stacked weights `[E, out, in]`. Optional biases are per expert. `row_scales` multiplies
    each input row first (Llama-4 scales the expert input by the routing weight).
    `expert_widths` (one entry per expert, each at most the intermediate width I) gives
    experts different widths: expert e uses only its first expert_widths[e] intermediate
    channels; the channels after them contribute nothing whatever the weights hold there
    (micro-expert pruning keeps them zero), so code generation skips them.

    ```mlir
    %y = moe.experts #moe.ffn<activation = silu> %px, %offsets gate %w1 up %w3 down %w2
        : (tensor<?x4096xbf16>, tensor<9xi32>, tensor<8x14336x4096xbf16>,
           tensor<8x14336x4096xbf16>, tensor<8x4096x14336xbf16>) -> tensor<?x4096xbf16>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_IndexTensor:$expert_offsets,
                       Optional<MoE_FloatTensor>:$gate_proj, MoE_FloatTensor:$up_proj,
                       MoE_FloatTensor:$down_proj,
                       Optional<MoE_FloatTensor>:$gate_bias,
                       Optional<MoE_FloatTensor>:$up_bias,
                       Optional<MoE_FloatTensor>:$down_bias,
                       Optional<MoE_FloatTensor>:$row_scales,
                       MoE_FfnAttr:$ffn,
                       OptionalAttr<DenseI64ArrayAttr>:$expert_widths);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    qualified($ffn) $input `,` $expert_offsets (`gate` $gate_proj^)? `up` $up_proj
    `down` $down_proj (`gate_bias` $gate_bias^)? (`up_bias` $up_bias^)?
    (`down_bias` $down_bias^)? (`row_scales` $row_scales^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_CombineOp : MoE_Op<"combine", [Pure]> {
  let summary = "weighted scatter-add of expert rows back to token order";
  let description = [{
    out[t] = addend[t] + sum over rows r with source_slots[r] = t * k + j of
    topk_weights[t, j] * expert_outputs[r] (without the weight when `unweighted`; Llama-4
    applied it to the input). Rows with source slot -1 contribute nothing. Sums run over
    experts in ascending id, as transformers' expert loop does. T and k come from
    `topk_weights`.
  }];
  let arguments = (ins MoE_FloatTensor:$expert_outputs, MoE_IndexTensor:$source_slots,
                       MoE_FloatTensor:$topk_weights, Optional<MoE_FloatTensor>:$addend,
                       UnitAttr:$unweighted);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $expert_outputs `,` $source_slots `,` $topk_weights (`add` $addend^)? attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_SharedExpertOp : MoE_Op<"shared_expert", [Pure, AttrSizedOperandSegments]> {
  let summary = "an always-on expert applied to every token";
  let description = [{
    down(act(gate) * up) of every token with 2-D weights `[out, in]`; with `sigmoid_gate`
    (Qwen2-MoE's shared_expert_gate, `[1, H]`) each token's output is scaled by
    sigmoid(x * sigmoid_gate^T). DeepSeek's n_shared_experts are stored as one wider expert.
  }];
  let arguments = (ins MoE_FloatTensor:$input,
                       Optional<MoE_FloatTensor>:$gate_proj, MoE_FloatTensor:$up_proj,
                       MoE_FloatTensor:$down_proj,
                       Optional<MoE_FloatTensor>:$sigmoid_gate,
                       MoE_FfnAttr:$ffn);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    qualified($ffn) $input (`gate` $gate_proj^)? `up` $up_proj `down` $down_proj
    (`sigmoid_gate` $sigmoid_gate^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_ScaleChannelsOp : MoE_Op<"scale_channels", [Pure]> {
  let summary = "hidden states with each channel multiplied by a per-channel scale";
  let description = [{
    result[t, j] = input[t, j] * scales[j]. The activation side of an equivalence-preserving
    fold: moe-smooth-experts divides a layer's input by s (scales = 1 / s) and multiplies the
    input columns of every linear map reading it by s (moe.scale_columns). At layer level this
    op is the explicit target of the fold; a model-level importer folds it into the weight of
    the RMSNorm that precedes the layer, where it costs nothing.

    ```mlir
    %xs = moe.scale_channels %x, %inv_s
        : (tensor<?x4096xbf16>, tensor<4096xf32>) -> tensor<?x4096xbf16>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_FloatTensor:$scales);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $scales attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Block level
//===----------------------------------------------------------------------===//

def MoE_LayerOp : MoE_Op<"layer", [Pure, AttrSizedOperandSegments]> {
  let summary = "a whole MoE block: router, routed experts and optional shared expert";
  let description = [{
    The block as checkpoints describe it; `moe-decompose` rewrites it into route, dispatch,
    experts, combine (and shared_expert). `weights_scale_input` applies the routing weight to
    each expert's input instead of its output (Llama-4). `expert_widths` is moe.experts'
    (routed experts of different intermediate widths); moe-decompose carries it there.

    ```mlir
    %y = moe.layer %x
        routing #moe.routing<scoring = softmax, k = 2, normalize = true>
        ffn #moe.ffn<activation = silu>
        router(%wg) experts(gate %w1 up %w3 down %w2)
        : (tensor<?x4096xbf16>, tensor<8x4096xbf16>, tensor<8x14336x4096xbf16>,
           tensor<8x14336x4096xbf16>, tensor<8x4096x14336xbf16>) -> tensor<?x4096xbf16>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input,
                       MoE_FloatTensor:$router_weight,
                       Optional<MoE_FloatTensor>:$router_bias,
                       Optional<MoE_FloatTensor>:$correction_bias,
                       Optional<MoE_FloatTensor>:$gate_proj, MoE_FloatTensor:$up_proj,
                       MoE_FloatTensor:$down_proj,
                       Optional<MoE_FloatTensor>:$gate_bias,
                       Optional<MoE_FloatTensor>:$up_bias,
                       Optional<MoE_FloatTensor>:$down_bias,
                       Optional<MoE_FloatTensor>:$shared_gate_proj,
                       Optional<MoE_FloatTensor>:$shared_up_proj,
                       Optional<MoE_FloatTensor>:$shared_down_proj,
                       Optional<MoE_FloatTensor>:$shared_sigmoid_gate,
                       MoE_RoutingAttr:$routing, MoE_FfnAttr:$ffn,
                       OptionalAttr<MoE_FfnAttr>:$shared_ffn,
                       OptionalAttr<F64Attr>:$capacity_factor,
                       UnitAttr:$weights_scale_input,
                       OptionalAttr<DenseI64ArrayAttr>:$expert_widths);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `routing` qualified($routing) `ffn` qualified($ffn)
    (`shared_ffn` qualified($shared_ffn)^)?
    `router` `(` $router_weight (`bias` $router_bias^)?
                 (`correction_bias` $correction_bias^)? `)`
    `experts` `(` (`gate` $gate_proj^)? `up` $up_proj `down` $down_proj
                  (`gate_bias` $gate_bias^)? (`up_bias` $up_bias^)?
                  (`down_bias` $down_bias^)? `)`
    (`shared` `(` (`gate` $shared_gate_proj^)? `up` $shared_up_proj^ `down` $shared_down_proj
                  (`sigmoid_gate` $shared_sigmoid_gate^)? `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

#endif // MOE_OPS_TD
