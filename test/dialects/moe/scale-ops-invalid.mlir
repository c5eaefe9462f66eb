// Every diagnostic of the moe.scale_channels and moe.scale_columns verifiers.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

// Hidden states must be [tokens, hidden].
func.func @f(%x: tensor<64xf32>, %s: tensor<64xf32>) {
  // expected-error @+1 {{'moe.scale_channels' op input must be a 2-D tensor [tokens, hidden], got 'tensor<64xf32>'}}
  %y = moe.scale_channels %x, %s : (tensor<64xf32>, tensor<64xf32>) -> tensor<64xf32>
  return
}

// -----

// One scale per channel, as a vector.
func.func @f(%x: tensor<?x64xf32>, %s: tensor<1x64xf32>) {
  // expected-error @+1 {{'moe.scale_channels' op scales must be a 1-D tensor [hidden], got 'tensor<1x64xf32>'}}
  %y = moe.scale_channels %x, %s : (tensor<?x64xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %s: tensor<32xf32>) {
  // expected-error @+1 {{'moe.scale_channels' op scales dimension 0 is 32 but must equal the hidden size (64)}}
  %y = moe.scale_channels %x, %s : (tensor<?x64xf32>, tensor<32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The result is the input's type.
func.func @f(%x: tensor<?x64xbf16>, %s: tensor<64xf32>) {
  // expected-error @+1 {{'moe.scale_channels' op result must have type 'tensor<?x64xbf16>', got 'tensor<?x64xf32>'}}
  %y = moe.scale_channels %x, %s : (tensor<?x64xbf16>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Only float tensors (ODS).
func.func @f(%x: tensor<?x64xi32>, %s: tensor<64xf32>) {
  // expected-error @+1 {{'moe.scale_channels' op operand #0 must be ranked tensor of floating-point values}}
  %y = moe.scale_channels %x, %s : (tensor<?x64xi32>, tensor<64xf32>) -> tensor<?x64xi32>
  return
}

// -----

// Weights are [..., out, in].
func.func @f(%w: tensor<64xf32>, %s: tensor<64xf32>) {
  // expected-error @+1 {{'moe.scale_columns' op weight must be a tensor of rank >= 2 [..., out, in], got 'tensor<64xf32>'}}
  %y = moe.scale_columns %w, %s : (tensor<64xf32>, tensor<64xf32>) -> tensor<64xf32>
  return
}

// -----

func.func @f(%w: tensor<8x32x64xbf16>, %s: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.scale_columns' op scales must be a 1-D tensor [in], got 'tensor<8x64xf32>'}}
  %y = moe.scale_columns %w, %s : (tensor<8x32x64xbf16>, tensor<8x64xf32>) -> tensor<8x32x64xbf16>
  return
}

// -----

// The scales run over the input columns (the last dimension), not the rows.
func.func @f(%w: tensor<8x32x64xbf16>, %s: tensor<32xf32>) {
  // expected-error @+1 {{'moe.scale_columns' op scales dimension 0 is 32 but must equal the weight's input columns (64)}}
  %y = moe.scale_columns %w, %s : (tensor<8x32x64xbf16>, tensor<32xf32>) -> tensor<8x32x64xbf16>
  return
}

// -----

func.func @f(%w: tensor<8x32x64xbf16>, %s: tensor<64xf32>) {
  // expected-error @+1 {{'moe.scale_columns' op result must have type 'tensor<8x32x64xbf16>', got 'tensor<8x32x64xf32>'}}
  %y = moe.scale_columns %w, %s : (tensor<8x32x64xbf16>, tensor<64xf32>) -> tensor<8x32x64xf32>
  return
}
