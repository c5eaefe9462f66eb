// RUN: moe-opt %s --moe-prune-experts="keep=6 weights=%golden/gpt_oss_bf16/ckpt calibration=%golden/gpt_oss_bf16/T64/input.safetensors" | FileCheck %s

// GPT-OSS layer 0 of the golden checkpoint (router bias, fused gate/up, expert biases):
// EASY-EP on the golden's 64 input tokens keeps experts 0, 3, 4, 5, 6, 7. Every operand with
// an expert dimension (router rows and bias, gate_up, down and their biases) becomes the
// concat of two slices, [0, 1) and [3, 8), in ascending original order; the permuted
// weight references stay as they are (the slice is taken of their logical value).
// CHECK-LABEL: func.func @layer_0
// CHECK-SAME:    "moe.report.moe-prune-experts" = {experts_after = 6 : i64, experts_before = 8 : i64, kept = array<i64: 0, 3, 4, 5, 6, 7>, scores = array<f64: {{.*}}>}
// CHECK:         %[[R:.*]] = moe.weight "model.layers.0.mlp.router.weight"
// CHECK:         %[[RB:.*]] = moe.weight "model.layers.0.mlp.router.bias"
// CHECK:         %[[GU:.*]] = moe.weight "model.layers.0.mlp.experts.gate_up_proj" permutation [0, 2, 1]
// CHECK:         %[[D:.*]] = moe.weight "model.layers.0.mlp.experts.down_proj" permutation [0, 2, 1]
// CHECK:         %[[GUB:.*]] = moe.weight "model.layers.0.mlp.experts.gate_up_proj_bias"
// CHECK:         %[[DB:.*]] = moe.weight "model.layers.0.mlp.experts.down_proj_bias"
// CHECK:         %[[R0:.*]] = tensor.extract_slice %[[R]][0, 0] [1, 64] [1, 1] : tensor<8x64xbf16> to tensor<1x64xbf16>
// CHECK:         %[[R3:.*]] = tensor.extract_slice %[[R]][3, 0] [5, 64] [1, 1] : tensor<8x64xbf16> to tensor<5x64xbf16>
// CHECK:         %[[RK:.*]] = tensor.concat dim(0) %[[R0]], %[[R3]] : (tensor<1x64xbf16>, tensor<5x64xbf16>) -> tensor<6x64xbf16>
// CHECK:         tensor.extract_slice %[[RB]][0] [1] [1] : tensor<8xbf16> to tensor<1xbf16>
// CHECK:         tensor.extract_slice %[[RB]][3] [5] [1] : tensor<8xbf16> to tensor<5xbf16>
// CHECK:         %[[RBK:.*]] = tensor.concat dim(0) {{.*}} -> tensor<6xbf16>
// CHECK:         tensor.extract_slice %[[GU]][0, 0, 0] [1, 128, 64] [1, 1, 1]
// CHECK:         tensor.extract_slice %[[GU]][3, 0, 0] [5, 128, 64] [1, 1, 1]
// CHECK:         %[[GUK:.*]] = tensor.concat dim(0) {{.*}} -> tensor<6x128x64xbf16>
// CHECK:         %[[DK:.*]] = tensor.concat dim(0) {{.*}} -> tensor<6x64x64xbf16>
// CHECK:         %[[GUBK:.*]] = tensor.concat dim(0) {{.*}} -> tensor<6x128xbf16>
// CHECK:         %[[DBK:.*]] = tensor.concat dim(0) {{.*}} -> tensor<6x64xbf16>
// CHECK:         moe.layer %{{.*}} router(%[[RK]] bias %[[RBK]]) experts( up %[[GUK]] down %[[DK]] up_bias %[[GUBK]] down_bias %[[DBK]]) {moe.kept_experts = array<i64: 0, 3, 4, 5, 6, 7>}
// CHECK-SAME:    (tensor<?x64xbf16>, tensor<6x64xbf16>, tensor<6xbf16>, tensor<6x128x64xbf16>, tensor<6x64x64xbf16>, tensor<6x128xbf16>, tensor<6x64xbf16>) -> tensor<?x64xbf16>
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
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8xbf16>, tensor<8x128x64xbf16>,
         tensor<8x64x64xbf16>, tensor<8x128xbf16>, tensor<8x64xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

