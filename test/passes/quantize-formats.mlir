// RUN: moe-opt %s --moe-quantize-experts="format=fp8" --split-input-file | FileCheck %s --check-prefix=FP8
// RUN: moe-opt %s --moe-quantize-experts="format=mxfp4" --split-input-file | FileCheck %s --check-prefix=MX

// fp8_block as DeepSeek-V3 ships it: 128x128 blocks (edge blocks partial: ceil), e4m3 values, f32 scales.
// FP8-LABEL: func.func @experts
// FP8:         %[[Q:.*]]:2 = moe.quantize #moe.fp8_block<128, 128> %{{.*}} : (tensor<4x256x192xbf16>) -> (tensor<4x256x192xf8E4M3FN>, tensor<4x2x2xf32>)
// FP8:         moe.dequantize #moe.fp8_block<128, 128> %[[Q]]#0, %[[Q]]#1 : (tensor<4x256x192xf8E4M3FN>, tensor<4x2x2xf32>) -> tensor<4x256x192xf32>
// FP8:         moe.quantize #moe.fp8_block<128, 128> {{.*}} -> (tensor<4x192x256xf8E4M3FN>, tensor<4x2x2xf32>)
// mxfp4 as GPT-OSS ships it, blocks of 32 inputs as 16 bytes and one e8m0 byte each.
// MX-LABEL: func.func @experts
// MX:         %[[Q:.*]]:2 = moe.quantize #moe.mxfp4 %{{.*}} : (tensor<4x256x192xbf16>) -> (tensor<4x256x6x16xui8>, tensor<4x256x6xui8>)
// MX:         moe.dequantize #moe.mxfp4 %[[Q]]#0, %[[Q]]#1 : (tensor<4x256x6x16xui8>, tensor<4x256x6xui8>) -> tensor<4x256x192xf32>
func.func @experts(%x: tensor<?x192xbf16>, %off: tensor<5xi32>) -> tensor<?x192xbf16> {
  %u = moe.weight "u.{e}" experts(4) : tensor<4x256x192xbf16>
  %d = moe.weight "d.{e}" experts(4) : tensor<4x192x256xbf16>
  %y = moe.experts #moe.ffn<activation = gelu, glu = none> %x, %off up %u down %d
      : (tensor<?x192xbf16>, tensor<5xi32>, tensor<4x256x192xbf16>, tensor<4x192x256xbf16>)
      -> tensor<?x192xbf16>
  return %y : tensor<?x192xbf16>
}

// -----

// An FP8 checkpoint keeps its own block scales: only the plain weight is quantized.
// FP8-LABEL: func.func @already_fp8
// FP8:         %[[V:.*]] = moe.weight "u.{e}"
// FP8:         %[[S:.*]] = moe.weight "u.{e}_scale_inv"
// FP8:         %[[U:.*]] = moe.dequantize #moe.fp8_block<128, 128> %[[V]], %[[S]]
// FP8-COUNT-1: moe.quantize
// FP8-NOT:     moe.quantize
// FP8:         moe.experts {{.*}} up %[[U]] down
func.func @already_fp8(%x: tensor<?x192xbf16>, %off: tensor<5xi32>) -> tensor<?x192xbf16> {
  %v = moe.weight "u.{e}" experts(4) : tensor<4x256x192xf8E4M3FN>
  %s = moe.weight "u.{e}_scale_inv" experts(4) : tensor<4x2x2xf32>
  %u = moe.dequantize #moe.fp8_block<128, 128> %v, %s
      : (tensor<4x256x192xf8E4M3FN>, tensor<4x2x2xf32>) -> tensor<4x256x192xbf16>
  %d = moe.weight "d.{e}" experts(4) : tensor<4x192x256xbf16>
  %y = moe.experts #moe.ffn<activation = gelu, glu = none> %x, %off up %u down %d
      : (tensor<?x192xbf16>, tensor<5xi32>, tensor<4x256x192xbf16>, tensor<4x192x256xbf16>)
      -> tensor<?x192xbf16>
  return %y : tensor<?x192xbf16>
}
