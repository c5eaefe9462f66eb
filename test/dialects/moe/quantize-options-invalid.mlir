// RUN: moe-opt %s --split-input-file -verify-diagnostics

// The options of moe.quantize: a clipping ratio (router quantization) and GPTQ calibration
// rows, each checked against the encoding and the input.

func.func @clip_out_of_range(%w: tensor<8x64xbf16>) {
  // expected-error @+1 {{'moe.quantize' op clip must be in (0, 1], got 1.5}}
  %q:2 = moe.quantize #moe.int_group<bits = 8, group_size = 64> %w clip(1.5)
      : (tensor<8x64xbf16>) -> (tensor<8x64xi8>, tensor<8x1xf32>)
  return
}

// -----

func.func @clip_asymmetric(%w: tensor<8x64xbf16>) {
  // expected-error @+1 {{'moe.quantize' op clip applies to symmetric #moe.int_group only}}
  %q:3 = moe.quantize #moe.int_group<bits = 8, group_size = 64, symmetric = false> %w clip(0.5)
      : (tensor<8x64xbf16>) -> (tensor<8x64xi8>, tensor<8x1xf32>, tensor<8x1xf32>)
  return
}

// -----

func.func @calibration_columns(%w: tensor<8x32x64xbf16>, %x: tensor<8x16x32xf32>) {
  // expected-error @+1 {{'moe.quantize' op calibration rows must be [..., n, 64] with the input's leading dimensions, got 'tensor<8x16x32xf32>'}}
  %q:2 = moe.quantize #moe.int_group<bits = 4, group_size = 32> %w calibration %x
      : (tensor<8x32x64xbf16>, tensor<8x16x32xf32>) -> (tensor<8x32x32xi8>, tensor<8x32x2xf32>)
  return
}

// -----

func.func @calibration_experts(%w: tensor<8x32x64xbf16>, %x: tensor<4x16x64xf32>) {
  // expected-error @+1 {{'moe.quantize' op calibration rows must be [..., n, 64] with the input's leading dimensions, got 'tensor<4x16x64xf32>'}}
  %q:2 = moe.quantize #moe.int_group<bits = 4, group_size = 32> %w calibration %x
      : (tensor<8x32x64xbf16>, tensor<4x16x64xf32>) -> (tensor<8x32x32xi8>, tensor<8x32x2xf32>)
  return
}

// -----

func.func @calibration_fp8(%w: tensor<256x512xbf16>, %x: tensor<16x512xf32>) {
  // expected-error @+1 {{'moe.quantize' op calibration rows (GPTQ) apply to #moe.int_group only}}
  %q:2 = moe.quantize #moe.fp8_block<128, 128> %w calibration %x
      : (tensor<256x512xbf16>, tensor<16x512xf32>) -> (tensor<256x512xf8E4M3FN>, tensor<2x4xf32>)
  return
}
