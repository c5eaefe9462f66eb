//===- Passes.td - moe transformations ---------------------*- tablegen -*-===//

#ifndef MOE_PASSES_TD
#define MOE_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoEDecompose : Pass<"moe-decompose"> {
  let summary = "rewrite moe.layer into route, dispatch, experts, combine (+ shared_expert)";
  let description = [{
    Every `moe.layer` becomes the explicit pieces later passes and code generation work on:
    ```
    %ids, %w = moe.route ...                  // logits, scoring, selection
    %px, %pw, %slots, %offsets = moe.dispatch // expert-contiguous permutation
    %py = moe.experts %px, %offsets ...        // grouped feed-forward
    %s = moe.shared_expert ...                 // when the layer has one
    %y = moe.combine %py, %slots, %w add %s    // weighted scatter-add
    ```
    With `weights_scale_input` (Llama-4) the routing weight scales each expert's input
    (`row_scales`) and the combine is unweighted. The result is the same function: a layer
    and its decomposition evaluate identically.
  }];
  let dependentDialects = ["::mlir::moe::MoEDialect"];
}

def MoEFuseGateUp : Pass<"moe-fuse-gate-up"> {
  let summary = "fuse separate gate and up projections into one weight (glu = halves)";
  let description = [{
    Experts written with separate gate and up weights (Mixtral's w1/w3, Qwen's gate_proj/
    up_proj) compute two matmuls with the same input. This pass rewrites moe.experts,
    moe.shared_expert and moe.layer (routed and shared experts) with `glu = separate` to one
    weight `tensor.concat` of gate and up along the output dimension and `glu = halves`, so a
    single matmul produces both and the activation can run in its epilogue. Biases are
    concatenated the same way (a missing one of the pair becomes zeros). The weights stay
    references: the concatenation is performed where weights are materialized (the weight
    packer, the reference evaluator). The result computes the same function.
    ```
    %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %w1 up %w3 down %w2
    // becomes
    %gu = tensor.concat dim(1) %w1, %w3 : (tensor<8x32x64xbf16>, tensor<8x32x64xbf16>)
                                         -> tensor<8x64x64xbf16>
    %y = moe.experts #moe.ffn<activation = silu, glu = halves> %x, %off up %gu down %w2
    ```
  }];
  let dependentDialects = ["::mlir::moe::MoEDialect", "::mlir::tensor::TensorDialect",
                           "::mlir::arith::ArithDialect"];
}

def MoEQuantizeExperts : Pass<"moe-quantize-experts"> {
  let summary = "weight-only group-wise integer quantization of expert weights (round to nearest)";
  let description = [{
    Every gate, up and down weight of routed and shared experts (moe.layer, moe.experts,
    moe.shared_expert) becomes its quantized storage and its dequantization; router weights
    keep their precision. The dequantization is to f32, which holds the grid's values
    ((level - zero) * scale exactly; FP8 code * scale to one rounding), so compiled kernels
    apply each scale once per group. The quantization is recorded, not performed: the
    weight writer (moe-compile) and the reference evaluator execute moe.quantize, so
    `moe-run` on the result measures exactly the error the compiled model will have.
    Weights that are already stored quantized (a moe.dequantize) are left alone.
    ```mlir
    %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %w1 up %w3 down %w2
    // becomes, with bits=8 group-size=32
    %q, %s = moe.quantize #moe.int_group<bits = 8, group_size = 32, symmetric = true> %w1
        : (tensor<8x32x64xbf16>) -> (tensor<8x32x64xi8>, tensor<8x32x2xf32>)
    %w1q = moe.dequantize #moe.int_group<bits = 8, group_size = 32, symmetric = true> %q, %s
        : (tensor<8x32x64xi8>, tensor<8x32x2xf32>) -> tensor<8x32x64xf32>
    ... (the same for %w3 and %w2)
    %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %w1q up %w3q down %w2q
    ```
    A group size that does not divide a weight's input dimension is an error at the op.

    `method=gptq` (MoEQuant) chooses the levels by GPTQ on calibration inputs instead of
    rounding to nearest, with the same storage. Per moe.layer (run before moe-decompose),
    the calibration states are routed in float64; routed expert e's gate/up see the rows
    routed to it, its down projection their activated intermediates computed with the
    weights before quantization, each row scaled by sqrt(routing weight) (all 1 with
    `router-weighted=false`: plain GPTQ); the shared expert sees every token, scaled by
    sqrt(sigmoid gate) when it has one. The rows, zero-padded to [E, n_max, K], are written
    to `<data-dir>/<function>.gptq.safetensors` (data-dir: option, else the module's
    moe.pass_data_dir) and referenced as `moe.weight ... from "/abs/path"` by the
    `calibration` operand of each moe.quantize; the weight writer runs GPTQ expert by
    expert. The function gets `moe.report.moe-quantize-experts` with the calibration
    rows per expert (min, max).

    `format=fp8` records #moe.fp8_block<128, 128> (e4m3 values, f32 scale_inv = block
    amax / 448, as DeepSeek-V3 ships), `format=mxfp4` GPT-OSS's #moe.mxfp4 (32 values
    share an e8m0 exponent floor(log2 amax) - 2, e2m1 values); bits, group-size and
    symmetric do not apply. Weights already stored quantized (an FP8 checkpoint's own
    block scales) are left alone.

    Latent experts (moe-latent-factorize first): a routed gate or up weight that is a
    `moe.latent_product(A, B)` keeps its factorization, and its factors are quantized instead
    of the dense product: A [E, N, R] in groups along R (group-size must divide the rank),
    and with `latent-basis=quantize` the shared basis B [groups, R, K] too (groups along K).
    The weight becomes `moe.latent_product(moe.dequantize(moe.quantize(A)), B)`. Only
    `format=int` with `method=rtn` quantizes factors; other formats and methods are rejected
    there. A latent down projection is quantized as a dense weight (the CPU code reads down's
    product).
    ```mlir
    %q, %s = moe.quantize #moe.int_group<bits = 4, group_size = 32> %w1 calibration %rows
        : (tensor<8x32x64xbf16>, tensor<8x40x64xf32>) -> (tensor<8x32x32xi8>, tensor<8x32x2xf32>)
    %f, %fs = moe.quantize #moe.fp8_block<128, 128> %w2
        : (tensor<8x256x512xbf16>) -> (tensor<8x256x512xf8E4M3FN>, tensor<8x2x4xf32>)
    ```
  }];
  let options = [
    Option<"bits", "bits", "int64_t", "8", "bits per weight: 8 or 4">,
    Option<"groupSize", "group-size", "int64_t", "128",
           "input columns sharing one scale (must divide every quantized weight's input "
           "dimension)">,
    Option<"symmetric", "symmetric", "bool", "true",
           "symmetric (scale only) or asymmetric (scale and zero point) levels">,
    Option<"method", "method", "std::string", "\"rtn\"",
           "how int levels are chosen: rtn (round to nearest) or gptq (needs calibration)">,
    Option<"routerWeighted", "router-weighted", "bool", "true",
           "gptq: weight each calibration row by its routing weight (MoEQuant)">,
    Option<"format", "format", "std::string", "\"int\"",
           "storage: int (#moe.int_group), fp8 (#moe.fp8_block<128, 128>) or mxfp4">,
    Option<"weights", "weights", "std::string", "",
           "gptq: checkpoint folder the module's moe.weight ops read">,
    Option<"calibration", "calibration", "std::string", "",
           "gptq: safetensors file of calibration hidden states">,
    Option<"dataDir", "data-dir", "std::string", "",
           "gptq: folder for the calibration rows the weight writer reads "
           "(else the module's moe.pass_data_dir)">,
    Option<"latentBasis", "latent-basis", "std::string", "\"keep\"",
           "latent gate/up (moe.latent_product): keep the shared basis B as it is "
           "(keep) or quantize it too (quantize); the factors A are always quantized">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect"];
}

def MoESmoothExperts : Pass<"moe-smooth-experts"> {
  let summary = "EAQuant's smoothing fold: per-channel scales moved from a layer's input "
                "into the input columns of its router and experts";
  let description = [{
    Activation outliers sit in a few hidden channels; dividing channel j of the layer's
    input by s_j and multiplying input column j of every linear map that reads it by s_j
    changes nothing in real arithmetic but moves the outliers into the weights, where
    quantization handles them better (SmoothQuant; EAQuant's aggregation for MoE). For each
    moe.layer, from calibration hidden states (routed through the layer's router in
    float64):
      s_j = max over {router, each routed expert, the shared expert} of
            max|X_j|^alpha / max|W_{:,j}|^(1 - alpha)
    where X is every token for the router and the shared expert and the tokens routed to
    the expert for a routed expert, and W is the router, or the expert's gate and up rows
    together. Experts no calibration token reaches and channels no component measures
    contribute nothing (s_j = 1 when none does). s is written as an inline f32 constant;
    the layer's input becomes `moe.scale_channels(x, 1/s)` (a model-level importer folds
    that into the preceding RMSNorm's weight) and the router, the routed and shared
    experts' gate/up (fused or not) and the shared expert's sigmoid gate become
    `moe.scale_columns(w, s)`, executed where weights are written or evaluated. Down
    projections are untouched. The layer's function gets `moe.report.moe-smooth-experts`
    with the largest and smallest s.
    ```mlir
    %y = moe.layer %x ... router(%wg) experts(gate %w1 up %w3 down %w2)
    // becomes
    %s = arith.constant dense<[...]> : tensor<64xf32>
    %inv = arith.constant dense<[...]> : tensor<64xf32>
    %xs = moe.scale_channels %x, %inv : (tensor<?x64xbf16>, tensor<64xf32>) -> tensor<?x64xbf16>
    %wgs = moe.scale_columns %wg, %s : (tensor<8x64xbf16>, tensor<64xf32>) -> tensor<8x64xbf16>
    ... (the same for %w1 and %w3)
    %y = moe.layer %xs ... router(%wgs) experts(gate %w1s up %w3s down %w2)
    ```
    Smoothing must come before quantization: a layer whose router, gate/up or sigmoid gate
    is already quantized (a moe.dequantize) is an error. Needs the checkpoint (`weights`,
    else the module's moe.weights_dir) and calibration states (`calibration`, else the
    module's moe.calibration).
  }];
  let options = [
    Option<"alpha", "alpha", "double", "0.6",
           "migration strength: the exponent of the activation maximum (0 to 1)">,
    Option<"weights", "weights", "std::string", "",
           "checkpoint folder the module's moe.weight ops read">,
    Option<"calibration", "calibration", "std::string", "",
           "safetensors file of calibration hidden states "
           "(layer<N>.hidden_states or hidden_states, [T, H])">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect", "::mlir::arith::ArithDialect"];
}

def MoEMarkSuperExperts : Pass<"moe-mark-super-experts"> {
  let summary = "mark super experts: max |down-projection output| above a percentile of "
                "every expert's maximum";
  let description = [{
    A few experts produce activation outliers the whole model depends on (Super Experts:
    pruning 3 of 6,144 experts breaks Qwen3-30B-A3B). For every moe.layer and routed
    expert e, the pass runs the calibration tokens routed to e (in float64) and records
    m_{l,e} = max |down-projection output| (with its bias, before the routing weight; 0 for
    an expert no token reaches). Only the layers among the first `layer-fraction` of the
    module's layers (by moe.layer_index; at least one) take part: the threshold is the
    `percentile`-th percentile (linear interpolation between order statistics, as numpy's
    default) of their maxima, and an expert of such a layer is super when m_{l,e} is
    strictly above it. Later layers are left unmarked (their activations are large
    anyway, which is why they are excluded from the threshold).
    ```mlir
    %y = moe.layer %x ... {moe.super_experts = array<i64: 3>}
    ```
    The discardable attribute `moe.super_experts` (sorted indices; absent when none) is
    respected by moe-prune-experts (never pruned) and moe-mixed-precision (highest
    width). Each layer's function gets `moe.report.moe-mark-super-experts` with
    `max_activation` (per expert), `threshold` and `super_experts`. Needs the checkpoint
    and calibration states, from the options or the module's moe.weights_dir and
    moe.calibration.
  }];
  let options = [
    Option<"percentile", "percentile", "double", "99.5",
           "percentile (0 to 100) of the expert maxima above which an expert is super">,
    Option<"layerFraction", "layer-fraction", "double", "0.75",
           "leading fraction (0 to 1] of the layers, by moe.layer_index, that are "
           "considered">,
    Option<"weights", "weights", "std::string", "",
           "checkpoint folder the module's moe.weight ops read">,
    Option<"calibration", "calibration", "std::string", "",
           "safetensors file of calibration hidden states "
           "(layer<N>.hidden_states or hidden_states, [T, H])">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect"];
}

def MoEPruneExperts : Pass<"moe-prune-experts"> {
  let summary = "EASY-EP expert pruning: keep the N highest-scoring experts of each layer";
  let description = [{
    For each moe.layer, from calibration states routed in float64:
      c_{i,t} = g_{i,t} * ||E_i(h_t)||_2      (0 when token t is not routed to expert i)
      s_t     = 1 - cos(h_t, h_t + y_t)      (y_t: the layer's whole output, shared expert
                                              included)
      score_i = sum_t c_{i,t} * s_t
    The `keep` experts with the highest scores survive (ties: the lower index), always
    including the layer's `moe.super_experts`, which count toward `keep`. The router's
    rows, its bias and correction-bias entries and every stacked expert weight and bias
    become a `tensor.concat` of `tensor.extract_slice`s of the kept experts, in ascending
    original order (weights stay references; a quantized weight is sliced after its
    moe.dequantize). `moe.super_experts` is renumbered and `moe.kept_experts` records the
    original index of each remaining expert.
    ```mlir
    %y = moe.layer %x ... router(%wg) experts(gate %w1 up %w3 down %w2)
    // becomes, with keep = 4 and experts 0, 2, 3, 6 kept
    %a = tensor.extract_slice %wg[0, 0] [1, 64] [1, 1] : tensor<8x64xbf16> to tensor<1x64xbf16>
    %b = tensor.extract_slice %wg[2, 0] [2, 64] [1, 1] : tensor<8x64xbf16> to tensor<2x64xbf16>
    %c = tensor.extract_slice %wg[6, 0] [1, 64] [1, 1] : tensor<8x64xbf16> to tensor<1x64xbf16>
    %wgk = tensor.concat dim(0) %a, %b, %c : (...) -> tensor<4x64xbf16>
    ... (the same for %w1, %w3, %w2)
    %y = moe.layer %x ... router(%wgk) experts(gate %w1k up %w3k down %w2k)
        {moe.kept_experts = array<i64: 0, 2, 3, 6>}
    ```
    A token whose selected experts all survive gets exactly the same output when the
    routing weights of the selected experts do not depend on the others' logits: top-k
    renormalized softmax (`normalize = true`, no epsilon), sigmoid scoring, softmax after
    top-k. Without renormalization (softmax over all experts, `normalize = false`) the
    removed experts leave the softmax denominator, which scales such a token's routed
    output by Z_all / Z_kept. Errors: `keep` below the layer's k or above its expert
    count, more super experts than `keep`, group-limited routing (n_group > 1: removing
    experts would break the groups), layers already decomposed.
    Each layer's function gets `moe.report.moe-prune-experts` with `experts_before`,
    `experts_after`, `kept` and `scores`.
  }];
  let options = [
    Option<"keep", "keep", "int64_t", "0", "experts kept in every layer (required)">,
    Option<"weights", "weights", "std::string", "",
           "checkpoint folder the module's moe.weight ops read">,
    Option<"calibration", "calibration", "std::string", "",
           "safetensors file of calibration hidden states "
           "(layer<N>.hidden_states or hidden_states, [T, H])">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect", "::mlir::tensor::TensorDialect"];
}

def MoEPruneMicroExperts : Pass<"moe-prune-micro-experts"> {
  let summary = "micro-expert pruning (CAMERA-P, or HEAPr with gradients): experts of "
                "different widths";
  let description = [{
    A micro-expert is one intermediate channel i of a routed expert e: a gate row, an up
    row and a down column. For each moe.layer, over the calibration tokens t routed to e
    (routing weight w_t; 1 when the layer scales expert inputs) with h_i(t) the down
    projection's input, every (e, i) gets a score:
      CAMERA-P: ||W_down[:, i]||^2 * ((1 - beta) * sum_t phi_i(t)^2 + beta * max_t phi_i(t)^2),
                phi_i(t) = w_t * h_i(t)
      HEAPr (`gradients` = FILE with `layer<N>.grad_output` or `grad_output` [T, H], the
             loss gradient at the layer's output per calibration token g_t):
                mean_t h_i(t)^2 * W_down[:, i]^T M_e W_down[:, i],
                M_e = mean_t (w_t g_t)(w_t g_t)^T   (the gradient at expert e's output)
    The lowest `fraction` of all (expert, channel) pairs of the layer are removed (ties: the
    lower expert, then the lower channel, first), so experts end up with different widths;
    `moe.super_experts` keep every channel. The stacked expert weights and biases keep a
    common width W' (the widest expert's): expert e's kept channels first, in ascending
    order, then zeros, as a `tensor.concat` of `tensor.extract_slice`s and zero constants
    (weights stay references). The layer gets `expert_widths` (one entry per expert), which
    code generation uses to skip the removed channels. Channels a previous pruning removed
    stay removed. A channel whose down column is zero scores 0 under both scores and ranks
    last; removing it changes nothing. `width-multiple` rounds W' up (more zero channels)
    so that a later moe-quantize-experts' group size divides it; the widths, and what
    code generation computes and the CPU stores, do not change.
    Errors: `fraction` outside [0, 1), `beta` outside [0, 1], `width-multiple` below 1,
    layers already decomposed, super experts out of range, a gradients tensor of the wrong
    shape.
    Each layer's function gets `moe.report.moe-prune-micro-experts` with `score`,
    `channels_before`, `channels_after`, `width` (W'), `widths` and
    `parameter_reduction` (the fraction of routed-expert weight and bias entries removed).
  }];
  let options = [
    Option<"fraction", "fraction", "double", "0.25",
           "fraction of a layer's (expert, channel) pairs to remove">,
    Option<"beta", "beta", "double", "1.0",
           "CAMERA-P's weight of the max over the sum of squared contributions">,
    Option<"gradients", "gradients", "std::string", "",
           "safetensors file of output gradients (layer<N>.grad_output or "
           "grad_output, [T, H]): score with HEAPr instead of CAMERA-P">,
    Option<"weights", "weights", "std::string", "",
           "checkpoint folder the module's moe.weight ops read">,
    Option<"calibration", "calibration", "std::string", "",
           "safetensors file of calibration hidden states "
           "(layer<N>.hidden_states or hidden_states, [T, H])">,
    Option<"widthMultiple", "width-multiple", "int64_t", "1",
           "round the stored width W' up to a multiple of this (zero channels "
           "after every expert's kept ones), e.g. the group size of a later "
           "moe-quantize-experts, which must divide W'">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect", "::mlir::tensor::TensorDialect",
                           "::mlir::arith::ArithDialect"];
}

def MoEMixedPrecision : Pass<"moe-mixed-precision"> {
  let summary = "MC#-style per-expert bit widths under a mean-bits budget, solved exactly";
  let description = [{
    For each moe.layer and routed expert e, and each width b of `choices`:
      L_{e,b} = ||E_e(X_e) - E_e^b(X_e)||_F / ||E_e(X_e)||_F
    where X_e are the calibration tokens routed to e and E_e^b is the expert with its
    gate, up and down projections quantized to b bits (round to nearest, symmetric,
    #moe.int_group with `group-size`). With f_e the fraction of tokens routed to e and
    w_e their mean routing weight, the widths minimise
      sum_e f_e * w_e^1.5 * L_{e,b_e}   subject to   mean over the layer's expert weights
                                                     of b_e <= budget-bits
    exactly (multiple-choice knapsack, lib/Compress/BitAllocation.h). Super experts
    (`moe.super_experts`) are pinned to the highest width of `choices` and their bits are
    charged to the budget first. Each stacked routed weight becomes a `tensor.concat`,
    over runs of consecutive experts sharing a width, of
    `moe.dequantize(moe.quantize(tensor.extract_slice(w)))` at that width (a single run
    needs no concat or slice). Shared experts and routers are untouched.
    ```mlir
    %q, %s = moe.quantize #moe.int_group<bits = 8, group_size = 32> %w1_0_2 ...
    %d8 = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %q, %s ...
    %q4, %s4 = moe.quantize #moe.int_group<bits = 4, group_size = 32> %w1_2_8 ...
    %d4 = moe.dequantize #moe.int_group<bits = 4, group_size = 32> %q4, %s4 ...
    %w1m = tensor.concat dim(0) %d8, %d4 : (...) -> tensor<8x32x64xbf16>
    ```
    Errors: widths other than 8 and 4, a budget below the narrowest width (after the
    pinned super experts), a group size not dividing an input dimension, weights already
    quantized (a moe.dequantize). Each layer's function gets
    `moe.report.moe-mixed-precision` with `bits` (per expert), `objective`,
    `bytes_before` and `bytes_after` (quantized values plus f32 scales).
  }];
  let options = [
    Option<"budgetBits", "budget-bits", "double", "6.0",
           "mean bits per routed-expert weight the layer may spend">,
    ListOption<"choices", "choices", "int64_t", "candidate bit widths, 8 and/or 4 (default: 8,4)">,
    Option<"groupSize", "group-size", "int64_t", "128",
           "input columns sharing one scale">,
    Option<"weights", "weights", "std::string", "",
           "checkpoint folder the module's moe.weight ops read">,
    Option<"calibration", "calibration", "std::string", "",
           "safetensors file of calibration hidden states "
           "(layer<N>.hidden_states or hidden_states, [T, H])">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect", "::mlir::tensor::TensorDialect"];
}

def MoELatentFactorize : Pass<"moe-latent-factorize"> {
  let summary = "MoLE latent experts: W_e ~ A_e B with B shared by a group of experts";
  let description = [{
    Each chosen projection of the routed experts (moe.layer, moe.experts) becomes
    `moe.latent_product(moe.factorize(w))`: per group of `group` consecutive experts, the
    truncated SVD of the stacked weights at rank `rank` gives one shared basis B [R, in] and
    a factor A_e [out, R] per expert, so the layer can compute x B^T once per token and
    group, then small per-expert matmuls. The factorization is recorded, not performed:
    the weight writer and the reference evaluator execute it, so `moe-run` on the result
    measures the error the compiled model has. Without whitening the squared relative error
    equals the discarded singular energy fraction (Eckart-Young). With `whiten` the
    projection's input covariance from the calibration states (referenced by a moe.weight
    on the calibration file, by absolute path) weights the error instead; only gate and up
    read the hidden states, so `down` cannot be whitened.
    ```mlir
    %a, %b = moe.factorize %w1 rank(16) group(8)
        : (tensor<8x32x64xbf16>) -> (tensor<8x32x16xf32>, tensor<1x16x64xf32>)
    %w1f = moe.latent_product %a, %b
        : (tensor<8x32x16xf32>, tensor<1x16x64xf32>) -> tensor<8x32x64xf32>
    ```
    Gate and up products are f32, the factors' type (the CPU code computes x B^T and then
    A_e, never the rounded product); down's product keeps the weight's type.
    A gate fused into up (glu = halves/interleaved) is factorized as part of up. Errors: a
    rank outside [1, min(group * out, in)], a group not dividing the number of experts, an
    unknown projection, whitening without calibration or of down. Each layer's function
    gets `moe.report.moe-latent-factorize` with `rank`, `group`, `params_before`,
    `params_after` (A and B), `flops_per_token_before` and `flops_per_token_after` (gate/up:
    x B^T for at most min(k, groups) groups + k per-expert A products; down: both per
    routed expert), and when the weights are reachable (`weights` or moe-compile)
    `relative_error` = ||S - A B||_F / ||S||_F over all factorized stacks S and
    `discarded_energy_fraction` (unwhitened: relative_error^2 equals it; whitened:
    `whitened_relative_error`^2 does), computed in float64 before the factors are rounded
    to f32.
  }];
  let options = [
    Option<"rank", "rank", "int64_t", "0", "rank R of the shared basis (required)">,
    Option<"group", "group", "int64_t", "0",
           "consecutive experts sharing one basis; 0: all experts of the layer">,
    ListOption<"projections", "projections", "std::string",
               "projections to factorize: gate, up, down (default: gate,up)">,
    Option<"whiten", "whiten", "bool", "false",
           "weight the error by the calibration input covariance">,
    Option<"weights", "weights", "std::string", "",
           "checkpoint folder the module's moe.weight ops read (for the report's errors)">,
    Option<"calibration", "calibration", "std::string", "",
           "safetensors file of calibration hidden states "
           "(layer<N>.hidden_states or hidden_states, [T, H]); needed with whiten">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect"];
}

def MoEQuantizeRouter : Pass<"moe-quantize-router"> {
  let summary = "per-expert-row integer router weights, clipping chosen by EAQuant's KL search";
  let description = [{
    Each moe.layer's router weight [E, H] becomes moe.quantize/moe.dequantize with
    #moe.int_group<bits, group_size = H> (one symmetric scale per expert row) and a clipping
    ratio r: scale = r * max|w| / qmax, values clamped. With `clip-search` (EAQuant's router
    alignment), r is the ratio on the grid 0.35, 0.3565, ..., 1 (101 steps) minimising the
    mean over calibration tokens of KL(p_fp || p_q) restricted to the full-precision top-k
    experts (the other experts pooled as one outcome, so it is a true KL), p the softmax of
    the router logits (plus router bias); without it r = 1.
    The function gets `moe.report.moe-quantize-router` with r, the KL at r = 1 and at r,
    and the top-k agreement (fraction of tokens the layer routes to the same experts, by
    its own routing) at r = 1 and at r.
    ```mlir
    %r = moe.weight "router" : tensor<8x64xbf16>
    // becomes
    %q, %s = moe.quantize #moe.int_group<bits = 8, group_size = 64> %r clip(0.87)
        : (tensor<8x64xbf16>) -> (tensor<8x64xi8>, tensor<8x1xf32>)
    %rq = moe.dequantize #moe.int_group<bits = 8, group_size = 64> %q, %s
        : (tensor<8x64xi8>, tensor<8x1xf32>) -> tensor<8x64xbf16>
    ```
    A router already stored quantized is left alone. Needs the checkpoint (`weights`, else
    the module's moe.weights_dir) and calibration states (`calibration`, else the module's
    moe.calibration).
  }];
  let options = [
    Option<"bits", "bits", "int64_t", "8", "bits per router weight: 8 or 4">,
    Option<"clipSearch", "clip-search", "bool", "true",
           "choose the clipping ratio by EAQuant's KL search (else 1)">,
    Option<"weights", "weights", "std::string", "",
           "checkpoint folder the module's moe.weight ops read">,
    Option<"calibration", "calibration", "std::string", "",
           "safetensors file of calibration hidden states">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect"];
}

#endif // MOE_PASSES_TD
