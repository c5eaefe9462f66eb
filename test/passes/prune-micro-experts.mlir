// RUN: moe-opt %s --moe-prune-micro-experts="fraction=0.125 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" | FileCheck %s

// Mixtral layer 0 of the golden checkpoint with down columns 5..8 of every expert zero
// (a concat of the stored columns and a zero constant). Such a channel scores 0 under
// CAMERA-P and ranks last: removing 1/8 of the layer's 256 channels removes exactly those
// 32, so every expert keeps the 28 channels 0..4 and 9..31, in order, and its first
// projections and down projection keep channels 0..4 and 9..31 of expert e (one
// moe.select_channels per weight; no zero padding is needed: every expert has the stored
// width 28).
// CHECK-LABEL: func.func @layer_0
// CHECK-SAME:    "moe.report.moe-prune-micro-experts" = {channels_after = 224 : i64, channels_before = 256 : i64, parameter_reduction = 1.250000e-01 : f64, score = "camera-p", width = 28 : i64, widths = array<i64: 28, 28, 28, 28, 28, 28, 28, 28>}
// CHECK:         %[[G:.*]] = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight"
// CHECK:         %[[DZ:.*]] = tensor.concat dim(2)
// CHECK:         %[[GK:.*]] = moe.select_channels %[[G]] dim(1) channels([0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
// CHECK-SAME:    : (tensor<8x32x64xbf16>) -> tensor<8x28x64xbf16>
// CHECK:         %[[UK:.*]] = moe.select_channels %{{.*}} dim(1) channels({{.*}}) : (tensor<8x32x64xbf16>) -> tensor<8x28x64xbf16>
// CHECK:         %[[DK:.*]] = moe.select_channels %[[DZ]] dim(2) channels([0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
// CHECK-SAME:    : (tensor<8x64x32xbf16>) -> tensor<8x64x28xbf16>
// CHECK:         moe.layer %{{.*}} experts(gate %[[GK]] up %[[UK]] down %[[DK]]) {expert_widths = array<i64: 28, 28, 28, 28, 28, 28, 28, 28>}
// CHECK-SAME:    (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x28x64xbf16>, tensor<8x28x64xbf16>, tensor<8x64x28xbf16>) -> tensor<?x64xbf16>
func.func @layer_0(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> attributes {moe.layer_index = 0 : i64} {
  %r = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x64xbf16>
  %g = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight" experts(8) : tensor<8x64x32xbf16>
  %d0 = tensor.extract_slice %d[0, 0, 0] [8, 64, 5] [1, 1, 1] : tensor<8x64x32xbf16> to tensor<8x64x5xbf16>
  %zero = arith.constant dense<0.0> : tensor<8x64x4xbf16>
  %d1 = tensor.extract_slice %d[0, 0, 9] [8, 64, 23] [1, 1, 1] : tensor<8x64x32xbf16> to tensor<8x64x23xbf16>
  %dz = tensor.concat dim(2) %d0, %zero, %d1 : (tensor<8x64x5xbf16>, tensor<8x64x4xbf16>, tensor<8x64x23xbf16>) -> tensor<8x64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true>
      ffn #moe.ffn<activation = silu> router(%r) experts(gate %g up %u down %dz)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
