// RUN: moe-opt %s --moe-latent-factorize="rank=16" --moe-quantize-experts="bits=8 group-size=32" --split-input-file -verify-diagnostics
// RUN: not moe-opt %s --moe-latent-factorize="rank=16" --moe-quantize-experts="group-size=16 latent-basis=drop" 2>&1 | FileCheck %s --check-prefix=BASIS
// BASIS: moe-quantize-experts: latent-basis must be keep or quantize, got 'drop'
// RUN: not moe-opt %s --moe-latent-factorize="rank=16" --moe-quantize-experts="format=fp8" 2>&1 | FileCheck %s --check-prefix=FP8
// FP8: error: moe-quantize-experts: format=fp8 does not quantize latent factors (a gate or up weight is a moe.latent_product); use format=int
// RUN: not moe-opt %s --moe-latent-factorize="rank=16" --moe-quantize-experts="method=gptq group-size=16" 2>&1 | FileCheck %s --check-prefix=GPTQ
// GPTQ: error: moe-quantize-experts: method=gptq does not quantize latent factors (a gate or up weight is a moe.latent_product); use method=rtn, which quantizes the factors
// RUN: not moe-opt %s --moe-quantize-experts="group-size=16" --moe-latent-factorize="rank=16" 2>&1 | FileCheck %s --check-prefix=ORDER
// ORDER: error: moe-latent-factorize: the gate weight is already quantized; factorize first, then quantize (run moe-latent-factorize before moe-quantize-experts, which then quantizes the factors)

// Latent factors are quantized in groups along the rank: group-size 32 does
// not divide rank 16 (it divides every input dimension of the layer).
func.func @group_does_not_divide_rank(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %r = moe.weight "router" : tensor<8x64xf32>
  %g = moe.weight "g.{e}" experts(8) : tensor<8x32x64xf32>
  %u = moe.weight "u.{e}" experts(8) : tensor<8x32x64xf32>
  %d = moe.weight "d.{e}" experts(8) : tensor<8x64x32xf32>
  // expected-error @+1 {{moe-quantize-experts: group-size 32 does not divide the latent rank 16 of the factors 'tensor<8x32x16xf32>'; latent factors are quantized in groups along the rank}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
