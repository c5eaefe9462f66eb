// RUN: moe-opt %s --moe-latent-factorize="rank=16 group=4" --moe-quantize-experts="bits=8 group-size=16" | FileCheck %s
// RUN: moe-opt %s --moe-latent-factorize="rank=16 group=4" --moe-quantize-experts="bits=4 group-size=16 latent-basis=quantize" | FileCheck %s --check-prefix=BASIS
// RUN: moe-opt %s --moe-latent-factorize="rank=16 group=4 projections=gate,up,down" --moe-quantize-experts="bits=8 group-size=16" | FileCheck %s --check-prefix=DOWN

// Quantization after latent factorization (issue 6): gate and up keep their
// factorization and their factors A [E, N, R] are quantized in groups along
// the rank, so the layer stores small integer factors instead of a dense
// integer product. The basis B (one per group of experts) is kept f32 by
// default. Down is not factorized here and is quantized as usual.
// CHECK-LABEL: func.func @layer
// CHECK-SAME:    "moe.report.moe-quantize-experts" = {bits = 8 : i64, format = "int", group_size = 16 : i64, method = "rtn", symmetric = true, weights_quantized = 3 : i64}
// CHECK:         %[[GA:.*]], %[[GB:.*]] = moe.factorize %{{.*}} rank(16) group(4) : (tensor<8x32x64xbf16>) -> (tensor<8x32x16xf32>, tensor<2x16x64xf32>)
// CHECK:         %[[UA:.*]], %[[UB:.*]] = moe.factorize
// CHECK:         %[[GQ:.*]]:2 = moe.quantize #moe.int_group<bits = 8, group_size = 16> %[[GA]] : (tensor<8x32x16xf32>) -> (tensor<8x32x16xi8>, tensor<8x32x1xf32>)
// CHECK:         %[[GD:.*]] = moe.dequantize #moe.int_group<bits = 8, group_size = 16> %[[GQ]]#0, %[[GQ]]#1 : (tensor<8x32x16xi8>, tensor<8x32x1xf32>) -> tensor<8x32x16xf32>
// CHECK:         %[[GP:.*]] = moe.latent_product %[[GD]], %[[GB]] : (tensor<8x32x16xf32>, tensor<2x16x64xf32>) -> tensor<8x32x64xf32>
// CHECK:         moe.quantize #moe.int_group<bits = 8, group_size = 16> %[[UA]]
// CHECK:         %[[UD:.*]] = moe.dequantize
// CHECK:         %[[UP:.*]] = moe.latent_product %[[UD]], %[[UB]]
// CHECK:         moe.quantize #moe.int_group<bits = 8, group_size = 16> %{{.*}} : (tensor<8x64x32xbf16>) -> (tensor<8x64x32xi8>, tensor<8x64x2xf32>)
// CHECK:         %[[DD:.*]] = moe.dequantize
// CHECK-NOT:     moe.latent_product
// CHECK:         moe.layer %{{.*}} experts(gate %[[GP]] up %[[UP]] down %[[DD]])

// latent-basis=quantize: B [groups, R, H] is quantized too, in groups along H;
// 4-bit levels pack two per byte.
// BASIS-LABEL: func.func @layer
// BASIS:         %[[GA:.*]], %[[GB:.*]] = moe.factorize
// BASIS:         moe.factorize
// BASIS:         %[[GQ:.*]]:2 = moe.quantize #moe.int_group<bits = 4, group_size = 16> %[[GA]] : (tensor<8x32x16xf32>) -> (tensor<8x32x8xi8>, tensor<8x32x1xf32>)
// BASIS:         %[[GD:.*]] = moe.dequantize #moe.int_group<bits = 4, group_size = 16> %[[GQ]]#0, %[[GQ]]#1
// BASIS:         %[[BQ:.*]]:2 = moe.quantize #moe.int_group<bits = 4, group_size = 16> %[[GB]] : (tensor<2x16x64xf32>) -> (tensor<2x16x32xi8>, tensor<2x16x4xf32>)
// BASIS:         %[[BD:.*]] = moe.dequantize #moe.int_group<bits = 4, group_size = 16> %[[BQ]]#0, %[[BQ]]#1 : (tensor<2x16x32xi8>, tensor<2x16x4xf32>) -> tensor<2x16x64xf32>
// BASIS:         moe.latent_product %[[GD]], %[[BD]] : (tensor<8x32x16xf32>, tensor<2x16x64xf32>) -> tensor<8x32x64xf32>

// A factorized down projection is quantized as a dense weight: the CPU code
// reads down's product, so integer factors would not shrink what it stores.
// DOWN-LABEL: func.func @layer
// DOWN:         %[[DA:.*]], %[[DB:.*]] = moe.factorize %{{.*}} rank(16) group(4) : (tensor<8x64x32xbf16>)
// DOWN:         %[[DP:.*]] = moe.latent_product %[[DA]], %[[DB]] : (tensor<8x64x16xf32>, tensor<2x16x32xf32>) -> tensor<8x64x32xbf16>
// DOWN:         moe.quantize #moe.int_group<bits = 8, group_size = 16> %[[DP]] : (tensor<8x64x32xbf16>)
func.func @layer(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %r = moe.weight "router" : tensor<8x64xbf16>
  %g = moe.weight "g.{e}" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "u.{e}" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "d.{e}" experts(8) : tensor<8x64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
