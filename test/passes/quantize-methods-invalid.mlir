// RUN: moe-opt %s --moe-quantize-experts="format=mxfp4" --split-input-file -verify-diagnostics
// RUN: not moe-opt %s --moe-quantize-experts="format=nf4" 2>&1 | FileCheck %s --check-prefix=FORMAT
// FORMAT: moe-quantize-experts: format must be int, fp8 or mxfp4, got 'nf4'
// RUN: not moe-opt %s --moe-quantize-experts="method=awq" 2>&1 | FileCheck %s --check-prefix=METHOD
// METHOD: moe-quantize-experts: method must be rtn or gptq, got 'awq'
// RUN: not moe-opt %s --moe-quantize-experts="method=gptq format=fp8" 2>&1 | FileCheck %s --check-prefix=GPTQFP8
// GPTQFP8: moe-quantize-experts: method=gptq chooses integer levels; it does not apply to format=fp8
// RUN: not moe-opt %s --moe-quantize-experts="method=gptq" 2>&1 | FileCheck %s --check-prefix=DECOMPOSED
// DECOMPOSED: moe-quantize-experts: method=gptq needs the routing of a moe.layer to weight its calibration inputs; run it before moe-decompose
// RUN: not moe-opt %s --moe-quantize-router="bits=3" 2>&1 | FileCheck %s --check-prefix=ROUTERBITS
// ROUTERBITS: moe-quantize-router: bits must be 8 or 4, got 3

func.func @mxfp4_block(%x: tensor<?x48xf32>, %off: tensor<9xi32>,
    %u: tensor<8x32x48xf32>, %d: tensor<8x48x32xf32>) -> tensor<?x48xf32> {
  // expected-error @+1 {{moe-quantize-experts: mxfp4 shares one exponent among 32 inputs and needs an input dimension divisible by 32, got 48 in a weight of type 'tensor<8x32x48xf32>'}}
  %y = moe.experts #moe.ffn<activation = gelu, glu = none> %x, %off up %u down %d
      : (tensor<?x48xf32>, tensor<9xi32>, tensor<8x32x48xf32>, tensor<8x48x32xf32>)
      -> tensor<?x48xf32>
  return %y : tensor<?x48xf32>
}
