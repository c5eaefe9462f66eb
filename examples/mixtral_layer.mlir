// One Mixtral-style MoE layer (hidden 1024, 8 experts of width 2816, top-2), written by hand
// in the moe dialect. Weights are references into a safetensors checkpoint: nothing is
// loaded to compile or inspect this file.
//
//   moe-opt examples/mixtral_layer.mlir --moe-explicit     # verify and decompose
func.func @layer_0(%hidden_states: tensor<?x1024xbf16>) -> tensor<?x1024xbf16> {
  %router = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x1024xbf16>
  %w1 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight" experts(8)
      : tensor<8x2816x1024xbf16>
  %w3 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight" experts(8)
      : tensor<8x2816x1024xbf16>
  %w2 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight" experts(8)
      : tensor<8x1024x2816xbf16>
  // softmax over all 8 experts in f32, top-2, renormalized; out = sum w * w2(silu(w1 x) * w3 x)
  %out = moe.layer %hidden_states
      routing #moe.routing<scoring = softmax, k = 2, normalize = true, logits_type = f32>
      ffn #moe.ffn<activation = silu>
      router(%router)
      experts(gate %w1 up %w3 down %w2)
      : (tensor<?x1024xbf16>, tensor<8x1024xbf16>, tensor<8x2816x1024xbf16>,
         tensor<8x2816x1024xbf16>, tensor<8x1024x2816xbf16>) -> tensor<?x1024xbf16>
  return %out : tensor<?x1024xbf16>
}
