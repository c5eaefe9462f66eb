// Every diagnostic of the moe.select_channels verifier.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

func.func @f(%w: tensor<4xf32>) {
  // expected-error @+1 {{'moe.select_channels' op input must be a static stacked tensor [E, ...], got 'tensor<4xf32>'}}
  %y = moe.select_channels %w dim(1) channels([0]) : (tensor<4xf32>) -> tensor<1xf32>
  return
}

// -----

func.func @f(%w: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'moe.select_channels' op dim must be in [1, 3) (not the expert dimension), got 0}}
  %y = moe.select_channels %w dim(0) channels([0]) : (tensor<2x4x8xf32>) -> tensor<1x4x8xf32>
  return
}

// -----

func.func @f(%w: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'moe.select_channels' op result must be 'tensor<2x4x8xf32>' with another size along dim 1, got 'tensor<2x2x7xf32>'}}
  %y = moe.select_channels %w dim(1) channels([0, 1, 0, 1]) : (tensor<2x4x8xf32>) -> tensor<2x2x7xf32>
  return
}

// -----

func.func @f(%w: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'moe.select_channels' op needs 2 x 2 channel indices (one list per expert), got 3}}
  %y = moe.select_channels %w dim(1) channels([0, 1, 0]) : (tensor<2x4x8xf32>) -> tensor<2x2x8xf32>
  return
}

// -----

func.func @f(%w: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'moe.select_channels' op channel 4 of expert 1 is not -1 or in [0, 4)}}
  %y = moe.select_channels %w dim(1) channels([0, 1, 0, 4]) : (tensor<2x4x8xf32>) -> tensor<2x2x8xf32>
  return
}
