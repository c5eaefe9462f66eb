// Every routing kind in examples/routing_kinds.mlir verifies, survives a print/parse round
// trip unchanged, and decomposes into explicit pieces.
// RUN: moe-opt %examples/routing_kinds.mlir > %t.mlir
// RUN: moe-opt %t.mlir | diff %t.mlir -
// RUN: moe-opt %examples/routing_kinds.mlir -mlir-print-op-generic | moe-opt | diff %t.mlir -
// RUN: moe-opt %examples/routing_kinds.mlir --moe-decompose | FileCheck %s
// RUN: moe-opt %examples/routing_kinds.mlir --moe-decompose | FileCheck %s --check-prefix=NOLAYER

// NOLAYER-NOT: moe.layer

// CHECK-LABEL: func.func @mixtral
// CHECK: moe.route #moe.routing<scoring = softmax, k = 2, normalize = true>
// CHECK: moe.dispatch
// CHECK: moe.experts #moe.ffn<activation = silu>
// CHECK: moe.combine

// CHECK-LABEL: func.func @qwen2_moe
// CHECK: moe.route #moe.routing<scoring = softmax, k = 4, logits_type = f32>
// CHECK: moe.shared_expert {{.*}} sigmoid_gate
// CHECK: moe.combine {{.*}} add

// CHECK-LABEL: func.func @deepseek_v2
// CHECK: moe.route #moe.routing<scoring = softmax, k = 4, selection = group_limited, scaling = 16.0, n_group = 4, topk_group = 2, logits_type = f32>

// CHECK-LABEL: func.func @deepseek_v3
// CHECK: moe.dequantize #moe.fp8_block<32, 32>
// CHECK: moe.route #moe.routing<scoring = sigmoid, k = 4, selection = group_limited, normalize = true, norm_epsilon = 1.0e-20, scaling = 2.5, n_group = 4, topk_group = 2, group_score = top2_sum, logits_type = f32> {{.*}} correction_bias
// CHECK: moe.shared_expert
// CHECK: moe.combine {{.*}} add

// CHECK-LABEL: func.func @phimoe
// CHECK: moe.route #moe.routing<scoring = sparsemixer, k = 2, epsilon = 0.01>

// CHECK-LABEL: func.func @gpt_oss
// CHECK: moe.dequantize #moe.mxfp4
// CHECK: moe.route #moe.routing<scoring = softmax_after_topk, k = 4> {{.*}} bias
// CHECK: moe.experts #moe.ffn<activation = clamped_swiglu, glu = interleaved, alpha = 1.702, limit = 7.0> {{.*}} up_bias {{.*}} down_bias

// CHECK-LABEL: func.func @granite_moe
// CHECK: moe.route #moe.routing<scoring = softmax_after_topk, k = 2, logits_type = f32>
// CHECK: moe.experts #moe.ffn<activation = silu, glu = halves>

// Llama-4: the routing weight moves to the expert input; the combine must not apply it again.
// CHECK-LABEL: func.func @llama4
// CHECK: %[[IDS:.*]], %[[W:.*]] = moe.route #moe.routing<scoring = sigmoid_after_topk
// CHECK: %[[PX:.*]], %[[PW:.*]], %[[SLOTS:.*]], %[[OFF:.*]] = moe.dispatch
// CHECK: %[[Y:.*]] = moe.experts {{.*}} row_scales %[[PW]]
// CHECK: %[[S:.*]] = moe.shared_expert
// CHECK: moe.combine %[[Y]], %[[SLOTS]], %[[W]] add %[[S]] {unweighted}

// CHECK-LABEL: func.func @top_p
// CHECK: moe.route #moe.routing<scoring = softmax, k = 4, selection = top_p, top_p = 0.4>
// CHECK: moe.experts #moe.ffn<activation = gelu, glu = none>

// Static token count: the dispatch has T * k = 32 rows.
// CHECK-LABEL: func.func @capacity
// CHECK: moe.dispatch {{.*}} {capacity_factor = 1.250000e+00 : f64} : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
