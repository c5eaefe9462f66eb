// RUN: moe-opt %s --split-input-file --moe-smooth-experts="weights=%golden/qwen2_moe/ckpt calibration=%golden/qwen2_moe/T64/input.safetensors" -verify-diagnostics

// Option and calibration errors (on the valid layers of smooth-experts.mlir):
// RUN: not moe-opt %S/smooth-experts.mlir --split-input-file --moe-smooth-experts="weights=%golden/qwen2_moe/ckpt" 2>&1 | FileCheck %s --check-prefix=NOCALIB
// NOCALIB: moe-smooth-experts: needs calibration hidden states: give the `calibration` option
// RUN: not moe-opt %S/smooth-experts.mlir --split-input-file --moe-smooth-experts="calibration=%golden/qwen2_moe/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=NOWEIGHTS
// NOWEIGHTS: moe-smooth-experts: needs the checkpoint's weights
// RUN: not moe-opt %S/smooth-experts.mlir --split-input-file --moe-smooth-experts="alpha=1.5 weights=%golden/qwen2_moe/ckpt calibration=%golden/qwen2_moe/T64/input.safetensors" 2>&1 | FileCheck %s --check-prefix=ALPHA
// ALPHA: moe-smooth-experts: alpha must be in [0, 1], got 1.5
// RUN: %make_input %t.narrow.safetensors 4 32
// RUN: not moe-opt %S/smooth-experts.mlir --split-input-file --moe-smooth-experts="weights=%golden/qwen2_moe/ckpt calibration=%t.narrow.safetensors" 2>&1 | FileCheck %s --check-prefix=NARROW
// NARROW: narrow.safetensors: 'hidden_states' must be [tokens >= 1, 64]

// Smoothing after quantization would change the quantized weights' values off their grid:
// the pass refuses and says which weight and in which order to run the passes.
func.func @layer_1(%x: tensor<?x64xbf16>, %q: tensor<8x32x64xi8>, %qs: tensor<8x32x2xf32>)
    -> tensor<?x64xbf16> attributes {moe.layer_index = 1 : i64} {
  %r = moe.weight "model.layers.1.mlp.gate.weight" : tensor<8x64xbf16>
  // expected-note @+1 {{quantized here}}
  %g = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %q, %qs
      : (tensor<8x32x64xi8>, tensor<8x32x2xf32>) -> tensor<8x32x64xbf16>
  %u = moe.weight "model.layers.1.mlp.experts.{e}.up_proj.weight" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "model.layers.1.mlp.experts.{e}.down_proj.weight" experts(8) : tensor<8x64x32xbf16>
  // expected-error @+1 {{'moe.layer' op moe-smooth-experts: the gate_proj is already quantized (moe.dequantize #moe.int_group<bits = 8, group_size = 32>); smoothing must come before quantization (run moe-smooth-experts before moe-quantize-experts, moe-quantize-router and moe-mixed-precision, on unquantized weights)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 4> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// The scales are one per hidden channel: the hidden size must be known.
func.func @layer_1(%x: tensor<?x?xbf16>) -> tensor<?x?xbf16> attributes {moe.layer_index = 1 : i64} {
  %r = moe.weight "model.layers.1.mlp.gate.weight" : tensor<8x64xbf16>
  %g = moe.weight "model.layers.1.mlp.experts.{e}.gate_proj.weight" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "model.layers.1.mlp.experts.{e}.up_proj.weight" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "model.layers.1.mlp.experts.{e}.down_proj.weight" experts(8) : tensor<8x64x32xbf16>
  // expected-error @+1 {{'moe.layer' op moe-smooth-experts needs a static hidden size, got 'tensor<?x?xbf16>'}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 4> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x?xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x?xbf16>
  return %y : tensor<?x?xbf16>
}
