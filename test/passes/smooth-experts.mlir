// RUN: moe-opt %s --split-input-file --moe-smooth-experts="weights=%golden/qwen2_moe/ckpt calibration=%golden/qwen2_moe/T64/input.safetensors" | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-fuse-gate-up --moe-smooth-experts="weights=%golden/qwen2_moe/ckpt calibration=%golden/qwen2_moe/T64/input.safetensors" | FileCheck %s --check-prefix=FUSED

// Qwen2-MoE layer 1 of the golden checkpoint (H = 64): the input is divided by s (one f32
// constant per channel, the reciprocals of s), and the input columns of the router, the
// routed experts' gate and up, the shared expert's gate and up and its sigmoid gate are
// multiplied by s; both down projections read the hidden width and stay as they are. The
// function reports the range of s.
// CHECK-LABEL: func.func @layer_1
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xbf16>)
// CHECK-SAME:    "moe.report.moe-smooth-experts" = {alpha = 6.000000e-01 : f64, scale_max = {{.*}} : f64, scale_min = {{.*}} : f64}
// CHECK-DAG:     %[[R:.*]] = moe.weight "model.layers.1.mlp.gate.weight"
// CHECK-DAG:     %[[G:.*]] = moe.weight "model.layers.1.mlp.experts.{e}.gate_proj.weight"
// CHECK-DAG:     %[[U:.*]] = moe.weight "model.layers.1.mlp.experts.{e}.up_proj.weight"
// CHECK-DAG:     %[[D:.*]] = moe.weight "model.layers.1.mlp.experts.{e}.down_proj.weight"
// CHECK-DAG:     %[[SG:.*]] = moe.weight "model.layers.1.mlp.shared_expert.gate_proj.weight"
// CHECK-DAG:     %[[SU:.*]] = moe.weight "model.layers.1.mlp.shared_expert.up_proj.weight"
// CHECK-DAG:     %[[SD:.*]] = moe.weight "model.layers.1.mlp.shared_expert.down_proj.weight"
// CHECK-DAG:     %[[SGATE:.*]] = moe.weight "model.layers.1.mlp.shared_expert_gate.weight"
// CHECK:         %[[S:.*]] = arith.constant dense<{{.*}}> : tensor<64xf32>
// CHECK:         %[[INV:.*]] = arith.constant dense<{{.*}}> : tensor<64xf32>
// CHECK:         %[[XS:.*]] = moe.scale_channels %[[X]], %[[INV]] : (tensor<?x64xbf16>, tensor<64xf32>) -> tensor<?x64xbf16>
// CHECK:         %[[RS:.*]] = moe.scale_columns %[[R]], %[[S]] : (tensor<8x64xbf16>, tensor<64xf32>) -> tensor<8x64xbf16>
// CHECK:         %[[GS:.*]] = moe.scale_columns %[[G]], %[[S]] : (tensor<8x32x64xbf16>, tensor<64xf32>) -> tensor<8x32x64xbf16>
// CHECK:         %[[US:.*]] = moe.scale_columns %[[U]], %[[S]]
// CHECK:         %[[SGS:.*]] = moe.scale_columns %[[SG]], %[[S]] : (tensor<64x64xbf16>, tensor<64xf32>)
// CHECK:         %[[SUS:.*]] = moe.scale_columns %[[SU]], %[[S]]
// CHECK:         %[[SGATES:.*]] = moe.scale_columns %[[SGATE]], %[[S]] : (tensor<1x64xbf16>, tensor<64xf32>) -> tensor<1x64xbf16>
// CHECK-NOT:     moe.scale_columns
// CHECK:         moe.layer %[[XS]] {{.*}} router(%[[RS]]) experts(gate %[[GS]] up %[[US]] down %[[D]]) shared(gate %[[SGS]] up %[[SUS]] down %[[SD]] sigmoid_gate %[[SGATES]])

// Fused gate/up (moe-fuse-gate-up first): the concatenated weight is scaled once, as a whole.
// FUSED-LABEL: func.func @layer_1
// FUSED:         %[[GU:.*]] = tensor.concat dim(1)
// FUSED:         %[[SGU:.*]] = tensor.concat dim(0)
// FUSED:         %[[XS:.*]] = moe.scale_channels
// FUSED:         moe.scale_columns %{{.*}}, %{{.*}} : (tensor<8x64xbf16>
// FUSED:         %[[GUS:.*]] = moe.scale_columns %[[GU]], %{{.*}} : (tensor<8x64x64xbf16>, tensor<64xf32>) -> tensor<8x64x64xbf16>
// FUSED:         %[[SGUS:.*]] = moe.scale_columns %[[SGU]], %{{.*}} : (tensor<128x64xbf16>, tensor<64xf32>) -> tensor<128x64xbf16>
// FUSED:         moe.scale_columns %{{.*}}, %{{.*}} : (tensor<1x64xbf16>
// FUSED-NOT:     moe.scale_columns
// FUSED:         moe.layer %[[XS]] {{.*}} experts({{ *}}up %[[GUS]] down %{{.*}}) shared({{ *}}up %[[SGUS]] down
func.func @layer_1(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> attributes {moe.layer_index = 1 : i64} {
  %r = moe.weight "model.layers.1.mlp.gate.weight" : tensor<8x64xbf16>
  %g = moe.weight "model.layers.1.mlp.experts.{e}.gate_proj.weight" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "model.layers.1.mlp.experts.{e}.up_proj.weight" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "model.layers.1.mlp.experts.{e}.down_proj.weight" experts(8) : tensor<8x64x32xbf16>
  %sg = moe.weight "model.layers.1.mlp.shared_expert.gate_proj.weight" : tensor<64x64xbf16>
  %su = moe.weight "model.layers.1.mlp.shared_expert.up_proj.weight" : tensor<64x64xbf16>
  %sd = moe.weight "model.layers.1.mlp.shared_expert.down_proj.weight" : tensor<64x64xbf16>
  %sgate = moe.weight "model.layers.1.mlp.shared_expert_gate.weight" : tensor<1x64xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 4> ffn #moe.ffn<activation = silu>
      shared_ffn #moe.ffn<activation = silu> router(%r) experts(gate %g up %u down %d)
      shared(gate %sg up %su down %sd sigmoid_gate %sgate)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>, tensor<64x64xbf16>, tensor<64x64xbf16>, tensor<64x64xbf16>,
         tensor<1x64xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// Two layers in one function reading the same weights: each layer gets its own scales and
// its own scaled copies of the weights (placed before it), and the function's report covers
// both.
// CHECK-LABEL: func.func @two_layers
// CHECK:         %[[X1:.*]] = moe.scale_channels %arg0
// CHECK-COUNT-3: moe.scale_columns
// CHECK:         %[[Y1:.*]] = moe.layer %[[X1]]
// CHECK:         %[[X2:.*]] = moe.scale_channels %[[Y1]]
// CHECK-COUNT-3: moe.scale_columns
// CHECK:         moe.layer %[[X2]]
// CHECK-NOT:     moe.scale_channels
func.func @two_layers(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> attributes {moe.layer_index = 1 : i64} {
  %r = moe.weight "model.layers.1.mlp.gate.weight" : tensor<8x64xbf16>
  %g = moe.weight "model.layers.1.mlp.experts.{e}.gate_proj.weight" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "model.layers.1.mlp.experts.{e}.up_proj.weight" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "model.layers.1.mlp.experts.{e}.down_proj.weight" experts(8) : tensor<8x64x32xbf16>
  %y1 = moe.layer %x routing #moe.routing<scoring = softmax, k = 4> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  %y2 = moe.layer %y1 routing #moe.routing<scoring = softmax, k = 4> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y2 : tensor<?x64xbf16>
}
