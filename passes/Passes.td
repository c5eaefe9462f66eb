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

#endif // MOE_PASSES_TD
