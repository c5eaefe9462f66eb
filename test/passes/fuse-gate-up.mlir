// RUN: moe-opt %s --moe-fuse-gate-up --split-input-file | FileCheck %s

// Routed experts: gate and up become one concatenated weight, glu = halves.
// CHECK-LABEL: func.func @experts
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[OFF:.*]]: tensor<9xi32>, %[[G:.*]]: tensor<8x32x64xf32>, %[[U:.*]]: tensor<8x32x64xf32>, %[[D:.*]]: tensor<8x64x32xf32>)
// CHECK:         %[[GU:.*]] = tensor.concat dim(1) %[[G]], %[[U]] : (tensor<8x32x64xf32>, tensor<8x32x64xf32>) -> tensor<8x64x64xf32>
// CHECK:         moe.experts #moe.ffn<activation = silu, glu = halves> %[[X]], %[[OFF]] up %[[GU]] down %[[D]] :
func.func @experts(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
                   %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A gate bias without an up bias: the up half of the fused bias is zeros.
// CHECK-LABEL: func.func @gate_bias_only
// CHECK:         %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : tensor<8x32xf32>
// CHECK:         %[[B:.*]] = tensor.concat dim(1) %{{.*}}, %[[ZERO]] : (tensor<8x32xf32>, tensor<8x32xf32>) -> tensor<8x64xf32>
// CHECK:         moe.experts #moe.ffn<activation = gelu, glu = halves> {{.*}} up_bias %[[B]]
// CHECK-NOT:     gate_bias
func.func @gate_bias_only(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
                          %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>,
                          %gb: tensor<8x32xf32>) -> tensor<?x64xf32> {
  %y = moe.experts #moe.ffn<activation = gelu> %x, %off gate %g up %u down %d gate_bias %gb
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<8x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A shared expert fuses along its first dimension (no expert dimension).
// CHECK-LABEL: func.func @shared
// CHECK:         %[[GU:.*]] = tensor.concat dim(0) %{{.*}}, %{{.*}} : (tensor<48x64xf32>, tensor<48x64xf32>) -> tensor<96x64xf32>
// CHECK:         moe.shared_expert #moe.ffn<activation = silu, glu = halves> %{{.*}} up %[[GU]] down
func.func @shared(%x: tensor<?x64xf32>, %g: tensor<48x64xf32>, %u: tensor<48x64xf32>,
                  %d: tensor<64x48xf32>) -> tensor<?x64xf32> {
  %y = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>)
      -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A whole layer: routed and shared experts both fuse.
// CHECK-LABEL: func.func @layer
// CHECK-DAG:     %[[R:.*]] = tensor.concat dim(1)
// CHECK-DAG:     %[[S:.*]] = tensor.concat dim(0)
// CHECK:         moe.layer %{{.*}} routing #moe.routing<scoring = softmax, k = 2> ffn #moe.ffn<activation = silu, glu = halves> shared_ffn #moe.ffn<activation = silu, glu = halves> router(%{{.*}}) experts({{ ?}}up %[[R]] down %{{.*}}) shared({{ ?}}up %[[S]] down
func.func @layer(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
                 %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<48x64xf32>,
                 %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>) -> tensor<?x64xf32> {
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>)
      -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Already fused, or ungated: nothing to do.
// CHECK-LABEL: func.func @unchanged
// CHECK-NOT:     tensor.concat
// CHECK:         moe.experts #moe.ffn<activation = silu, glu = interleaved>
// CHECK:         moe.experts #moe.ffn<activation = relu, glu = none>
func.func @unchanged(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %gu: tensor<8x64x64xf32>,
                     %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %a = moe.experts #moe.ffn<activation = silu, glu = interleaved> %x, %off up %gu down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %b = moe.experts #moe.ffn<activation = relu, glu = none> %x, %off up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}
