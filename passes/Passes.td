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
    moe.shared_expert) becomes its quantized storage and the dequantization back to its type;
    router weights keep their precision. The quantization is recorded, not performed: the
    weight writer (moe-compile) and the reference evaluator execute moe.quantize, so
    `moe-run` on the result measures exactly the error the compiled model will have.
    Weights that are already stored quantized (a moe.dequantize) are left alone.
    ```mlir
    %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %w1 up %w3 down %w2
    // becomes, with bits=8 group-size=32
    %q, %s = moe.quantize #moe.int_group<bits = 8, group_size = 32, symmetric = true> %w1
        : (tensor<8x32x64xbf16>) -> (tensor<8x32x64xi8>, tensor<8x32x2xf32>)
    %w1q = moe.dequantize #moe.int_group<bits = 8, group_size = 32, symmetric = true> %q, %s
        : (tensor<8x32x64xi8>, tensor<8x32x2xf32>) -> tensor<8x32x64xbf16>
    ... (the same for %w3 and %w2)
    %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %w1q up %w3q down %w2q
    ```
    A group size that does not divide a weight's input dimension is an error at the op.
  }];
  let options = [
    Option<"bits", "bits", "int64_t", "8", "bits per weight: 8 or 4">,
    Option<"groupSize", "group-size", "int64_t", "128",
           "input columns sharing one scale (must divide every quantized weight's input "
           "dimension)">,
    Option<"symmetric", "symmetric", "bool", "true",
           "symmetric (scale only) or asymmetric (scale and zero point) levels">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect"];
}

#endif // MOE_PASSES_TD
