// Canonicalization of the moe dialect: group-limited routing that keeps every group is plain
// top-k routing; duplicate weight references are merged by CSE.
// RUN: moe-opt %s -canonicalize | FileCheck %s
// RUN: moe-opt %s -cse | FileCheck %s --check-prefix=CSE

// topk_group == n_group masks nothing: the group parameters are dropped, every other
// parameter is kept.
// CHECK-LABEL: func.func @route_all_groups
// CHECK: moe.route #moe.routing<scoring = sigmoid, k = 4, normalize = true, norm_epsilon = 1.0e-20, scaling = 2.5, logits_type = f32> %{{.*}}, %{{.*}} correction_bias %{{.*}} :
// CHECK-NOT: group_limited
// CHECK: return
func.func @route_all_groups(%x: tensor<?x64xf32>, %wg: tensor<16x64xf32>, %cb: tensor<16xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.route #moe.routing<scoring = sigmoid, k = 4, selection = group_limited,
                                    normalize = true, norm_epsilon = 1.0e-20, scaling = 2.5,
                                    n_group = 4, topk_group = 4, group_score = top2_sum,
                                    logits_type = f32> %x, %wg correction_bias %cb
      : (tensor<?x64xf32>, tensor<16x64xf32>, tensor<16xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>)
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// A single group is the same.
// CHECK-LABEL: func.func @route_one_group
// CHECK: moe.route #moe.routing<scoring = softmax, k = 2> %{{.*}}, %{{.*}} :
// CHECK-NOT: group_limited
// CHECK: return
func.func @route_one_group(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = group_limited,
                                    n_group = 1, topk_group = 1> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// topk_group < n_group masks groups: left unchanged.
// CHECK-LABEL: func.func @route_some_groups
// CHECK: moe.route #moe.routing<scoring = softmax, k = 4, selection = group_limited, n_group = 4, topk_group = 2> %{{.*}}, %{{.*}} :
func.func @route_some_groups(%x: tensor<?x64xf32>, %wg: tensor<16x64xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.route #moe.routing<scoring = softmax, k = 4, selection = group_limited,
                                    n_group = 4, topk_group = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>)
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// The same on moe.layer.
// CHECK-LABEL: func.func @layer_all_groups
// CHECK: moe.layer %{{.*}} routing #moe.routing<scoring = softmax, k = 4, scaling = 16.0, logits_type = f32> ffn #moe.ffn<activation = silu> router(
// CHECK-NOT: group_limited
// CHECK: return
func.func @layer_all_groups(%x: tensor<?x64xbf16>, %wg: tensor<16x64xbf16>, %g: tensor<16x32x64xbf16>,
                            %u: tensor<16x32x64xbf16>, %d: tensor<16x64x32xbf16>) -> tensor<?x64xbf16> {
  %y = moe.layer %x
      routing #moe.routing<scoring = softmax, k = 4, selection = group_limited, n_group = 8,
                           topk_group = 8, scaling = 16.0, logits_type = f32>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16x32x64xbf16>, tensor<16x32x64xbf16>,
         tensor<16x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// CHECK-LABEL: func.func @layer_one_group
// CHECK: moe.layer %{{.*}} routing #moe.routing<scoring = sigmoid, k = 2, normalize = true> ffn #moe.ffn<activation = silu> router(
// CHECK-NOT: group_limited
// CHECK: return
func.func @layer_one_group(%x: tensor<?x64xbf16>, %wg: tensor<16x64xbf16>, %g: tensor<16x32x64xbf16>,
                           %u: tensor<16x32x64xbf16>, %d: tensor<16x64x32xbf16>) -> tensor<?x64xbf16> {
  %y = moe.layer %x
      routing #moe.routing<scoring = sigmoid, k = 2, selection = group_limited, normalize = true,
                           n_group = 1, topk_group = 1>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16x32x64xbf16>, tensor<16x32x64xbf16>,
         tensor<16x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// CHECK-LABEL: func.func @layer_some_groups
// CHECK: moe.layer %{{.*}} routing #moe.routing<scoring = sigmoid, k = 4, selection = group_limited, n_group = 8, topk_group = 4, group_score = top2_sum> ffn
func.func @layer_some_groups(%x: tensor<?x64xbf16>, %wg: tensor<16x64xbf16>, %g: tensor<16x32x64xbf16>,
                             %u: tensor<16x32x64xbf16>, %d: tensor<16x64x32xbf16>) -> tensor<?x64xbf16> {
  %y = moe.layer %x
      routing #moe.routing<scoring = sigmoid, k = 4, selection = group_limited, n_group = 8,
                           topk_group = 4, group_score = top2_sum>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16x32x64xbf16>, tensor<16x32x64xbf16>,
         tensor<16x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// Two references to the same tensor with the same type are one value; a different type, file,
// expert count or permutation is a different value.
// CSE-LABEL: func.func @duplicate_weights
// CSE: %[[A:.*]] = moe.weight "router.weight" : tensor<8x64xf32>
// CSE-NOT: moe.weight "router.weight" : tensor<8x64xf32>
// CSE: %[[B:.*]] = moe.weight "router.weight" : tensor<8x64xbf16>
// CSE: %[[C:.*]] = moe.weight "router.weight" from "a.safetensors" : tensor<8x64xf32>
// CSE: %[[D:.*]] = moe.weight "router.weight" permutation [1, 0] : tensor<8x64xf32>
// CSE: %[[E:.*]] = moe.weight "e.{e}" experts(8) : tensor<8x64xf32>
// CSE-NOT: moe.weight
// CSE: return %[[A]], %[[A]], %[[B]], %[[C]], %[[D]], %[[E]], %[[E]]
func.func @duplicate_weights()
    -> (tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xbf16>, tensor<8x64xf32>,
        tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xf32>) {
  %a = moe.weight "router.weight" : tensor<8x64xf32>
  %a2 = moe.weight "router.weight" : tensor<8x64xf32>
  %b = moe.weight "router.weight" : tensor<8x64xbf16>
  %c = moe.weight "router.weight" from "a.safetensors" : tensor<8x64xf32>
  %d = moe.weight "router.weight" permutation [1, 0] : tensor<8x64xf32>
  %e = moe.weight "e.{e}" experts(8) : tensor<8x64xf32>
  %e2 = moe.weight "e.{e}" experts(8) : tensor<8x64xf32>
  return %a, %a2, %b, %c, %d, %e, %e2
      : tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xbf16>, tensor<8x64xf32>,
        tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xf32>
}
