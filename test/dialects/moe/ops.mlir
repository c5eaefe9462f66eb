// Round trip of every op, attribute and parameter of the moe dialect, in the custom and in
// the generic form. Default-valued parameters are elided when printed.
// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s -mlir-print-op-generic | moe-opt | FileCheck %s

//===----------------------------------------------------------------------===//
// moe.weight
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @weights
func.func @weights() {
  // CHECK: moe.weight "router.weight" : tensor<8x64xbf16>
  %plain = moe.weight "router.weight" : tensor<8x64xbf16>
  // CHECK: moe.weight "router.weight" from "model-00001-of-00002.safetensors" : tensor<8x64xf32>
  %file = moe.weight "router.weight" from "model-00001-of-00002.safetensors" : tensor<8x64xf32>
  // CHECK: moe.weight "experts.{e}.w1.weight" experts(8) : tensor<8x32x64xf16>
  %stacked = moe.weight "experts.{e}.w1.weight" experts(8) : tensor<8x32x64xf16>
  // CHECK: moe.weight "experts.gate_up_proj" permutation [0, 2, 1] : tensor<8x64x32xbf16>
  %perm = moe.weight "experts.gate_up_proj" permutation [0, 2, 1] : tensor<8x64x32xbf16>
  // CHECK: moe.weight "w.t" permutation [1, 0] : tensor<32x64xf64>
  %perm2d = moe.weight "w.t" permutation [1, 0] : tensor<32x64xf64>
  // All three at once: from, experts and permutation.
  // CHECK: moe.weight "e.{e}.w" from "shard.safetensors" experts(4) permutation [0, 2, 1] : tensor<4x16x8xf32>
  %all = moe.weight "e.{e}.w" from "shard.safetensors" experts(4) permutation [0, 2, 1] : tensor<4x16x8xf32>
  // Integer element types: signless, signed and unsigned, every width.
  // CHECK: moe.weight "int.i1" : tensor<4xi1>
  %i1 = moe.weight "int.i1" : tensor<4xi1>
  // CHECK: moe.weight "int.i8" : tensor<4xi8>
  %i8 = moe.weight "int.i8" : tensor<4xi8>
  // CHECK: moe.weight "int.si8" : tensor<4xsi8>
  %si8 = moe.weight "int.si8" : tensor<4xsi8>
  // CHECK: moe.weight "int.ui8" : tensor<4x2xui8>
  %ui8 = moe.weight "int.ui8" : tensor<4x2xui8>
  // CHECK: moe.weight "int.si16" : tensor<4xsi16>
  %si16 = moe.weight "int.si16" : tensor<4xsi16>
  // CHECK: moe.weight "int.ui16" : tensor<4xui16>
  %ui16 = moe.weight "int.ui16" : tensor<4xui16>
  // CHECK: moe.weight "int.i32" : tensor<4xi32>
  %i32 = moe.weight "int.i32" : tensor<4xi32>
  // CHECK: moe.weight "int.ui32" : tensor<4xui32>
  %ui32 = moe.weight "int.ui32" : tensor<4xui32>
  // CHECK: moe.weight "int.si64" : tensor<4xsi64>
  %si64 = moe.weight "int.si64" : tensor<4xsi64>
  // CHECK: moe.weight "int.ui64" : tensor<4xui64>
  %ui64 = moe.weight "int.ui64" : tensor<4xui64>
  // FP8 element types.
  // CHECK: moe.weight "fp8.e4m3" : tensor<4x4xf8E4M3FN>
  %e4m3 = moe.weight "fp8.e4m3" : tensor<4x4xf8E4M3FN>
  // CHECK: moe.weight "fp8.e5m2" : tensor<4x4xf8E5M2>
  %e5m2 = moe.weight "fp8.e5m2" : tensor<4x4xf8E5M2>
  // CHECK: moe.weight "fp8.e8m0" : tensor<4x4xf8E8M0FNU>
  %e8m0 = moe.weight "fp8.e8m0" : tensor<4x4xf8E8M0FNU>
  // A scalar (rank-0) weight.
  // CHECK: moe.weight "scalar" : tensor<f32>
  %scalar = moe.weight "scalar" : tensor<f32>
  return
}

//===----------------------------------------------------------------------===//
// moe.dequantize
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @dequantize
func.func @dequantize(%e4m3: tensor<8x256x512xf8E4M3FN>, %e5m2: tensor<256x200xf8E5M2>,
                      %fp8_scales: tensor<8x2x4xf32>, %fp8_scales2: tensor<2x2xf32>,
                      %mx_blocks: tensor<8x64x2x16xui8>, %mx_scales: tensor<8x64x2xui8>,
                      %mx_blocks2: tensor<64x1x16xi8>, %mx_scales2: tensor<64x1xi8>,
                      %q4: tensor<8x32x32xui8>, %q8: tensor<32x64xsi8>,
                      %s4: tensor<8x32x2xf16>, %s8: tensor<32x2xbf16>, %z4: tensor<8x32x2xui8>) {
  // CHECK: moe.dequantize #moe.fp8_block<128, 128> %{{.*}}, %{{.*}} : (tensor<8x256x512xf8E4M3FN>, tensor<8x2x4xf32>) -> tensor<8x256x512xbf16>
  %a = moe.dequantize #moe.fp8_block<128, 128> %e4m3, %fp8_scales
      : (tensor<8x256x512xf8E4M3FN>, tensor<8x2x4xf32>) -> tensor<8x256x512xbf16>
  // Partial trailing blocks: 200 columns in blocks of 128 need 2 scales.
  // CHECK: moe.dequantize #moe.fp8_block<128, 128> %{{.*}}, %{{.*}} : (tensor<256x200xf8E5M2>, tensor<2x2xf32>) -> tensor<256x200xf32>
  %b = moe.dequantize #moe.fp8_block<128, 128> %e5m2, %fp8_scales2
      : (tensor<256x200xf8E5M2>, tensor<2x2xf32>) -> tensor<256x200xf32>
  // CHECK: moe.dequantize #moe.mxfp4 %{{.*}}, %{{.*}} : (tensor<8x64x2x16xui8>, tensor<8x64x2xui8>) -> tensor<8x64x64xbf16>
  %c = moe.dequantize #moe.mxfp4 %mx_blocks, %mx_scales
      : (tensor<8x64x2x16xui8>, tensor<8x64x2xui8>) -> tensor<8x64x64xbf16>
  // CHECK: moe.dequantize #moe.mxfp4 %{{.*}}, %{{.*}} : (tensor<64x1x16xi8>, tensor<64x1xi8>) -> tensor<64x32xf16>
  %d = moe.dequantize #moe.mxfp4 %mx_blocks2, %mx_scales2
      : (tensor<64x1x16xi8>, tensor<64x1xi8>) -> tensor<64x32xf16>
  // Symmetric (the default, elided when printed): values and scales.
  // CHECK: moe.dequantize #moe.int_group<bits = 4, group_size = 32> %{{.*}}, %{{.*}} : (tensor<8x32x32xui8>, tensor<8x32x2xf16>) -> tensor<8x32x64xf16>
  %e = moe.dequantize #moe.int_group<bits = 4, group_size = 32> %q4, %s4
      : (tensor<8x32x32xui8>, tensor<8x32x2xf16>) -> tensor<8x32x64xf16>
  // CHECK: moe.dequantize #moe.int_group<bits = 8, group_size = 32> %{{.*}}, %{{.*}} : (tensor<32x64xsi8>, tensor<32x2xbf16>) -> tensor<32x64xbf16>
  %f = moe.dequantize #moe.int_group<bits = 8, group_size = 32, symmetric = true> %q8, %s8
      : (tensor<32x64xsi8>, tensor<32x2xbf16>) -> tensor<32x64xbf16>
  // Asymmetric: values, scales and zero points.
  // CHECK: moe.dequantize #moe.int_group<bits = 4, group_size = 32, symmetric = false> %{{.*}}, %{{.*}}, %{{.*}} : (tensor<8x32x32xui8>, tensor<8x32x2xf16>, tensor<8x32x2xui8>) -> tensor<8x32x64xf32>
  %g = moe.dequantize #moe.int_group<bits = 4, group_size = 32, symmetric = false> %q4, %s4, %z4
      : (tensor<8x32x32xui8>, tensor<8x32x2xf16>, tensor<8x32x2xui8>) -> tensor<8x32x64xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @route_operands
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[WG:.*]]: tensor<16x64xbf16>, %[[B:.*]]: tensor<16xbf16>, %[[CB:.*]]: tensor<16xf32>)
func.func @route_operands(%x: tensor<?x64xbf16>, %wg: tensor<16x64xbf16>, %b: tensor<16xbf16>,
                          %cb: tensor<16xf32>) {
  // CHECK: %[[IDS:.*]], %[[W:.*]] = moe.route #moe.routing<scoring = softmax, k = 2> %[[X]], %[[WG]] : (tensor<?x64xbf16>, tensor<16x64xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %i0, %w0 = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x64xbf16>, tensor<16x64xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 2> %[[X]], %[[WG]] bias %[[B]] : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %i1, %w1 = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg bias %b
      : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // CHECK: moe.route #moe.routing<scoring = sigmoid, k = 2> %[[X]], %[[WG]] correction_bias %[[CB]] : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %i2, %w2 = moe.route #moe.routing<scoring = sigmoid, k = 2> %x, %wg correction_bias %cb
      : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // CHECK: moe.route #moe.routing<scoring = sigmoid, k = 2> %[[X]], %[[WG]] bias %[[B]] correction_bias %[[CB]] : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xbf16>, tensor<16xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %i3, %w3 = moe.route #moe.routing<scoring = sigmoid, k = 2> %x, %wg bias %b correction_bias %cb
      : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xbf16>, tensor<16xf32>)
      -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // Static token count.
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 1> %{{.*}}, %[[WG]] : (tensor<5x64xbf16>, tensor<16x64xbf16>) -> (tensor<5x1xi32>, tensor<5x1xf32>)
  %xs = tensor.empty() : tensor<5x64xbf16>
  %i4, %w4 = moe.route #moe.routing<scoring = softmax, k = 1> %xs, %wg
      : (tensor<5x64xbf16>, tensor<16x64xbf16>) -> (tensor<5x1xi32>, tensor<5x1xf32>)
  return
}

// Every scoring function and selection rule; every parameter.
// CHECK-LABEL: func.func @route_rules
func.func @route_rules(%x: tensor<?x64xf32>, %wg: tensor<16x64xf32>) {
  // Default-valued parameters written out are elided when printed.
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 2> %
  %r0:2 = moe.route #moe.routing<scoring = softmax, k = 2, selection = topk, normalize = false,
                                 n_group = 0, topk_group = 0, group_score = max> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // CHECK: moe.route #moe.routing<scoring = sigmoid, k = 2, normalize = true> %
  %r1:2 = moe.route #moe.routing<scoring = sigmoid, k = 2, normalize = true> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // CHECK: moe.route #moe.routing<scoring = sparsemixer, k = 2, epsilon = 0.01> %
  %r2:2 = moe.route #moe.routing<scoring = sparsemixer, k = 2, epsilon = 0.01> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // CHECK: moe.route #moe.routing<scoring = softmax_after_topk, k = 4> %
  %r3:2 = moe.route #moe.routing<scoring = softmax_after_topk, k = 4> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>)
  // CHECK: moe.route #moe.routing<scoring = sigmoid_after_topk, k = 1> %
  %r4:2 = moe.route #moe.routing<scoring = sigmoid_after_topk, k = 1> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x1xi32>, tensor<?x1xf32>)
  // group_score = max is the default and elided.
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 4, selection = group_limited, n_group = 4, topk_group = 2> %
  %r5:2 = moe.route #moe.routing<scoring = softmax, k = 4, selection = group_limited, n_group = 4,
                                 topk_group = 2, group_score = max> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>)
  // CHECK: moe.route #moe.routing<scoring = sigmoid, k = 8, selection = group_limited, normalize = true, norm_epsilon = 1.0e-20, scaling = 2.5, n_group = 8, topk_group = 4, group_score = top2_sum, logits_type = f32> %
  %r6:2 = moe.route #moe.routing<scoring = sigmoid, k = 8, selection = group_limited, n_group = 8,
                                 topk_group = 4, group_score = top2_sum, normalize = true,
                                 norm_epsilon = 1.0e-20, scaling = 2.5, logits_type = f32> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x8xi32>, tensor<?x8xf32>)
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 4, selection = top_p, top_p = 0.4> %
  %r7:2 = moe.route #moe.routing<scoring = softmax, k = 4, selection = top_p, top_p = 0.4> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>)
  // top_p = 1 is the inclusive upper bound.
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 16, selection = top_p, top_p = 1.0> %
  %r8:2 = moe.route #moe.routing<scoring = softmax, k = 16, selection = top_p, top_p = 1.0> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x16xi32>, tensor<?x16xf32>)
  // Integer-valued floats keep their ".0"; norm_epsilon may be 0.
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 2, normalize = true, norm_epsilon = 0.0, scaling = 16.0> %
  %r9:2 = moe.route #moe.routing<scoring = softmax, k = 2, normalize = true, norm_epsilon = 0.0,
                                 scaling = 16.0> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // "16." and "2.50" are the same doubles as 16.0 and 2.5.
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 2, scaling = 16.0> %
  %r10:2 = moe.route #moe.routing<scoring = softmax, k = 2, scaling = 16.> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 2, scaling = 2.5> %
  %r11:2 = moe.route #moe.routing<scoring = softmax, k = 2, scaling = 2.50> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // Parameters may be written in any order; they print in declaration order.
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 2, normalize = true, scaling = 0.125, logits_type = f64> %
  %r12:2 = moe.route #moe.routing<logits_type = f64, scaling = 0.125, normalize = true, k = 2,
                                  scoring = softmax> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // Every floating-point logits_type.
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 2, logits_type = bf16> %
  %r13:2 = moe.route #moe.routing<scoring = softmax, k = 2, logits_type = bf16> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 2, logits_type = f16> %
  %r14:2 = moe.route #moe.routing<scoring = softmax, k = 2, logits_type = f16> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  // Groups of one expert, k = E.
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 16, selection = group_limited, n_group = 16, topk_group = 16> %
  %r15:2 = moe.route #moe.routing<scoring = softmax, k = 16, selection = group_limited, n_group = 16,
                                  topk_group = 16> %x, %wg
      : (tensor<?x64xf32>, tensor<16x64xf32>) -> (tensor<?x16xi32>, tensor<?x16xf32>)
  return
}

// A dynamic expert count defers the checks that depend on it.
// CHECK-LABEL: func.func @route_dynamic_experts
func.func @route_dynamic_experts(%x: tensor<?x64xf32>, %wg: tensor<?x64xf32>) {
  // CHECK: moe.route #moe.routing<scoring = softmax, k = 3, selection = group_limited, n_group = 5, topk_group = 1> %{{.*}}, %{{.*}} : (tensor<?x64xf32>, tensor<?x64xf32>) -> (tensor<?x3xi32>, tensor<?x3xf32>)
  %r:2 = moe.route #moe.routing<scoring = softmax, k = 3, selection = group_limited, n_group = 5,
                                topk_group = 1> %x, %wg
      : (tensor<?x64xf32>, tensor<?x64xf32>) -> (tensor<?x3xi32>, tensor<?x3xf32>)
  return
}

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @dispatch
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[IDS:.*]]: tensor<?x2xi32>, %[[W:.*]]: tensor<?x2xf32>, %[[XS:.*]]: tensor<16x64xf32>, %[[IDSS:.*]]: tensor<16x2xi32>, %[[WS:.*]]: tensor<16x2xf32>)
func.func @dispatch(%x: tensor<?x64xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                    %xs: tensor<16x64xf32>, %idss: tensor<16x2xi32>, %ws: tensor<16x2xf32>) {
  // Dynamic token count.
  // CHECK: %[[P:.*]], %[[PW:.*]], %[[SLOTS:.*]], %[[OFF:.*]] = moe.dispatch %[[X]], %[[IDS]], %[[W]] : (tensor<?x64xbf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x64xbf16>, tensor<?xf32>, tensor<?xi32>, tensor<9xi32>)
  %d0:4 = moe.dispatch %x, %ids, %w
      : (tensor<?x64xbf16>, tensor<?x2xi32>, tensor<?x2xf32>)
      -> (tensor<?x64xbf16>, tensor<?xf32>, tensor<?xi32>, tensor<9xi32>)
  // Static token count: N = T * k = 32 rows.
  // CHECK: moe.dispatch %[[XS]], %[[IDSS]], %[[WS]] : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  %d1:4 = moe.dispatch %xs, %idss, %ws
      : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>)
      -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  // Static inputs may produce dynamic results.
  // CHECK: moe.dispatch %[[XS]], %[[IDSS]], %[[WS]] : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<?x64xf32>, tensor<?xf32>, tensor<?xi32>, tensor<2xi32>)
  %d2:4 = moe.dispatch %xs, %idss, %ws
      : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>)
      -> (tensor<?x64xf32>, tensor<?xf32>, tensor<?xi32>, tensor<2xi32>)
  // Capacity-limited.
  // CHECK: moe.dispatch %[[XS]], %[[IDSS]], %[[WS]] {capacity_factor = 1.250000e+00 : f64} : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  %d3:4 = moe.dispatch %xs, %idss, %ws {capacity_factor = 1.25 : f64}
      : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>)
      -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  // CHECK: moe.dispatch %[[X]], %[[IDS]], %[[W]] {capacity_factor = 2.000000e+00 : f64}
  %d4:4 = moe.dispatch %x, %ids, %w {capacity_factor = 2.0 : f64}
      : (tensor<?x64xbf16>, tensor<?x2xi32>, tensor<?x2xf32>)
      -> (tensor<?x64xbf16>, tensor<?xf32>, tensor<?xi32>, tensor<9xi32>)
  return
}

// A dynamic k with a static token count: the row count N = T * k is unknown, so any N is
// accepted (the verifier once multiplied T by the dynamic-size sentinel and asked for 0 rows).
// CHECK-LABEL: func.func @dispatch_dynamic_k
func.func @dispatch_dynamic_k(%x: tensor<16x64xf32>, %ids: tensor<16x?xi32>, %w: tensor<16x?xf32>) {
  // CHECK: moe.dispatch %{{.*}}, %{{.*}}, %{{.*}} : (tensor<16x64xf32>, tensor<16x?xi32>, tensor<16x?xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  %d:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x?xi32>, tensor<16x?xf32>)
      -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

//===----------------------------------------------------------------------===//
// moe.experts
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @experts
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x64xf32>, %[[OFF:[^:]*]]: tensor<9xi32>, %[[G:[^:]*]]: tensor<8x32x64xf32>, %[[U:[^:]*]]: tensor<8x32x64xf32>, %[[D:[^:]*]]: tensor<8x64x32xf32>, %[[GU:[^:]*]]: tensor<8x64x64xf32>, %[[GB:[^:]*]]: tensor<8x32xf32>, %[[UB:[^:]*]]: tensor<8x32xf32>, %[[GUB:[^:]*]]: tensor<8x64xf32>, %[[DB:[^:]*]]: tensor<8x64xf32>, %[[RS:[^:]*]]: tensor<?xf32>)
func.func @experts(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
                   %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %gu: tensor<8x64x64xf32>,
                   %gb: tensor<8x32xf32>, %ub: tensor<8x32xf32>, %gub: tensor<8x64xf32>,
                   %db: tensor<8x64xf32>, %rs: tensor<?xf32>) {
  // glu = separate is the default and elided.
  // CHECK: moe.experts #moe.ffn<activation = silu> %[[X]], %[[OFF]] gate %[[G]] up %[[U]] down %[[D]] : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %y0 = moe.experts #moe.ffn<activation = silu, glu = separate> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  // CHECK: moe.experts #moe.ffn<activation = gelu, glu = halves> %[[X]], %[[OFF]] up %[[GU]] down %[[D]] : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %y1 = moe.experts #moe.ffn<activation = gelu, glu = halves> %x, %off up %gu down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x64xf32>, tensor<8x64x32xf32>)
      -> tensor<?x64xf32>
  // CHECK: moe.experts #moe.ffn<activation = gelu_tanh, glu = interleaved> %[[X]], %[[OFF]] up %[[GU]] down %[[D]] :
  %y2 = moe.experts #moe.ffn<activation = gelu_tanh, glu = interleaved> %x, %off up %gu down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x64xf32>, tensor<8x64x32xf32>)
      -> tensor<?x64xf32>
  // CHECK: moe.experts #moe.ffn<activation = relu, glu = none> %[[X]], %[[OFF]] up %[[U]] down %[[D]] :
  %y3 = moe.experts #moe.ffn<activation = relu, glu = none> %x, %off up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>)
      -> tensor<?x64xf32>
  // CHECK: moe.experts #moe.ffn<activation = clamped_swiglu, glu = interleaved, alpha = 1.702, limit = 7.0> %[[X]], %[[OFF]] up %[[GU]] down %[[D]] up_bias %[[GUB]] down_bias %[[DB]] : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x64xf32>, tensor<8x64x32xf32>, tensor<8x64xf32>, tensor<8x64xf32>) -> tensor<?x64xf32>
  %y4 = moe.experts #moe.ffn<activation = clamped_swiglu, glu = interleaved, alpha = 1.702, limit = 7.0>
      %x, %off up %gu down %d up_bias %gub down_bias %db
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x64xf32>, tensor<8x64x32xf32>,
         tensor<8x64xf32>, tensor<8x64xf32>) -> tensor<?x64xf32>
  // clamped_swiglu with a separate gate; alpha may be negative or zero.
  // CHECK: moe.experts #moe.ffn<activation = clamped_swiglu, alpha = -0.5, limit = 0.001> %[[X]], %[[OFF]] gate %[[G]] up %[[U]] down %[[D]] :
  %y5 = moe.experts #moe.ffn<activation = clamped_swiglu, alpha = -0.5, limit = 0.001>
      %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  // Every bias and the row scales.
  // CHECK: moe.experts #moe.ffn<activation = silu> %[[X]], %[[OFF]] gate %[[G]] up %[[U]] down %[[D]] gate_bias %[[GB]] up_bias %[[UB]] down_bias %[[DB]] row_scales %[[RS]] : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x64xf32>, tensor<?xf32>) -> tensor<?x64xf32>
  %y6 = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      gate_bias %gb up_bias %ub down_bias %db row_scales %rs
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x64xf32>, tensor<?xf32>)
      -> tensor<?x64xf32>
  // Single optional operands, each on its own.
  // CHECK: moe.experts #moe.ffn<activation = silu> %[[X]], %[[OFF]] gate %[[G]] up %[[U]] down %[[D]] gate_bias %[[GB]] :
  %y7 = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d gate_bias %gb
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<8x32xf32>) -> tensor<?x64xf32>
  // CHECK: moe.experts #moe.ffn<activation = relu, glu = none> %[[X]], %[[OFF]] up %[[U]] down %[[D]] row_scales %[[RS]] :
  %y8 = moe.experts #moe.ffn<activation = relu, glu = none> %x, %off up %u down %d row_scales %rs
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<?xf32>)
      -> tensor<?x64xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @combine
// CHECK-SAME: (%[[Y:[^:]*]]: tensor<?x64xf32>, %[[SLOTS:[^:]*]]: tensor<?xi32>, %[[W:[^:]*]]: tensor<?x2xf32>, %[[S:[^:]*]]: tensor<?x64xf32>)
func.func @combine(%y: tensor<?x64xf32>, %slots: tensor<?xi32>, %w: tensor<?x2xf32>,
                   %s: tensor<?x64xf32>) {
  // CHECK: moe.combine %[[Y]], %[[SLOTS]], %[[W]] : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  %c0 = moe.combine %y, %slots, %w
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  // CHECK: moe.combine %[[Y]], %[[SLOTS]], %[[W]] add %[[S]] : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  %c1 = moe.combine %y, %slots, %w add %s
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  // CHECK: moe.combine %[[Y]], %[[SLOTS]], %[[W]] {unweighted} : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  %c2 = moe.combine %y, %slots, %w {unweighted}
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  // CHECK: moe.combine %[[Y]], %[[SLOTS]], %[[W]] add %[[S]] {unweighted} : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  %c3 = moe.combine %y, %slots, %w add %s {unweighted}
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  // A static token count.
  // CHECK: moe.combine %{{.*}}, %{{.*}}, %{{.*}} : (tensor<32x64xf32>, tensor<32xi32>, tensor<16x2xf32>) -> tensor<16x64xf32>
  %ys = tensor.empty() : tensor<32x64xf32>
  %ss = tensor.empty() : tensor<32xi32>
  %ws = tensor.empty() : tensor<16x2xf32>
  %c4 = moe.combine %ys, %ss, %ws
      : (tensor<32x64xf32>, tensor<32xi32>, tensor<16x2xf32>) -> tensor<16x64xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.shared_expert
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @shared_expert
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x64xbf16>, %[[G:[^:]*]]: tensor<96x64xbf16>, %[[U:[^:]*]]: tensor<96x64xbf16>, %[[D:[^:]*]]: tensor<64x96xbf16>, %[[GU:[^:]*]]: tensor<192x64xbf16>, %[[SG:[^:]*]]: tensor<1x64xbf16>)
func.func @shared_expert(%x: tensor<?x64xbf16>, %g: tensor<96x64xbf16>, %u: tensor<96x64xbf16>,
                         %d: tensor<64x96xbf16>, %gu: tensor<192x64xbf16>, %sg: tensor<1x64xbf16>) {
  // CHECK: moe.shared_expert #moe.ffn<activation = silu> %[[X]] gate %[[G]] up %[[U]] down %[[D]] : (tensor<?x64xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>) -> tensor<?x64xbf16>
  %s0 = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>)
      -> tensor<?x64xbf16>
  // CHECK: moe.shared_expert #moe.ffn<activation = silu> %[[X]] gate %[[G]] up %[[U]] down %[[D]] sigmoid_gate %[[SG]] : (tensor<?x64xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>, tensor<1x64xbf16>) -> tensor<?x64xbf16>
  %s1 = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d sigmoid_gate %sg
      : (tensor<?x64xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>,
         tensor<1x64xbf16>) -> tensor<?x64xbf16>
  // Without a separate gate.
  // CHECK: moe.shared_expert #moe.ffn<activation = gelu, glu = none> %[[X]] up %[[U]] down %[[D]] : (tensor<?x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>) -> tensor<?x64xbf16>
  %s2 = moe.shared_expert #moe.ffn<activation = gelu, glu = none> %x up %u down %d
      : (tensor<?x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>) -> tensor<?x64xbf16>
  // CHECK: moe.shared_expert #moe.ffn<activation = silu, glu = halves> %[[X]] up %[[GU]] down %[[D]] sigmoid_gate %[[SG]] : (tensor<?x64xbf16>, tensor<192x64xbf16>, tensor<64x96xbf16>, tensor<1x64xbf16>) -> tensor<?x64xbf16>
  %s3 = moe.shared_expert #moe.ffn<activation = silu, glu = halves> %x up %gu down %d sigmoid_gate %sg
      : (tensor<?x64xbf16>, tensor<192x64xbf16>, tensor<64x96xbf16>, tensor<1x64xbf16>)
      -> tensor<?x64xbf16>
  return
}

//===----------------------------------------------------------------------===//
// moe.layer
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @layer_plain
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x64xbf16>, %[[WG:[^:]*]]: tensor<8x64xbf16>, %[[G:[^:]*]]: tensor<8x32x64xbf16>, %[[U:[^:]*]]: tensor<8x32x64xbf16>, %[[D:[^:]*]]: tensor<8x64x32xbf16>)
func.func @layer_plain(%x: tensor<?x64xbf16>, %wg: tensor<8x64xbf16>, %g: tensor<8x32x64xbf16>,
                       %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  // CHECK: %[[Y:.*]] = moe.layer %[[X]] routing #moe.routing<scoring = softmax, k = 2, normalize = true> ffn #moe.ffn<activation = silu> router(%[[WG]]) experts(gate %[[G]] up %[[U]] down %[[D]]) : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  // CHECK: return %[[Y]]
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true>
      ffn #moe.ffn<activation = silu, glu = separate>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// CHECK-LABEL: func.func @layer_shared
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x64xbf16>, %[[WG:[^:]*]]: tensor<8x64xbf16>, %[[G:[^:]*]]: tensor<8x32x64xbf16>, %[[U:[^:]*]]: tensor<8x32x64xbf16>, %[[D:[^:]*]]: tensor<8x64x32xbf16>, %[[SG:[^:]*]]: tensor<96x64xbf16>, %[[SU:[^:]*]]: tensor<96x64xbf16>, %[[SD:[^:]*]]: tensor<64x96xbf16>, %[[SGATE:[^:]*]]: tensor<1x64xbf16>)
func.func @layer_shared(%x: tensor<?x64xbf16>, %wg: tensor<8x64xbf16>, %g: tensor<8x32x64xbf16>,
                        %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>,
                        %sg: tensor<96x64xbf16>, %su: tensor<96x64xbf16>, %sd: tensor<64x96xbf16>,
                        %sgate: tensor<1x64xbf16>) {
  // Shared expert with a gate and a sigmoid gate (Qwen2-MoE).
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = softmax, k = 4, logits_type = f32> ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu> router(%[[WG]]) experts(gate %[[G]] up %[[U]] down %[[D]]) shared(gate %[[SG]] up %[[SU]] down %[[SD]] sigmoid_gate %[[SGATE]]) : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<8x64x32xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>, tensor<1x64xbf16>) -> tensor<?x64xbf16>
  %y0 = moe.layer %x routing #moe.routing<scoring = softmax, k = 4, logits_type = f32>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      shared(gate %sg up %su down %sd sigmoid_gate %sgate)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>,
         tensor<1x64xbf16>) -> tensor<?x64xbf16>
  // Shared expert with a gate, no sigmoid gate (DeepSeek).
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = softmax, k = 2> ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = gelu> router(%[[WG]]) experts(gate %[[G]] up %[[U]] down %[[D]]) shared(gate %[[SG]] up %[[SU]] down %[[SD]]) : (
  %y1 = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = gelu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>, tensor<96x64xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>)
      -> tensor<?x64xbf16>
  // Ungated shared expert with a sigmoid gate.
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = softmax, k = 2> ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = relu, glu = none> router(%[[WG]]) experts(gate %[[G]] up %[[U]] down %[[D]]) shared({{ ?}}up %[[SU]] down %[[SD]] sigmoid_gate %[[SGATE]]) : (
  %y2 = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = relu, glu = none>
      router(%wg) experts(gate %g up %u down %d) shared(up %su down %sd sigmoid_gate %sgate)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>, tensor<96x64xbf16>, tensor<64x96xbf16>, tensor<1x64xbf16>)
      -> tensor<?x64xbf16>
  return
}

// CHECK-LABEL: func.func @layer_router
// CHECK-SAME: (%[[X:[^:]*]]: tensor<16x64xf32>, %[[WG:[^:]*]]: tensor<16x64xf32>, %[[B:[^:]*]]: tensor<16xf32>, %[[CB:[^:]*]]: tensor<16xf32>, %[[GU:[^:]*]]: tensor<16x64x64xf32>, %[[D:[^:]*]]: tensor<16x64x32xf32>, %[[GUB:[^:]*]]: tensor<16x64xf32>, %[[DB:[^:]*]]: tensor<16x64xf32>)
func.func @layer_router(%x: tensor<16x64xf32>, %wg: tensor<16x64xf32>, %b: tensor<16xf32>,
                        %cb: tensor<16xf32>, %gu: tensor<16x64x64xf32>, %d: tensor<16x64x32xf32>,
                        %gub: tensor<16x64xf32>, %db: tensor<16x64xf32>) {
  // Router bias, fused interleaved experts with biases (GPT-OSS).
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = softmax_after_topk, k = 4> ffn #moe.ffn<activation = clamped_swiglu, glu = interleaved, alpha = 1.702, limit = 7.0> router(%[[WG]] bias %[[B]]) experts({{ ?}}up %[[GU]] down %[[D]] up_bias %[[GUB]] down_bias %[[DB]]) : (tensor<16x64xf32>, tensor<16x64xf32>, tensor<16xf32>, tensor<16x64x64xf32>, tensor<16x64x32xf32>, tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
  %y0 = moe.layer %x routing #moe.routing<scoring = softmax_after_topk, k = 4>
      ffn #moe.ffn<activation = clamped_swiglu, glu = interleaved, alpha = 1.702, limit = 7.0>
      router(%wg bias %b) experts(up %gu down %d up_bias %gub down_bias %db)
      : (tensor<16x64xf32>, tensor<16x64xf32>, tensor<16xf32>, tensor<16x64x64xf32>,
         tensor<16x64x32xf32>, tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
  // Correction bias with group-limited sigmoid routing (DeepSeek-V3).
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = sigmoid, k = 4, selection = group_limited, normalize = true, norm_epsilon = 1.0e-20, scaling = 2.5, n_group = 4, topk_group = 2, group_score = top2_sum, logits_type = f32> ffn #moe.ffn<activation = silu, glu = halves> router(%[[WG]] correction_bias %[[CB]]) experts({{ ?}}up %[[GU]] down %[[D]]) : (tensor<16x64xf32>, tensor<16x64xf32>, tensor<16xf32>, tensor<16x64x64xf32>, tensor<16x64x32xf32>) -> tensor<16x64xf32>
  %y1 = moe.layer %x
      routing #moe.routing<scoring = sigmoid, k = 4, selection = group_limited, normalize = true,
                           norm_epsilon = 1.0e-20, scaling = 2.5, n_group = 4, topk_group = 2,
                           group_score = top2_sum, logits_type = f32>
      ffn #moe.ffn<activation = silu, glu = halves>
      router(%wg correction_bias %cb) experts(up %gu down %d)
      : (tensor<16x64xf32>, tensor<16x64xf32>, tensor<16xf32>, tensor<16x64x64xf32>,
         tensor<16x64x32xf32>) -> tensor<16x64xf32>
  // Both biases at once.
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = sigmoid, k = 2> ffn #moe.ffn<activation = silu, glu = halves> router(%[[WG]] bias %[[B]] correction_bias %[[CB]]) experts({{ ?}}up %[[GU]] down %[[D]]) : (tensor<16x64xf32>, tensor<16x64xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16x64x64xf32>, tensor<16x64x32xf32>) -> tensor<16x64xf32>
  %y2 = moe.layer %x routing #moe.routing<scoring = sigmoid, k = 2>
      ffn #moe.ffn<activation = silu, glu = halves>
      router(%wg bias %b correction_bias %cb) experts(up %gu down %d)
      : (tensor<16x64xf32>, tensor<16x64xf32>, tensor<16xf32>, tensor<16xf32>,
         tensor<16x64x64xf32>, tensor<16x64x32xf32>) -> tensor<16x64xf32>
  return
}

// CHECK-LABEL: func.func @layer_attrs
// CHECK-SAME: (%[[X:[^:]*]]: tensor<16x64xf32>, %[[WG:[^:]*]]: tensor<8x64xf32>, %[[G:[^:]*]]: tensor<8x32x64xf32>, %[[U:[^:]*]]: tensor<8x32x64xf32>, %[[D:[^:]*]]: tensor<8x64x32xf32>, %[[GB:[^:]*]]: tensor<8x32xf32>, %[[UB:[^:]*]]: tensor<8x32xf32>, %[[DB:[^:]*]]: tensor<8x64xf32>, %[[SU:[^:]*]]: tensor<32x64xf32>, %[[SD:[^:]*]]: tensor<64x32xf32>)
func.func @layer_attrs(%x: tensor<16x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
                       %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %gb: tensor<8x32xf32>,
                       %ub: tensor<8x32xf32>, %db: tensor<8x64xf32>, %su: tensor<32x64xf32>,
                       %sd: tensor<64x32xf32>) {
  // capacity_factor and every routed-expert bias.
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = softmax, k = 2, normalize = true> ffn #moe.ffn<activation = silu> router(%[[WG]]) experts(gate %[[G]] up %[[U]] down %[[D]] gate_bias %[[GB]] up_bias %[[UB]] down_bias %[[DB]]) {capacity_factor = 1.250000e+00 : f64} : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x64xf32>) -> tensor<16x64xf32>
  %y0 = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d gate_bias %gb up_bias %ub down_bias %db)
      {capacity_factor = 1.25 : f64}
      : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<8x32xf32>, tensor<8x32xf32>, tensor<8x64xf32>)
      -> tensor<16x64xf32>
  // weights_scale_input with a shared expert (Llama-4).
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = sigmoid_after_topk, k = 1, logits_type = f32> ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu, glu = none> router(%[[WG]]) experts(gate %[[G]] up %[[U]] down %[[D]]) shared({{ ?}}up %[[SU]] down %[[SD]]) {weights_scale_input} : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<32x64xf32>, tensor<64x32xf32>) -> tensor<16x64xf32>
  %y1 = moe.layer %x routing #moe.routing<scoring = sigmoid_after_topk, k = 1, logits_type = f32>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu, glu = none>
      router(%wg) experts(gate %g up %u down %d) shared(up %su down %sd) {weights_scale_input}
      : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<32x64xf32>, tensor<64x32xf32>) -> tensor<16x64xf32>
  // Both unit and float attributes together; top_p and sparsemixer routing on a layer.
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = softmax, k = 4, selection = top_p, top_p = 0.5> ffn #moe.ffn<activation = gelu_tanh, glu = none> router(%[[WG]]) experts({{ ?}}up %[[U]] down %[[D]]) {capacity_factor = 2.000000e+00 : f64, weights_scale_input} : (
  %y2 = moe.layer %x routing #moe.routing<scoring = softmax, k = 4, selection = top_p, top_p = 0.5>
      ffn #moe.ffn<activation = gelu_tanh, glu = none>
      router(%wg) experts(up %u down %d) {capacity_factor = 2.0 : f64, weights_scale_input}
      : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>)
      -> tensor<16x64xf32>
  // CHECK: moe.layer %[[X]] routing #moe.routing<scoring = sparsemixer, k = 2, epsilon = 0.01> ffn #moe.ffn<activation = silu> router(%[[WG]]) experts(gate %[[G]] up %[[U]] down %[[D]]) : (
  %y3 = moe.layer %x routing #moe.routing<scoring = sparsemixer, k = 2, epsilon = 0.01>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<16x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<16x64xf32>
  return
}

// moe.quantize: the stored tensors of a weight, recorded by a quantization pass.
// CHECK-LABEL: func.func @quantize
func.func @quantize(%w: tensor<8x32x64xbf16>, %v: tensor<32x64xf32>) {
  // CHECK: moe.quantize #moe.int_group<bits = 4, group_size = 32, symmetric = false> %{{.*}} : (tensor<8x32x64xbf16>) -> (tensor<8x32x32xi8>, tensor<8x32x2xf32>, tensor<8x32x2xf32>)
  %a:3 = moe.quantize #moe.int_group<bits = 4, group_size = 32, symmetric = false> %w
      : (tensor<8x32x64xbf16>) -> (tensor<8x32x32xi8>, tensor<8x32x2xf32>, tensor<8x32x2xf32>)
  // CHECK: moe.quantize #moe.int_group<bits = 8, group_size = 64> %{{.*}} : (tensor<32x64xf32>) -> (tensor<32x64xi8>, tensor<32x1xf32>)
  %b:2 = moe.quantize #moe.int_group<bits = 8, group_size = 64> %v
      : (tensor<32x64xf32>) -> (tensor<32x64xi8>, tensor<32x1xf32>)
  return
}
