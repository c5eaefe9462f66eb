// RUN: moe-opt %s --moe-quantize-experts="bits=8 group-size=128" --split-input-file -verify-diagnostics
// RUN: not moe-opt %s --moe-quantize-experts="bits=3" 2>&1 | FileCheck %s --check-prefix=BITS
// BITS: moe-quantize-experts: bits must be 8 or 4, got 3

func.func @group_does_not_divide(%x: tensor<?x64xf32>, %off: tensor<9xi32>,
    %g: tensor<8x32x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{moe-quantize-experts: group-size 128 does not divide the input dimension 64 of a weight of type 'tensor<8x32x64xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
