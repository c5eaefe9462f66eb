// Routing modes and feed-forward shapes no Hugging Face family uses, for the CPU code
// generator (routing-modes.test). Hidden 48 (not a multiple of 16), widths 40 and 24 (not
// multiples of the panel width), so every tail path runs.

// Dynamic k: top-p 0.5, at most 3 experts; ungated GELU MLP with biases.
func.func @layer_0(%x: tensor<?x48xf32>) -> tensor<?x48xf32> {
  %wg = moe.weight "l0.router" : tensor<8x48xf32>
  %up = moe.weight "l0.up" : tensor<8x40x48xf32>
  %ub = moe.weight "l0.up_bias" : tensor<8x40xf32>
  %down = moe.weight "l0.down" : tensor<8x48x40xf32>
  %db = moe.weight "l0.down_bias" : tensor<8x48xf32>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 3, selection = top_p, top_p = 0.5>
      ffn #moe.ffn<activation = gelu, glu = none>
      router(%wg) experts(up %up down %down up_bias %ub down_bias %db)
      : (tensor<?x48xf32>, tensor<8x48xf32>, tensor<8x40x48xf32>, tensor<8x48x40xf32>,
         tensor<8x40xf32>, tensor<8x48xf32>) -> tensor<?x48xf32>
  return %y : tensor<?x48xf32>
}

// Capacity-limited dispatch: late tokens of a busy expert are dropped.
func.func @layer_1(%x: tensor<?x48xf32>) -> tensor<?x48xf32> {
  %wg = moe.weight "l1.router" : tensor<4x48xf32>
  %g = moe.weight "l1.gate" : tensor<4x24x48xbf16>
  %u = moe.weight "l1.up" : tensor<4x24x48xbf16>
  %d = moe.weight "l1.down" : tensor<4x48x24xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true>
      ffn #moe.ffn<activation = relu>
      router(%wg) experts(gate %g up %u down %d) {capacity_factor = 0.75 : f64}
      : (tensor<?x48xf32>, tensor<4x48xf32>, tensor<4x24x48xbf16>, tensor<4x24x48xbf16>,
         tensor<4x48x24xbf16>) -> tensor<?x48xf32>
  return %y : tensor<?x48xf32>
}

// Sigmoid with a correction bias, group-limited by max, tanh-GELU GLU in interleaved
// layout, and a gated shared expert.
func.func @layer_2(%x: tensor<?x48xf32>) -> tensor<?x48xf32> {
  %wg = moe.weight "l2.router" : tensor<12x48xf32>
  %cb = moe.weight "l2.bias" : tensor<12xf32>
  %gu = moe.weight "l2.gate_up" : tensor<12x80x48xf32>
  %d = moe.weight "l2.down" : tensor<12x48x40xf32>
  %sg = moe.weight "l2.shared_gate" : tensor<24x48xf32>
  %su = moe.weight "l2.shared_up" : tensor<24x48xf32>
  %sd = moe.weight "l2.shared_down" : tensor<48x24xf32>
  %sgate = moe.weight "l2.shared_sigmoid" : tensor<1x48xf32>
  %y = moe.layer %x
      routing #moe.routing<scoring = sigmoid, k = 3, selection = group_limited, n_group = 3,
                           topk_group = 2, normalize = true, scaling = 1.5>
      ffn #moe.ffn<activation = gelu_tanh, glu = interleaved> shared_ffn #moe.ffn<activation = silu>
      router(%wg correction_bias %cb) experts(up %gu down %d)
      shared(gate %sg up %su down %sd sigmoid_gate %sgate)
      : (tensor<?x48xf32>, tensor<12x48xf32>, tensor<12xf32>, tensor<12x80x48xf32>,
         tensor<12x48x40xf32>, tensor<24x48xf32>, tensor<24x48xf32>, tensor<48x24xf32>,
         tensor<1x48xf32>) -> tensor<?x48xf32>
  return %y : tensor<?x48xf32>
}

// int_group-quantized (asymmetric 4-bit) experts, dequantized at compile time.
func.func @layer_3(%x: tensor<?x48xf32>) -> tensor<?x48xf32> {
  %wg = moe.weight "l3.router" : tensor<4x48xf32>
  %gq = moe.weight "l3.gate.q" : tensor<4x24x24xui8>
  %gs = moe.weight "l3.gate.s" : tensor<4x24x3xf32>
  %gz = moe.weight "l3.gate.z" : tensor<4x24x3xf32>
  %u = moe.weight "l3.up" : tensor<4x24x48xf32>
  %d = moe.weight "l3.down" : tensor<4x48x24xf32>
  %g = moe.dequantize #moe.int_group<bits = 4, group_size = 16, symmetric = false> %gq, %gs, %gz
      : (tensor<4x24x24xui8>, tensor<4x24x3xf32>, tensor<4x24x3xf32>) -> tensor<4x24x48xf32>
  %y = moe.layer %x routing #moe.routing<scoring = softmax_after_topk, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x48xf32>, tensor<4x48xf32>, tensor<4x24x48xf32>, tensor<4x24x48xf32>,
         tensor<4x48x24xf32>) -> tensor<?x48xf32>
  return %y : tensor<?x48xf32>
}
