// RUN: moe-opt %s --moe-latent-factorize="rank=40 group=1" --split-input-file -verify-diagnostics
// RUN: not moe-opt %s --moe-latent-factorize="rank=8 group=3" 2>&1 | FileCheck %s --check-prefix=GROUP
// GROUP: latent-factorize-invalid.mlir:{{[0-9]+}}:{{[0-9]+}}: error: moe-latent-factorize: group 3 does not divide the number of experts 8
// RUN: not moe-opt %s --moe-latent-factorize="rank=8 projections=gate,proj" 2>&1 | FileCheck %s --check-prefix=PROJ
// PROJ: moe-latent-factorize: unknown projection 'proj' (expected gate, up or down)
// RUN: not moe-opt %s --moe-latent-factorize="rank=8 whiten=true" 2>&1 | FileCheck %s --check-prefix=WHITEN
// WHITEN: moe-latent-factorize: whiten needs calibration hidden states
// RUN: not moe-opt %s --moe-latent-factorize="rank=8 whiten=true projections=up,down calibration=%s" 2>&1 | FileCheck %s --check-prefix=WHITEN-DOWN
// WHITEN-DOWN: moe-latent-factorize: whiten applies to gate and up only
// RUN: not moe-opt %s --moe-latent-factorize="group=2" 2>&1 | FileCheck %s --check-prefix=RANK
// RANK: moe-latent-factorize: rank must be a positive integer, got 0

// Rank 40 > min(group * out, in) = min(32, 64).
func.func @rank_too_large(%x: tensor<?x64xf32>, %off: tensor<9xi32>,
    %g: tensor<8x32x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{moe-latent-factorize: rank 40 exceeds min(group * out, in) = 32 of a weight of type 'tensor<8x32x64xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
