// RUN: moe-opt %s --moe-quantize-experts="bits=8 group-size=32" --split-input-file | FileCheck %s
// RUN: moe-opt %s --moe-quantize-experts="bits=4 group-size=16 symmetric=false" --split-input-file | FileCheck %s --check-prefix=INT4

// Routed experts: gate, up and down each become quantize + dequantize; 8-bit values keep
// the weight's shape, scales have one column per group of 32 inputs.
// CHECK-LABEL: func.func @experts
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[OFF:.*]]: tensor<9xi32>, %[[G:.*]]: tensor<8x32x64xf32>, %[[U:.*]]: tensor<8x32x64xf32>, %[[D:.*]]: tensor<8x64x32xf32>)
// CHECK:         %[[GQ:.*]]:2 = moe.quantize #moe.int_group<bits = 8, group_size = 32> %[[G]] : (tensor<8x32x64xf32>) -> (tensor<8x32x64xi8>, tensor<8x32x2xf32>)
// CHECK:         %[[GD:.*]] = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %[[GQ]]#0, %[[GQ]]#1 : (tensor<8x32x64xi8>, tensor<8x32x2xf32>) -> tensor<8x32x64xf32>
// CHECK:         %[[UQ:.*]]:2 = moe.quantize {{.*}} %[[U]]
// CHECK:         %[[UD:.*]] = moe.dequantize
// CHECK:         %[[DQ:.*]]:2 = moe.quantize {{.*}} %[[D]] : (tensor<8x64x32xf32>) -> (tensor<8x64x32xi8>, tensor<8x64x1xf32>)
// CHECK:         %[[DD:.*]] = moe.dequantize
// CHECK:         moe.experts #moe.ffn<activation = silu> %[[X]], %[[OFF]] gate %[[GD]] up %[[UD]] down %[[DD]] :
// 4-bit asymmetric: two values a byte, and zero points shaped like the scales.
// INT4-LABEL: func.func @experts
// INT4:         moe.quantize #moe.int_group<bits = 4, group_size = 16, symmetric = false> %{{.*}} : (tensor<8x32x64xf32>) -> (tensor<8x32x32xi8>, tensor<8x32x4xf32>, tensor<8x32x4xf32>)
func.func @experts(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
                   %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A whole layer: the router stays at full precision, routed and shared experts are
// quantized; the shared expert's sigmoid gate (a router-like vector) stays too. bf16
// weights dequantize to f32: the integer grid's exact values.
// CHECK-LABEL: func.func @layer
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xbf16>)
// CHECK:         %[[R:.*]] = moe.weight "router"
// CHECK:         %[[SGATE:.*]] = moe.weight "sgate"
// CHECK:         moe.quantize {{.*}} : (tensor<8x32x64xbf16>) -> (tensor<8x32x64xi8>, tensor<8x32x2xf32>)
// CHECK-NEXT:    moe.dequantize {{.*}} -> tensor<8x32x64xf32>
// CHECK-COUNT-5: moe.quantize
// CHECK-NOT:     moe.quantize
// CHECK:         moe.layer %[[X]] {{.*}} router(%[[R]])
// CHECK-SAME:    sigmoid_gate %[[SGATE]])
func.func @layer(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %r = moe.weight "router" : tensor<8x64xbf16>
  %g = moe.weight "g.{e}" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "u.{e}" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "d.{e}" experts(8) : tensor<8x64x32xbf16>
  %sg = moe.weight "sg" : tensor<96x64xbf16>
  %su = moe.weight "su" : tensor<96x64xbf16>
  %sd = moe.weight "sd" : tensor<64x96xbf16>
  %sgate = moe.weight "sgate" : tensor<1x64xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      shared(gate %sg up %su down %sd sigmoid_gate %sgate)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>,
         tensor<1x64xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// Weights already stored quantized (a checkpoint's own int4, FP8, MXFP4) keep their
// encoding: only the plain float weight is quantized.
// CHECK-LABEL: func.func @already_quantized
// CHECK-COUNT-1: moe.quantize
// CHECK-NOT:     moe.quantize
// CHECK:         moe.shared_expert
func.func @already_quantized(%x: tensor<?x64xf32>, %gq: tensor<48x32xi8>, %gs: tensor<48x2xf32>,
                             %u: tensor<48x64xf32>, %dq: tensor<64x24xi8>,
                             %ds: tensor<64x2xf32>) -> tensor<?x64xf32> {
  %g = moe.dequantize #moe.int_group<bits = 4, group_size = 32> %gq, %gs
      : (tensor<48x32xi8>, tensor<48x2xf32>) -> tensor<48x64xf32>
  %d = moe.dequantize #moe.int_group<bits = 4, group_size = 24> %dq, %ds
      : (tensor<64x24xi8>, tensor<64x2xf32>) -> tensor<64x48xf32>
  %y = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>)
      -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
