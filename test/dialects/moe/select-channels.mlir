// Round trip of moe.select_channels (moe-prune-micro-experts' per-expert channel
// selection), in the custom and in the generic form.
// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s -mlir-print-op-generic | moe-opt | FileCheck %s

// CHECK-LABEL: func.func @select
// CHECK: moe.select_channels %{{.*}} dim(1) channels([0, 2, 3, 1, -1, 3]) : (tensor<2x4x64xbf16>) -> tensor<2x3x64xbf16>
// CHECK: moe.select_channels %{{.*}} dim(2) channels([3, 0, 1, 2]) : (tensor<2x64x4xbf16>) -> tensor<2x64x2xbf16>
// CHECK: moe.select_channels %{{.*}} dim(1) channels([1, -1]) : (tensor<2x4xf32>) -> tensor<2x1xf32>
func.func @select() -> (tensor<2x3x64xbf16>, tensor<2x64x2xbf16>, tensor<2x1xf32>) {
  %g = moe.weight "g.{e}" experts(2) : tensor<2x4x64xbf16>
  %d = moe.weight "d.{e}" experts(2) : tensor<2x64x4xbf16>
  %b = moe.weight "b" : tensor<2x4xf32>
  %g2 = moe.select_channels %g dim(1) channels([0, 2, 3, 1, -1, 3])
      : (tensor<2x4x64xbf16>) -> tensor<2x3x64xbf16>
  %d2 = moe.select_channels %d dim(2) channels([3, 0, 1, 2])
      : (tensor<2x64x4xbf16>) -> tensor<2x64x2xbf16>
  %b2 = moe.select_channels %b dim(1) channels([1, -1]) : (tensor<2x4xf32>) -> tensor<2x1xf32>
  return %g2, %d2, %b2 : tensor<2x3x64xbf16>, tensor<2x64x2xbf16>, tensor<2x1xf32>
}
