// Round trip of moe.scale_channels and moe.scale_columns (moe-smooth-experts' fold), in the
// custom and in the generic form.
// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s -mlir-print-op-generic | moe-opt | FileCheck %s

// CHECK-LABEL: func.func @scale_channels
// CHECK: moe.scale_channels %{{.*}}, %{{.*}} : (tensor<?x64xbf16>, tensor<64xf32>) -> tensor<?x64xbf16>
// CHECK: moe.scale_channels %{{.*}}, %{{.*}} : (tensor<7x64xf32>, tensor<64xbf16>) -> tensor<7x64xf32>
func.func @scale_channels(%x: tensor<?x64xbf16>, %y: tensor<7x64xf32>, %s: tensor<64xf32>,
                          %t: tensor<64xbf16>) -> (tensor<?x64xbf16>, tensor<7x64xf32>) {
  %a = moe.scale_channels %x, %s : (tensor<?x64xbf16>, tensor<64xf32>) -> tensor<?x64xbf16>
  %b = moe.scale_channels %y, %t : (tensor<7x64xf32>, tensor<64xbf16>) -> tensor<7x64xf32>
  return %a, %b : tensor<?x64xbf16>, tensor<7x64xf32>
}

// CHECK-LABEL: func.func @scale_columns
// CHECK: moe.scale_columns %{{.*}}, %{{.*}} : (tensor<8x32x64xbf16>, tensor<64xf32>) -> tensor<8x32x64xbf16>
// CHECK: moe.scale_columns %{{.*}}, %{{.*}} : (tensor<1x64xbf16>, tensor<64xf32>) -> tensor<1x64xbf16>
func.func @scale_columns(%s: tensor<64xf32>) -> (tensor<8x32x64xbf16>, tensor<1x64xbf16>) {
  %w = moe.weight "experts.{e}.w1" experts(8) : tensor<8x32x64xbf16>
  %g = moe.weight "shared_expert_gate" : tensor<1x64xbf16>
  %ws = moe.scale_columns %w, %s : (tensor<8x32x64xbf16>, tensor<64xf32>) -> tensor<8x32x64xbf16>
  %gs = moe.scale_columns %g, %s : (tensor<1x64xbf16>, tensor<64xf32>) -> tensor<1x64xbf16>
  return %ws, %gs : tensor<8x32x64xbf16>, tensor<1x64xbf16>
}
