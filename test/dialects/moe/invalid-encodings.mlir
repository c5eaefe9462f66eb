// Every diagnostic of the weight encodings' storage checks (WeightEncodingAttrInterface::
// verifyStorage), reported by moe.dequantize.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

// A rank-1 result.
func.func @f(%s0: tensor<256xf8E4M3FN>, %s1: tensor<2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op a dequantized weight must be a static tensor of rank >= 2, got 'tensor<256xbf16>'}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0, %s1
      : (tensor<256xf8E4M3FN>, tensor<2xf32>) -> tensor<256xbf16>
  return
}

// -----

// A dynamic result.
func.func @f(%s0: tensor<64x1x16xui8>, %s1: tensor<64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op a dequantized weight must be a static tensor of rank >= 2, got 'tensor<?x32xbf16>'}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<64x1x16xui8>, tensor<64x1xui8>) -> tensor<?x32xbf16>
  return
}

// -----

// fp8_block with one stored tensor.
func.func @f(%s0: tensor<256x256xf8E4M3FN>) {
  // expected-error @+1 {{'moe.dequantize' op fp8_block takes 2 stored tensors, got 1}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0
      : (tensor<256x256xf8E4M3FN>) -> tensor<256x256xbf16>
  return
}

// -----

// mxfp4 with three stored tensors.
func.func @f(%s0: tensor<64x1x16xui8>, %s1: tensor<64x1xui8>, %s2: tensor<64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 takes 2 stored tensors, got 3}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1, %s2
      : (tensor<64x1x16xui8>, tensor<64x1xui8>, tensor<64x1xui8>) -> tensor<64x32xbf16>
  return
}

// -----

// Symmetric int_group with zero points.
func.func @f(%s0: tensor<32x64xi8>, %s1: tensor<32x2xf32>, %s2: tensor<32x2xi8>) {
  // expected-error @+1 {{'moe.dequantize' op int_group takes 2 stored tensors, got 3}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %s0, %s1, %s2
      : (tensor<32x64xi8>, tensor<32x2xf32>, tensor<32x2xi8>) -> tensor<32x64xf32>
  return
}

// -----

// Asymmetric int_group without zero points.
func.func @f(%s0: tensor<32x64xi8>, %s1: tensor<32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group takes 3 stored tensors, got 2}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32, symmetric = false> %s0, %s1
      : (tensor<32x64xi8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// No stored tensors at all (the custom form cannot spell an empty operand list).
func.func @f() {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 takes 2 stored tensors, got 0}}
  %w = "moe.dequantize"() <{encoding = #moe.mxfp4}> : () -> tensor<64x32xbf16>
  return
}

// -----

// A dynamically shaped stored tensor.
func.func @f(%s0: tensor<256x256xf8E4M3FN>, %s1: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op stored tensors must be statically shaped, got 'tensor<?x2xf32>'}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0, %s1
      : (tensor<256x256xf8E4M3FN>, tensor<?x2xf32>) -> tensor<256x256xbf16>
  return
}

// -----

// fp8_block values that are not FP8.
func.func @f(%s0: tensor<256x256xbf16>, %s1: tensor<2x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op fp8_block values must be f8E4M3FN or f8E5M2, got 'bf16'}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0, %s1
      : (tensor<256x256xbf16>, tensor<2x2xf32>) -> tensor<256x256xbf16>
  return
}

// -----

// fp8_block values of the wrong FP8 type.
func.func @f(%s0: tensor<256x256xf8E8M0FNU>, %s1: tensor<2x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op fp8_block values must be f8E4M3FN or f8E5M2, got 'f8E8M0FNU'}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0, %s1
      : (tensor<256x256xf8E8M0FNU>, tensor<2x2xf32>) -> tensor<256x256xbf16>
  return
}

// -----

// fp8_block values of another shape.
func.func @f(%s0: tensor<256x128xf8E4M3FN>, %s1: tensor<2x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op fp8_block values shape must equal the result shape}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0, %s1
      : (tensor<256x128xf8E4M3FN>, tensor<2x2xf32>) -> tensor<256x256xbf16>
  return
}

// -----

// fp8_block scales that are not f32.
func.func @f(%s0: tensor<256x256xf8E4M3FN>, %s1: tensor<2x2xbf16>) {
  // expected-error @+1 {{'moe.dequantize' op fp8_block scales must be f32, got 'bf16'}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0, %s1
      : (tensor<256x256xf8E4M3FN>, tensor<2x2xbf16>) -> tensor<256x256xbf16>
  return
}

// -----

// fp8_block scales of the wrong rank.
func.func @f(%s0: tensor<8x256x256xf8E4M3FN>, %s1: tensor<2x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op fp8_block scales must have rank 3, got 'tensor<2x2xf32>'}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0, %s1
      : (tensor<8x256x256xf8E4M3FN>, tensor<2x2xf32>) -> tensor<8x256x256xbf16>
  return
}

// -----

// fp8_block scales with another expert count.
func.func @f(%s0: tensor<8x256x256xf8E4M3FN>, %s1: tensor<4x2x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op fp8_block scales dimension 0 is 4 but the result's is 8}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0, %s1
      : (tensor<8x256x256xf8E4M3FN>, tensor<4x2x2xf32>) -> tensor<8x256x256xbf16>
  return
}

// -----

// fp8_block scales not one per block (ceil(200 / 128) = 2 columns).
func.func @f(%s0: tensor<256x200xf8E4M3FN>, %s1: tensor<2x1xf32>) {
  // expected-error @+1 {{'moe.dequantize' op fp8_block scales must be 2x2 in their last two dimensions (one per block), got 2x1}}
  %w = moe.dequantize #moe.fp8_block<128, 128> %s0, %s1
      : (tensor<256x200xf8E4M3FN>, tensor<2x1xf32>) -> tensor<256x200xbf16>
  return
}

// -----

// mxfp4 blocks that are not bytes.
func.func @f(%s0: tensor<64x1x16xi16>, %s1: tensor<64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 blocks must be 8-bit integers, got 'i16'}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<64x1x16xi16>, tensor<64x1xui8>) -> tensor<64x32xbf16>
  return
}

// -----

// mxfp4 scales that are not bytes.
func.func @f(%s0: tensor<64x1x16xui8>, %s1: tensor<64x1xf8E8M0FNU>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 scales must be 8-bit integers, got 'f8E8M0FNU'}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<64x1x16xui8>, tensor<64x1xf8E8M0FNU>) -> tensor<64x32xbf16>
  return
}

// -----

// mxfp4 input dimension not a multiple of 32.
func.func @f(%s0: tensor<64x1x16xui8>, %s1: tensor<64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 needs the input dimension (48) to be a multiple of 32}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<64x1x16xui8>, tensor<64x1xui8>) -> tensor<64x48xbf16>
  return
}

// -----

// mxfp4 blocks of the wrong rank.
func.func @f(%s0: tensor<64x16xui8>, %s1: tensor<64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 blocks must have rank 3, got 'tensor<64x16xui8>'}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<64x16xui8>, tensor<64x1xui8>) -> tensor<64x32xbf16>
  return
}

// -----

// mxfp4 blocks with another expert count.
func.func @f(%s0: tensor<4x64x1x16xui8>, %s1: tensor<8x64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 blocks dimension 0 is 4 but the result's is 8}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<4x64x1x16xui8>, tensor<8x64x1xui8>) -> tensor<8x64x32xbf16>
  return
}

// -----

// mxfp4 scales of the wrong rank.
func.func @f(%s0: tensor<64x1x16xui8>, %s1: tensor<64x1x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 scales must have rank 2, got 'tensor<64x1x1xui8>'}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<64x1x16xui8>, tensor<64x1x1xui8>) -> tensor<64x32xbf16>
  return
}

// -----

// mxfp4 scales with another expert count.
func.func @f(%s0: tensor<8x64x1x16xui8>, %s1: tensor<2x64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 scales dimension 0 is 2 but the result's is 8}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<8x64x1x16xui8>, tensor<2x64x1xui8>) -> tensor<8x64x32xbf16>
  return
}

// -----

// mxfp4 blocks with the wrong number of rows.
func.func @f(%s0: tensor<32x1x16xui8>, %s1: tensor<64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 blocks must end in 64x1x16 for a result of 64x32}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<32x1x16xui8>, tensor<64x1xui8>) -> tensor<64x32xbf16>
  return
}

// -----

// mxfp4 blocks not 16 bytes each.
func.func @f(%s0: tensor<64x2x8xui8>, %s1: tensor<64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 blocks must end in 64x1x16 for a result of 64x32}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<64x2x8xui8>, tensor<64x1xui8>) -> tensor<64x32xbf16>
  return
}

// -----

// mxfp4 scales not one per block.
func.func @f(%s0: tensor<64x2x16xui8>, %s1: tensor<64x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op mxfp4 scales must end in 64x2}}
  %w = moe.dequantize #moe.mxfp4 %s0, %s1
      : (tensor<64x2x16xui8>, tensor<64x1xui8>) -> tensor<64x64xbf16>
  return
}

// -----

// int_group group size that does not divide the input dimension.
func.func @f(%s0: tensor<32x64xi8>, %s1: tensor<32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group group_size 48 does not divide the input dimension 64}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 48> %s0, %s1
      : (tensor<32x64xi8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// 4-bit int_group with an odd input dimension (nine nibbles do not fit four bytes).
func.func @f(%s0: tensor<2x4xi8>, %s1: tensor<2x3xf32>) {
  // expected-error @+1 {{'moe.dequantize' op 4-bit int_group packs two values per byte and needs an even input dimension, got 9}}
  %w = moe.dequantize #moe.int_group<bits = 4, group_size = 3> %s0, %s1
      : (tensor<2x4xi8>, tensor<2x3xf32>) -> tensor<2x9xf32>
  return
}

// -----

// int_group values that are not bytes.
func.func @f(%s0: tensor<32x64xi32>, %s1: tensor<32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group values must be 8-bit integers, got 'i32'}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %s0, %s1
      : (tensor<32x64xi32>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// int_group values of the wrong rank.
func.func @f(%s0: tensor<64xi8>, %s1: tensor<32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group values must have rank 2, got 'tensor<64xi8>'}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %s0, %s1
      : (tensor<64xi8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// int_group values with another expert count.
func.func @f(%s0: tensor<4x32x64xi8>, %s1: tensor<8x32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group values dimension 0 is 4 but the result's is 8}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %s0, %s1
      : (tensor<4x32x64xi8>, tensor<8x32x2xf32>) -> tensor<8x32x64xf32>
  return
}

// -----

// 8-bit int_group values of the wrong width.
func.func @f(%s0: tensor<32x32xi8>, %s1: tensor<32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group values must end in 32x64}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %s0, %s1
      : (tensor<32x32xi8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// 4-bit int_group values not packed two per byte.
func.func @f(%s0: tensor<32x64xui8>, %s1: tensor<32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group values must end in 32x32 (two 4-bit values per byte)}}
  %w = moe.dequantize #moe.int_group<bits = 4, group_size = 32> %s0, %s1
      : (tensor<32x64xui8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// int_group scales that are not floats.
func.func @f(%s0: tensor<32x64xi8>, %s1: tensor<32x2xi8>) {
  // expected-error @+1 {{'moe.dequantize' op int_group scales must be floating point, got 'i8'}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %s0, %s1
      : (tensor<32x64xi8>, tensor<32x2xi8>) -> tensor<32x64xf32>
  return
}

// -----

// int_group scales of the wrong rank.
func.func @f(%s0: tensor<32x64xi8>, %s1: tensor<64xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group scales must have rank 2, got 'tensor<64xf32>'}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %s0, %s1
      : (tensor<32x64xi8>, tensor<64xf32>) -> tensor<32x64xf32>
  return
}

// -----

// int_group scales with another expert count.
func.func @f(%s0: tensor<8x32x64xi8>, %s1: tensor<1x32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group scales dimension 0 is 1 but the result's is 8}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %s0, %s1
      : (tensor<8x32x64xi8>, tensor<1x32x2xf32>) -> tensor<8x32x64xf32>
  return
}

// -----

// int_group scales not one per group.
func.func @f(%s0: tensor<32x64xi8>, %s1: tensor<32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op int_group scales must end in 32x4}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 16> %s0, %s1
      : (tensor<32x64xi8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// int_group zero points of another shape.
func.func @f(%s0: tensor<32x32xui8>, %s1: tensor<32x2xf16>, %s2: tensor<32x1xui8>) {
  // expected-error @+1 {{'moe.dequantize' op int_group zero points must have the scales' shape}}
  %w = moe.dequantize #moe.int_group<bits = 4, group_size = 32, symmetric = false> %s0, %s1, %s2
      : (tensor<32x32xui8>, tensor<32x2xf16>, tensor<32x1xui8>) -> tensor<32x64xf16>
  return
}

// -----

// An integer result (ODS type constraint).
func.func @f(%s0: tensor<32x64xi8>, %s1: tensor<32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op result #0 must be ranked tensor of floating-point values}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %s0, %s1
      : (tensor<32x64xi8>, tensor<32x2xf32>) -> tensor<32x64xi8>
  return
}

// -----

// moe.quantize can only produce storage that has a quantizer (fp8_block: e4m3).
func.func @f(%w: tensor<256x512xbf16>) {
  // expected-error @+1 {{'moe.quantize' op produces fp8_block values as f8E4M3FN only}}
  %q:2 = moe.quantize #moe.fp8_block<128, 128> %w
      : (tensor<256x512xbf16>) -> (tensor<256x512xf8E5M2>, tensor<2x4xf32>)
  return
}

// -----

// moe.quantize checks its results through the encoding, as moe.dequantize checks operands.
func.func @f(%w: tensor<32x64xbf16>) {
  // expected-error @+1 {{'moe.quantize' op int_group scales must end in 32x2}}
  %q:2 = moe.quantize #moe.int_group<bits = 8, group_size = 32> %w
      : (tensor<32x64xbf16>) -> (tensor<32x64xi8>, tensor<32x4xf32>)
  return
}
