// Every diagnostic of the moe.factorize and moe.latent_product verifiers.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

func.func @factorize_rank2(%w: tensor<32x64xf32>) {
  // expected-error @+1 {{'moe.factorize' op input must be a 3-D tensor [experts, out, in], got 'tensor<32x64xf32>'}}
  %a, %b = moe.factorize %w rank(4) group(1)
      : (tensor<32x64xf32>) -> (tensor<32x64x4xf32>, tensor<1x4x64xf32>)
  return
}

// -----

func.func @factorize_dynamic(%w: tensor<?x32x64xf32>) {
  // expected-error @+1 {{'moe.factorize' op input must have a static shape, got 'tensor<?x32x64xf32>'}}
  %a, %b = moe.factorize %w rank(4) group(1)
      : (tensor<?x32x64xf32>) -> (tensor<8x32x4xf32>, tensor<8x4x64xf32>)
  return
}

// -----

func.func @factorize_group(%w: tensor<8x32x64xf32>) {
  // expected-error @+1 {{'moe.factorize' op group 3 must be positive and divide the number of experts (8)}}
  %a, %b = moe.factorize %w rank(4) group(3)
      : (tensor<8x32x64xf32>) -> (tensor<8x32x4xf32>, tensor<2x4x64xf32>)
  return
}

// -----

func.func @factorize_rank_too_large(%w: tensor<8x32x64xf32>) {
  // expected-error @+1 {{'moe.factorize' op rank 65 must be in [1, min(group * out, in)] = [1, 64]}}
  %a, %b = moe.factorize %w rank(65) group(2)
      : (tensor<8x32x64xf32>) -> (tensor<8x32x65xf32>, tensor<4x65x64xf32>)
  return
}

// -----

func.func @factorize_factors(%w: tensor<8x32x64xf32>) {
  // expected-error @+1 {{'moe.factorize' op factors must have shape [experts, out, rank] = [8, 32, 4], got 'tensor<8x32x5xf32>'}}
  %a, %b = moe.factorize %w rank(4) group(2)
      : (tensor<8x32x64xf32>) -> (tensor<8x32x5xf32>, tensor<4x4x64xf32>)
  return
}

// -----

func.func @factorize_basis(%w: tensor<8x32x64xf32>) {
  // expected-error @+1 {{'moe.factorize' op basis must have shape [experts / group, rank, in] = [4, 4, 64], got 'tensor<8x4x64xf32>'}}
  %a, %b = moe.factorize %w rank(4) group(2)
      : (tensor<8x32x64xf32>) -> (tensor<8x32x4xf32>, tensor<8x4x64xf32>)
  return
}

// -----

func.func @factorize_whitening_rank(%w: tensor<8x32x64xf32>, %x: tensor<64xf32>) {
  // expected-error @+1 {{'moe.factorize' op whitening must be a 2-D tensor [rows, in], got 'tensor<64xf32>'}}
  %a, %b = moe.factorize %w rank(4) group(2) whiten %x
      : (tensor<8x32x64xf32>, tensor<64xf32>) -> (tensor<8x32x4xf32>, tensor<4x4x64xf32>)
  return
}

// -----

func.func @factorize_whitening_columns(%w: tensor<8x32x64xf32>, %x: tensor<16x32xf32>) {
  // expected-error @+1 {{'moe.factorize' op whitening dimension 1 is 32 but must equal the input's input columns (64)}}
  %a, %b = moe.factorize %w rank(4) group(2) whiten %x
      : (tensor<8x32x64xf32>, tensor<16x32xf32>) -> (tensor<8x32x4xf32>, tensor<4x4x64xf32>)
  return
}

// -----

func.func @factorize_whitening_empty(%w: tensor<8x32x64xf32>, %x: tensor<0x64xf32>) {
  // expected-error @+1 {{'moe.factorize' op whitening needs at least one calibration row}}
  %a, %b = moe.factorize %w rank(4) group(2) whiten %x
      : (tensor<8x32x64xf32>, tensor<0x64xf32>) -> (tensor<8x32x4xf32>, tensor<4x4x64xf32>)
  return
}

// -----

func.func @product_rank(%a: tensor<32x4xf32>, %b: tensor<1x4x64xf32>) {
  // expected-error @+1 {{'moe.latent_product' op factors must be a 3-D tensor [experts, out, rank], got 'tensor<32x4xf32>'}}
  %p = moe.latent_product %a, %b : (tensor<32x4xf32>, tensor<1x4x64xf32>) -> tensor<8x32x64xf32>
  return
}

// -----

func.func @product_basis_rank(%a: tensor<8x32x4xf32>, %b: tensor<4x64xf32>) {
  // expected-error @+1 {{'moe.latent_product' op basis must be a 3-D tensor [groups, rank, in], got 'tensor<4x64xf32>'}}
  %p = moe.latent_product %a, %b : (tensor<8x32x4xf32>, tensor<4x64xf32>) -> tensor<8x32x64xf32>
  return
}

// -----

func.func @product_dynamic(%a: tensor<?x32x4xf32>, %b: tensor<1x4x64xf32>) {
  // expected-error @+1 {{'moe.latent_product' op factors and basis must have static shapes}}
  %p = moe.latent_product %a, %b : (tensor<?x32x4xf32>, tensor<1x4x64xf32>) -> tensor<8x32x64xf32>
  return
}

// -----

func.func @product_groups(%a: tensor<8x32x4xf32>, %b: tensor<3x4x64xf32>) {
  // expected-error @+1 {{'moe.latent_product' op the number of bases (3) must be positive and divide the number of experts (8)}}
  %p = moe.latent_product %a, %b : (tensor<8x32x4xf32>, tensor<3x4x64xf32>) -> tensor<8x32x64xf32>
  return
}

// -----

func.func @product_inner(%a: tensor<8x32x4xf32>, %b: tensor<2x5x64xf32>) {
  // expected-error @+1 {{'moe.latent_product' op basis dimension 1 is 5 but must equal the factors' rank (4)}}
  %p = moe.latent_product %a, %b : (tensor<8x32x4xf32>, tensor<2x5x64xf32>) -> tensor<8x32x64xf32>
  return
}

// -----

func.func @product_result(%a: tensor<8x32x4xf32>, %b: tensor<2x4x64xf32>) {
  // expected-error @+1 {{'moe.latent_product' op result must have shape [experts, out, in] = [8, 32, 64], got 'tensor<8x64x32xf32>'}}
  %p = moe.latent_product %a, %b : (tensor<8x32x4xf32>, tensor<2x4x64xf32>) -> tensor<8x64x32xf32>
  return
}
