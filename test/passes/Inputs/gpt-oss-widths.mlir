// GPT-OSS layer 0 of the golden checkpoint (fused interleaved gate/up, biases, clamped
// SwiGLU, intermediate width 64) with hand-set expert widths: the weights past each width
// are the checkpoint's own non-zero values, so only code that really skips those channels
// matches the evaluator. Widths cover none, part of one and both 32-column panels.
func.func @layer_0(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> attributes {moe.layer_index = 0 : i64} {
  %r = moe.weight "model.layers.0.mlp.router.weight" : tensor<8x64xbf16>
  %rb = moe.weight "model.layers.0.mlp.router.bias" : tensor<8xbf16>
  %gu = moe.weight "model.layers.0.mlp.experts.gate_up_proj" permutation [0, 2, 1] : tensor<8x128x64xbf16>
  %d = moe.weight "model.layers.0.mlp.experts.down_proj" permutation [0, 2, 1] : tensor<8x64x64xbf16>
  %gub = moe.weight "model.layers.0.mlp.experts.gate_up_proj_bias" : tensor<8x128xbf16>
  %db = moe.weight "model.layers.0.mlp.experts.down_proj_bias" : tensor<8x64xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax_after_topk, k = 4>
      ffn #moe.ffn<activation = clamped_swiglu, glu = interleaved, alpha = 1.702, limit = 7.0>
      router(%r bias %rb) experts(up %gu down %d up_bias %gub down_bias %db)
      {expert_widths = array<i64: 0, 64, 31, 33, 1, 32, 64, 10>}
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8xbf16>, tensor<8x128x64xbf16>,
         tensor<8x64x64xbf16>, tensor<8x128xbf16>, tensor<8x64xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
