// RUN: moe-opt %s --moe-quantize-experts="bits=4 group-size=32" | FileCheck %s
// RUN: moe-opt %s --moe-quantize-experts="bits=8 group-size=32" | FileCheck %s --check-prefix=INT8

// Super experts (marked by moe-mark-super-experts) never go below 8 bits: with bits=4 each
// routed weight becomes the concatenation of its runs of experts, expert 2 quantized at 8
// bits and the others at 4; the shared expert is quantized whole at 4 bits.
// CHECK-LABEL: func.func @layer
// CHECK-SAME:    "moe.report.moe-quantize-experts" = {{{.*}}super_experts_at_8_bits = 1 : i64
// CHECK:         %[[G:.*]] = moe.weight "g.{e}"
// CHECK:         %[[S0:.*]] = tensor.extract_slice %[[G]][0, 0, 0] [2, 32, 64] [1, 1, 1]
// CHECK:         moe.quantize #moe.int_group<bits = 4, group_size = 32> %[[S0]]
// CHECK:         %[[S1:.*]] = tensor.extract_slice %[[G]][2, 0, 0] [1, 32, 64] [1, 1, 1]
// CHECK:         moe.quantize #moe.int_group<bits = 8, group_size = 32> %[[S1]]
// CHECK:         %[[S2:.*]] = tensor.extract_slice %[[G]][3, 0, 0] [5, 32, 64] [1, 1, 1]
// CHECK:         moe.quantize #moe.int_group<bits = 4, group_size = 32> %[[S2]]
// CHECK:         %[[GQ:.*]] = tensor.concat dim(0) {{.*}} -> tensor<8x32x64xf32>
// CHECK:         moe.quantize #moe.int_group<bits = 4, group_size = 32> %{{.*}} : (tensor<96x64xbf16>)
// CHECK:         moe.layer {{.*}} experts(gate %[[GQ]]
// At 8 bits every expert is already at 8: one quantization per weight, no slices.
// INT8-LABEL: func.func @layer
// INT8-NOT:     tensor.extract_slice
// INT8-NOT:     super_experts_at_8_bits
func.func @layer(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %r = moe.weight "router" : tensor<8x64xbf16>
  %g = moe.weight "g.{e}" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "u.{e}" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "d.{e}" experts(8) : tensor<8x64x32xbf16>
  %sg = moe.weight "sg" : tensor<96x64xbf16>
  %su = moe.weight "su" : tensor<96x64xbf16>
  %sd = moe.weight "sd" : tensor<64x96xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      shared(gate %sg up %su down %sd) {moe.super_experts = array<i64: 2>}
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>)
         -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
