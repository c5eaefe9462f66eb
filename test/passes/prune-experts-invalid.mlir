// RUN: moe-opt %s --split-input-file --moe-prune-experts="keep=3 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" -verify-diagnostics

// Option and calibration errors (on the valid layers of the Mixtral golden):
// RUN: moe-translate --import-hf %golden/mixtral/ckpt -o %t.mixtral.mlir
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-experts="weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=NOKEEP
// NOKEEP: moe-prune-experts: give the number of experts to keep per layer (keep=N, N >= 1), got 0
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-experts="keep=4 weights=%golden/mixtral/ckpt" 2>&1 | FileCheck %s --check-prefix=NOCALIB
// NOCALIB: moe-prune-experts: needs calibration hidden states: give the `calibration` option
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-experts="keep=4 calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=NOWEIGHTS
// NOWEIGHTS: moe-prune-experts: needs the checkpoint's weights
// A calibration file with neither layer<N>.hidden_states nor hidden_states: the layer has
// no calibration data.
// RUN: %make_input %t.other.safetensors 4 64 --name layer7.hidden_states
// RUN: not moe-opt %t.mixtral.mlir --moe-prune-experts="keep=4 weights=%golden/mixtral/ckpt calibration=%t.other.safetensors" 2>&1 | FileCheck %s --check-prefix=NOLAYER
// NOLAYER: other.safetensors: no 'layer0.hidden_states' and no 'hidden_states' tensor

func.func @keep_below_k(%x: tensor<?x64xbf16>, %r: tensor<8x64xbf16>, %g: tensor<8x32x64xbf16>,
    %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.layer' op moe-prune-experts: keep=3 is below the layer's k=4; every token selects k distinct experts}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 4> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

func.func @keep_above_experts(%x: tensor<?x64xbf16>, %r: tensor<2x64xbf16>, %g: tensor<2x32x64xbf16>,
    %u: tensor<2x32x64xbf16>, %d: tensor<2x64x32xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.layer' op moe-prune-experts: keep=3 exceeds the layer's 2 experts}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 1> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<2x64xbf16>, tensor<2x32x64xbf16>, tensor<2x32x64xbf16>,
         tensor<2x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

func.func @group_limited(%x: tensor<?x64xbf16>, %r: tensor<8x64xbf16>, %c: tensor<8xf32>,
    %g: tensor<8x32x64xbf16>, %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.layer' op moe-prune-experts: the layer routes group-limited (n_group=4); removing experts would change the expert groups, which is not supported}}
  %y = moe.layer %x routing #moe.routing<scoring = sigmoid, k = 2, selection = group_limited, normalize = true, n_group = 4, topk_group = 2, group_score = top2_sum>
      ffn #moe.ffn<activation = silu> router(%r correction_bias %c) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8xf32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

func.func @too_many_super_experts(%x: tensor<?x64xbf16>, %r: tensor<8x64xbf16>, %g: tensor<8x32x64xbf16>,
    %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.layer' op moe-prune-experts: the layer has 4 super experts (moe.super_experts), more than keep=3; super experts are never pruned}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d) {moe.super_experts = array<i64: 0, 1, 5, 7>}
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

func.func @super_expert_out_of_range(%x: tensor<?x64xbf16>, %r: tensor<8x64xbf16>, %g: tensor<8x32x64xbf16>,
    %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.layer' op moe-prune-experts: moe.super_experts names expert 9 of a layer with 8 experts}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d) {moe.super_experts = array<i64: 9>}
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

func.func @decomposed(%x: tensor<?x64xbf16>, %r: tensor<8x64xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.route' op moe-prune-experts prunes moe.layer ops; run it before moe-decompose}}
  %ids, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %r
      : (tensor<?x64xbf16>, tensor<8x64xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}
