// moe.factorize and moe.latent_product print as they parse (with and without whitening).
// RUN: moe-opt %s | moe-opt | FileCheck %s

// CHECK-LABEL: func.func @latent
// CHECK:         %[[A:.*]], %[[B:.*]] = moe.factorize %{{.*}} rank(16) group(4) : (tensor<8x32x64xbf16>) -> (tensor<8x32x16xf32>, tensor<2x16x64xf32>)
// CHECK:         moe.latent_product %[[A]], %[[B]] : (tensor<8x32x16xf32>, tensor<2x16x64xf32>) -> tensor<8x32x64xbf16>
// CHECK:         moe.factorize %{{.*}} rank(8) group(8) whiten %{{.*}} : (tensor<8x32x64xbf16>, tensor<?x64xf32>) -> (tensor<8x32x8xf32>, tensor<1x8x64xf32>)
func.func @latent(%w: tensor<8x32x64xbf16>, %x: tensor<?x64xf32>)
    -> (tensor<8x32x64xbf16>, tensor<8x32x8xf32>, tensor<1x8x64xf32>) {
  %a, %b = moe.factorize %w rank(16) group(4)
      : (tensor<8x32x64xbf16>) -> (tensor<8x32x16xf32>, tensor<2x16x64xf32>)
  %p = moe.latent_product %a, %b
      : (tensor<8x32x16xf32>, tensor<2x16x64xf32>) -> tensor<8x32x64xbf16>
  %wa, %wb = moe.factorize %w rank(8) group(8) whiten %x
      : (tensor<8x32x64xbf16>, tensor<?x64xf32>) -> (tensor<8x32x8xf32>, tensor<1x8x64xf32>)
  return %p, %wa, %wb : tensor<8x32x64xbf16>, tensor<8x32x8xf32>, tensor<1x8x64xf32>
}
