// RUN: moe-opt %s --split-input-file --moe-prune-micro-experts="weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" -verify-diagnostics

// Option and data errors (on the valid layers of the Mixtral golden):
// RUN: moe-translate --import-hf %golden/mixtral/ckpt -o %t.mixtral.mlir
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-micro-experts="fraction=1.0 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=FRACTION
// FRACTION: moe-prune-micro-experts: fraction must be in [0, 1) (the share of a layer's channels to remove), got 1
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-micro-experts="beta=1.5 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=BETA
// BETA: moe-prune-micro-experts: beta must be in [0, 1], got 1.5
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-micro-experts="width-multiple=0 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=MULTIPLE
// MULTIPLE: moe-prune-micro-experts: width-multiple must be at least 1, got 0
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-micro-experts="weights=%golden/mixtral/ckpt" 2>&1 | FileCheck %s --check-prefix=NOCALIB
// NOCALIB: moe-prune-micro-experts: needs calibration hidden states
// Gradients for 7 tokens, calibration states for 64.
// RUN: %make_input %t.grad7.safetensors 7 64 --name layer0.grad_output
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-micro-experts="gradients=%t.grad7.safetensors weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=GRADSHAPE
// GRADSHAPE: moe-prune-micro-experts: {{.*}}grad7.safetensors: 'layer0.grad_output' must be [64, 64] (one gradient per calibration token), got [7, 64]
// RUN: %make_input %t.gradother.safetensors 64 64 --name layer9.grad_output
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-micro-experts="gradients=%t.gradother.safetensors weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=GRADNAME
// GRADNAME: has no 'layer0.grad_output' and no 'grad_output' tensor
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-micro-experts="gradients=%t.missing weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=GRADFILE
// GRADFILE: moe-prune-micro-experts: {{.*}}missing

func.func @decomposed(%x: tensor<?x64xbf16>, %o: tensor<9xi32>, %g: tensor<8x32x64xbf16>,
    %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.experts' op moe-prune-micro-experts prunes moe.layer ops; run it before moe-decompose}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %o gate %g up %u down %d
      : (tensor<?x64xbf16>, tensor<9xi32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

func.func @super_out_of_range(%x: tensor<?x64xbf16>, %r: tensor<8x64xbf16>, %g: tensor<8x32x64xbf16>,
    %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.layer' op moe-prune-micro-experts: moe.super_experts names expert 9 of a layer with 8 experts}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d) {moe.super_experts = array<i64: 9>}
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
