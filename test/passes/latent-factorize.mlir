// RUN: moe-opt %s --moe-latent-factorize="rank=16 group=4" --split-input-file | FileCheck %s
// RUN: moe-opt %s --moe-latent-factorize="rank=16 projections=down" --split-input-file | FileCheck %s --check-prefix=DOWN

// Routed experts: gate and up (the default projections) each become the product of their
// factors and one basis per group of 4 experts; down keeps its weight.
// CHECK-LABEL: func.func @experts
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[OFF:.*]]: tensor<9xi32>, %[[G:.*]]: tensor<8x32x64xf32>, %[[U:.*]]: tensor<8x32x64xf32>, %[[D:.*]]: tensor<8x64x32xf32>)
// CHECK-SAME:    "moe.report.moe-latent-factorize" = {flops_per_token_after = 6144 : i64, flops_per_token_before = 8192 : i64, group = 4 : i64, params_after = 12288 : i64, params_before = 32768 : i64, rank = 16 : i64}
// CHECK:         %[[GA:.*]], %[[GB:.*]] = moe.factorize %[[G]] rank(16) group(4) : (tensor<8x32x64xf32>) -> (tensor<8x32x16xf32>, tensor<2x16x64xf32>)
// CHECK:         %[[GP:.*]] = moe.latent_product %[[GA]], %[[GB]] : (tensor<8x32x16xf32>, tensor<2x16x64xf32>) -> tensor<8x32x64xf32>
// CHECK:         %[[UA:.*]], %[[UB:.*]] = moe.factorize %[[U]] rank(16) group(4)
// CHECK:         %[[UP:.*]] = moe.latent_product %[[UA]], %[[UB]]
// CHECK-NOT:     moe.factorize
// CHECK:         moe.experts #moe.ffn<activation = silu> %[[X]], %[[OFF]] gate %[[GP]] up %[[UP]] down %[[D]] :
// DOWN-LABEL: func.func @experts
// DOWN:         moe.factorize %{{.*}} rank(16) group(8) : (tensor<8x64x32xf32>) -> (tensor<8x64x16xf32>, tensor<1x16x32xf32>)
// DOWN-NOT:     moe.factorize
func.func @experts(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
                   %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A whole layer (k = 2): the router and the shared expert keep their weights; the factors
// and the gate/up products are f32 whatever the weight's type (bf16). FLOPs per token: before 2 * k * N * K
// per projection; after, gate/up: 2 * (min(k, groups) * R * K + k * N * R).
// CHECK-LABEL: func.func @layer
// CHECK-SAME:    "moe.report.moe-latent-factorize" = {flops_per_token_after = 12288 : i64, flops_per_token_before = 16384 : i64, group = 4 : i64, params_after = 12288 : i64, params_before = 32768 : i64, rank = 16 : i64}
// CHECK:         %[[R:.*]] = moe.weight "router"
// CHECK:         %[[A:.*]], %[[B:.*]] = moe.factorize %{{.*}} rank(16) group(4) : (tensor<8x32x64xbf16>) -> (tensor<8x32x16xf32>, tensor<2x16x64xf32>)
// CHECK:         %[[GP:.*]] = moe.latent_product %[[A]], %[[B]] : (tensor<8x32x16xf32>, tensor<2x16x64xf32>) -> tensor<8x32x64xf32>
// CHECK:         moe.factorize
// CHECK:         %[[UP:.*]] = moe.latent_product
// CHECK-NOT:     moe.factorize
// CHECK:         moe.layer %{{.*}} router(%[[R]]) experts(gate %[[GP]] up %[[UP]] down %{{.*}}) shared(gate %{{.*}} up %{{.*}} down %{{.*}})
// Down (group 0: one basis for all 8 experts): each routed expert projects its own
// intermediate, so 2 * k * (R * N_in + N_out * R) = 2 * 2 * (16 * 32 + 64 * 16).
// DOWN-LABEL: func.func @layer
// DOWN-SAME:    "moe.report.moe-latent-factorize" = {flops_per_token_after = 6144 : i64, flops_per_token_before = 8192 : i64, group = 0 : i64, params_after = 8704 : i64, params_before = 16384 : i64, rank = 16 : i64}
// DOWN:         moe.latent_product %{{.*}}, %{{.*}} : (tensor<8x64x16xf32>, tensor<1x16x32xf32>) -> tensor<8x64x32xbf16>
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
      router(%r) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>)
      -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// A gate fused into up (glu = halves) is factorized as part of up: one factorization.
// CHECK-LABEL: func.func @fused
// CHECK:         moe.factorize %{{.*}} rank(16) group(4) : (tensor<8x64x64xf32>) -> (tensor<8x64x16xf32>, tensor<2x16x64xf32>)
// CHECK-NOT:     moe.factorize
func.func @fused(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %gu: tensor<8x64x64xf32>,
                 %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %y = moe.experts #moe.ffn<activation = silu, glu = halves> %x, %off up %gu down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x64xf32>, tensor<8x64x32xf32>)
      -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
