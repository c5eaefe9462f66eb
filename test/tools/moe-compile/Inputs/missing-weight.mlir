func.func @layer_0(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %wg = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x64xbf16>
  %b = moe.weight "model.layers.0.block_sparse_moe.gate.bias" : tensor<8xbf16>
  %w1 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight" experts(8) : tensor<8x32x64xbf16>
  %w3 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight" experts(8) : tensor<8x32x64xbf16>
  %w2 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight" experts(8) : tensor<8x64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true>
      ffn #moe.ffn<activation = silu>
      router(%wg bias %b) experts(gate %w1 up %w3 down %w2)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8xbf16>, tensor<8x32x64xbf16>,
         tensor<8x32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
