// Every routing kind of the moe dialect, one function per model family, at toy sizes
// (hidden 64, expert width 32). Weights are references; no file is read to verify,
// decompose or print these.
//
//   moe-opt examples/routing_kinds.mlir                  # verify and print
//   moe-opt examples/routing_kinds.mlir --moe-explicit   # decompose every layer

// Mixtral / OLMoE / Qwen3-MoE: softmax over all experts, top-k, renormalized.
func.func @mixtral(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %wg = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x64xbf16>
  %w1 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight" experts(8) : tensor<8x32x64xbf16>
  %w3 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight" experts(8) : tensor<8x32x64xbf16>
  %w2 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight" experts(8) : tensor<8x64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %w1 up %w3 down %w2)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// Qwen2-MoE: softmax top-k without renormalization, plus a shared expert whose output is
// scaled by a per-token sigmoid gate.
func.func @qwen2_moe(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %wg = moe.weight "model.layers.0.mlp.gate.weight" : tensor<8x64xbf16>
  %g = moe.weight "model.layers.0.mlp.experts.{e}.gate_proj.weight" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "model.layers.0.mlp.experts.{e}.up_proj.weight" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "model.layers.0.mlp.experts.{e}.down_proj.weight" experts(8) : tensor<8x64x32xbf16>
  %sg = moe.weight "model.layers.0.mlp.shared_expert.gate_proj.weight" : tensor<96x64xbf16>
  %su = moe.weight "model.layers.0.mlp.shared_expert.up_proj.weight" : tensor<96x64xbf16>
  %sd = moe.weight "model.layers.0.mlp.shared_expert.down_proj.weight" : tensor<64x96xbf16>
  %sgate = moe.weight "model.layers.0.mlp.shared_expert_gate.weight" : tensor<1x64xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 4, logits_type = f32>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      shared(gate %sg up %su down %sd sigmoid_gate %sgate)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>,
         tensor<1x64xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// DeepSeek-V2: softmax, group-limited greedy (group score = max), routed scaling, shared
// experts stored as one wider expert.
func.func @deepseek_v2(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %wg = moe.weight "model.layers.1.mlp.gate.weight" : tensor<16x64xbf16>
  %g = moe.weight "model.layers.1.mlp.experts.{e}.gate_proj.weight" experts(16) : tensor<16x32x64xbf16>
  %u = moe.weight "model.layers.1.mlp.experts.{e}.up_proj.weight" experts(16) : tensor<16x32x64xbf16>
  %d = moe.weight "model.layers.1.mlp.experts.{e}.down_proj.weight" experts(16) : tensor<16x64x32xbf16>
  %sg = moe.weight "model.layers.1.mlp.shared_experts.gate_proj.weight" : tensor<64x64xbf16>
  %su = moe.weight "model.layers.1.mlp.shared_experts.up_proj.weight" : tensor<64x64xbf16>
  %sd = moe.weight "model.layers.1.mlp.shared_experts.down_proj.weight" : tensor<64x64xbf16>
  %y = moe.layer %x
      routing #moe.routing<scoring = softmax, k = 4, selection = group_limited, n_group = 4,
                           topk_group = 2, scaling = 16.0, logits_type = f32>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16x32x64xbf16>, tensor<16x32x64xbf16>,
         tensor<16x64x32xbf16>, tensor<64x64xbf16>, tensor<64x64xbf16>, tensor<64x64xbf16>)
      -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// DeepSeek-V3: sigmoid scores; a correction bias that only chooses; groups scored by the
// sum of their top-2; renormalized (+1e-20) and scaled; FP8 expert weights with 32x32
// block scales, dequantized where used.
func.func @deepseek_v3(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %wg = moe.weight "model.layers.1.mlp.gate.weight" : tensor<16x64xbf16>
  %cb = moe.weight "model.layers.1.mlp.gate.e_score_correction_bias" : tensor<16xf32>
  %gq = moe.weight "model.layers.1.mlp.experts.{e}.gate_proj.weight" experts(16) : tensor<16x32x64xf8E4M3FN>
  %gs = moe.weight "model.layers.1.mlp.experts.{e}.gate_proj.weight_scale_inv" experts(16) : tensor<16x1x2xf32>
  %uq = moe.weight "model.layers.1.mlp.experts.{e}.up_proj.weight" experts(16) : tensor<16x32x64xf8E4M3FN>
  %us = moe.weight "model.layers.1.mlp.experts.{e}.up_proj.weight_scale_inv" experts(16) : tensor<16x1x2xf32>
  %dq = moe.weight "model.layers.1.mlp.experts.{e}.down_proj.weight" experts(16) : tensor<16x64x32xf8E4M3FN>
  %ds = moe.weight "model.layers.1.mlp.experts.{e}.down_proj.weight_scale_inv" experts(16) : tensor<16x2x1xf32>
  %g = moe.dequantize #moe.fp8_block<32, 32> %gq, %gs
      : (tensor<16x32x64xf8E4M3FN>, tensor<16x1x2xf32>) -> tensor<16x32x64xbf16>
  %u = moe.dequantize #moe.fp8_block<32, 32> %uq, %us
      : (tensor<16x32x64xf8E4M3FN>, tensor<16x1x2xf32>) -> tensor<16x32x64xbf16>
  %d = moe.dequantize #moe.fp8_block<32, 32> %dq, %ds
      : (tensor<16x64x32xf8E4M3FN>, tensor<16x2x1xf32>) -> tensor<16x64x32xbf16>
  %sg = moe.weight "model.layers.1.mlp.shared_experts.gate_proj.weight" : tensor<32x64xbf16>
  %su = moe.weight "model.layers.1.mlp.shared_experts.up_proj.weight" : tensor<32x64xbf16>
  %sd = moe.weight "model.layers.1.mlp.shared_experts.down_proj.weight" : tensor<64x32xbf16>
  %y = moe.layer %x
      routing #moe.routing<scoring = sigmoid, k = 4, selection = group_limited, normalize = true,
                           norm_epsilon = 1.0e-20, scaling = 2.5, n_group = 4, topk_group = 2,
                           group_score = top2_sum, logits_type = f32>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg correction_bias %cb) experts(gate %g up %u down %d)
      shared(gate %sg up %su down %sd)
      : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xf32>, tensor<16x32x64xbf16>,
         tensor<16x32x64xbf16>, tensor<16x64x32xbf16>, tensor<32x64xbf16>, tensor<32x64xbf16>,
         tensor<64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// PhiMoE: sparsemixer top-2 with router_jitter_noise as epsilon; logits stay in bf16.
func.func @phimoe(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %wg = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x64xbf16>
  %w1 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight" experts(8) : tensor<8x32x64xbf16>
  %w3 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight" experts(8) : tensor<8x32x64xbf16>
  %w2 = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight" experts(8) : tensor<8x64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = sparsemixer, k = 2, epsilon = 0.01>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %w1 up %w3 down %w2)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// GPT-OSS: router with bias, softmax over the top-k logits; MXFP4 experts with biases and
// the clamped SwiGLU over interleaved gate/up rows.
func.func @gpt_oss(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %wg = moe.weight "model.layers.0.mlp.router.weight" : tensor<8x64xbf16>
  %bg = moe.weight "model.layers.0.mlp.router.bias" : tensor<8xbf16>
  %gub = moe.weight "model.layers.0.mlp.experts.gate_up_proj_blocks" : tensor<8x64x2x16xui8>
  %gus = moe.weight "model.layers.0.mlp.experts.gate_up_proj_scales" : tensor<8x64x2xui8>
  %gu_bias = moe.weight "model.layers.0.mlp.experts.gate_up_proj_bias" : tensor<8x64xbf16>
  %db = moe.weight "model.layers.0.mlp.experts.down_proj_blocks" : tensor<8x64x1x16xui8>
  %ds = moe.weight "model.layers.0.mlp.experts.down_proj_scales" : tensor<8x64x1xui8>
  %d_bias = moe.weight "model.layers.0.mlp.experts.down_proj_bias" : tensor<8x64xbf16>
  %gu = moe.dequantize #moe.mxfp4 %gub, %gus
      : (tensor<8x64x2x16xui8>, tensor<8x64x2xui8>) -> tensor<8x64x64xbf16>
  %d = moe.dequantize #moe.mxfp4 %db, %ds
      : (tensor<8x64x1x16xui8>, tensor<8x64x1xui8>) -> tensor<8x64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax_after_topk, k = 4>
      ffn #moe.ffn<activation = clamped_swiglu, glu = interleaved, alpha = 1.702, limit = 7.0>
      router(%wg bias %bg) experts(up %gu down %d up_bias %gu_bias down_bias %d_bias)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8xbf16>, tensor<8x64x64xbf16>,
         tensor<8x64x32xbf16>, tensor<8x64xbf16>, tensor<8x64xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// Granite-MoE: top-k on the f32 logits, softmax over the chosen; gate and up fused in
// halves (input_linear).
func.func @granite_moe(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %wg = moe.weight "model.layers.0.block_sparse_moe.router.layer.weight" : tensor<8x64xbf16>
  %wi = moe.weight "model.layers.0.block_sparse_moe.input_linear.weight" : tensor<8x64x64xbf16>
  %wo = moe.weight "model.layers.0.block_sparse_moe.output_linear.weight" : tensor<8x64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax_after_topk, k = 2, logits_type = f32>
      ffn #moe.ffn<activation = silu, glu = halves>
      router(%wg) experts(up %wi down %wo)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x64x64xbf16>, tensor<8x64x32xbf16>)
      -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// Llama-4: top-k of the logits, sigmoid of each chosen one scales the expert's input; the
// stored expert weights are [E, in, out] and read transposed; a shared expert.
func.func @llama4(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %wg = moe.weight "language_model.model.layers.0.feed_forward.router.weight" : tensor<8x64xbf16>
  %gu = moe.weight "language_model.model.layers.0.feed_forward.experts.gate_up_proj"
      permutation [0, 2, 1] : tensor<8x64x64xbf16>
  %d = moe.weight "language_model.model.layers.0.feed_forward.experts.down_proj"
      permutation [0, 2, 1] : tensor<8x64x32xbf16>
  %sg = moe.weight "language_model.model.layers.0.feed_forward.shared_expert.gate_proj.weight" : tensor<32x64xbf16>
  %su = moe.weight "language_model.model.layers.0.feed_forward.shared_expert.up_proj.weight" : tensor<32x64xbf16>
  %sd = moe.weight "language_model.model.layers.0.feed_forward.shared_expert.down_proj.weight" : tensor<64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = sigmoid_after_topk, k = 1, logits_type = f32>
      ffn #moe.ffn<activation = silu, glu = halves> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(up %gu down %d) shared(gate %sg up %su down %sd)
      {weights_scale_input}
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x64x64xbf16>, tensor<8x64x32xbf16>,
         tensor<32x64xbf16>, tensor<32x64xbf16>, tensor<64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// Dynamic k ("harder tasks need more experts"): the smallest prefix of the sorted softmax
// whose mass reaches 0.4, at most 4 experts; unused slots hold id -1 and weight 0.
func.func @top_p(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %wg = moe.weight "router.weight" : tensor<8x64xf32>
  %up = moe.weight "experts.up" : tensor<8x32x64xf32>
  %down = moe.weight "experts.down" : tensor<8x64x32xf32>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 4, selection = top_p, top_p = 0.4>
      ffn #moe.ffn<activation = gelu, glu = none>
      router(%wg) experts(up %up down %down)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>)
      -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// Capacity-limited dispatch: each expert keeps at most ceil(1.25 * T * k / E) assignments.
func.func @capacity(%x: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %wg = moe.weight "router.weight" : tensor<8x64xf32>
  %g = moe.weight "experts.gate" : tensor<8x32x64xf32>
  %u = moe.weight "experts.up" : tensor<8x32x64xf32>
  %d = moe.weight "experts.down" : tensor<8x64x32xf32>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) {capacity_factor = 1.25 : f64}
      : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}
