// RUN: moe-opt %s --split-input-file --moe-mixed-precision="budget-bits=6 group-size=32 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" -verify-diagnostics

// Option errors (on the valid layer of mixed-precision.mlir):
// RUN: not moe-opt %S/mixed-precision.mlir --moe-mixed-precision="choices=8,3 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=CHOICES
// CHOICES: moe-mixed-precision: choices must be 8 and/or 4 (int_group widths), got 3
// RUN: not moe-opt %S/mixed-precision.mlir --moe-mixed-precision="choices=4,4 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=TWICE
// TWICE: moe-mixed-precision: choices lists 4 twice
// RUN: not moe-opt %S/mixed-precision.mlir --moe-mixed-precision="budget-bits=3.5 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=BUDGET
// BUDGET: moe-mixed-precision: budget-bits=3.5 is below the narrowest choice, 4 bits
// RUN: not moe-opt %S/mixed-precision.mlir --moe-mixed-precision="group-size=0 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=GROUP
// GROUP: moe-mixed-precision: group-size must be positive, got 0
// RUN: not moe-opt %S/mixed-precision.mlir --moe-mixed-precision="group-size=32 weights=%golden/mixtral/ckpt" 2>&1 | FileCheck %s --check-prefix=NOCALIB
// NOCALIB: moe-mixed-precision: needs calibration hidden states

// Weights that are already quantized.
func.func @layer_0(%x: tensor<?x64xbf16>, %q: tensor<8x32x64xi8>, %qs: tensor<8x32x2xf32>)
    -> tensor<?x64xbf16> attributes {moe.layer_index = 0 : i64} {
  %r = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x64xbf16>
  // expected-note @+1 {{quantized here}}
  %g = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %q, %qs
      : (tensor<8x32x64xi8>, tensor<8x32x2xf32>) -> tensor<8x32x64xbf16>
  %u = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight" experts(8) : tensor<8x64x32xbf16>
  // expected-error @+1 {{'moe.layer' op moe-mixed-precision: the gate_proj is already quantized (moe.dequantize #moe.int_group<bits = 8, group_size = 32>); mixed precision chooses widths for unquantized weights}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// A group size that does not divide an input dimension (the down projection's 48).
func.func @layer_0(%x: tensor<?x64xbf16>, %r: tensor<8x64xbf16>, %g: tensor<8x48x64xbf16>,
    %u: tensor<8x48x64xbf16>, %d: tensor<8x64x48xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.layer' op moe-mixed-precision: group-size 32 does not divide the input dimension 48 of the down_proj ('tensor<8x64x48xbf16>')}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x48x64xbf16>, tensor<8x48x64xbf16>,
         tensor<8x64x48xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// Super experts pinned at the widest width that leave the others less than the narrowest.
func.func @layer_0(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> attributes {moe.layer_index = 0 : i64} {
  %r = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x64xbf16>
  %g = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight" experts(8) : tensor<8x64x32xbf16>
  // expected-error @+1 {{'moe.layer' op moe-mixed-precision: bit allocation: the budget of -49152 bits is below the narrowest allocation (24576 bits) (budget-bits=6, 7 super experts pinned at 8 bits)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d) {moe.super_experts = array<i64: 0, 1, 2, 3, 4, 5, 6>}
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
