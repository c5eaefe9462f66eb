// GPTQ writes the calibration inputs the weight writer reads, and needs the checkpoint and
// calibration states to compute them.
// RUN: not moe-opt %s --moe-quantize-experts="method=gptq" 2>&1 | FileCheck %s --check-prefix=DATADIR
// DATADIR: moe-quantize-experts: method=gptq writes the calibration inputs the weight writer reads: give the `data-dir` option (a folder) or run it from moe-compile
// RUN: not moe-opt %s --moe-quantize-experts="method=gptq data-dir=%t" 2>&1 | FileCheck %s --check-prefix=WEIGHTS
// WEIGHTS: moe-quantize-experts: needs the checkpoint's weights
// RUN: not moe-opt %s --moe-quantize-experts="method=gptq data-dir=%t weights=%golden/mixtral/ckpt" 2>&1 | FileCheck %s --check-prefix=CALIB
// CALIB: moe-quantize-experts: needs calibration hidden states
// RUN: not moe-opt %s --moe-quantize-router 2>&1 | FileCheck %s --check-prefix=ROUTER
// ROUTER: moe-quantize-router: needs the checkpoint's weights

func.func @layer(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %r = moe.weight "router" : tensor<8x64xbf16>
  %g = moe.weight "g.{e}" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "u.{e}" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "d.{e}" experts(8) : tensor<8x64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
