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

#endif // MOE_PASSES_TD
