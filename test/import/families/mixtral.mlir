// mixtral: import the tiny mixtral checkpoint that transformers 5.23.0 saved
// (test/golden/README.md) and evaluate every MoE layer at T = 1, 7 and 64 against its own
// MoE block, at block level and decomposed.
//
// Tolerances (relative Frobenius error):
// - f32 goldens (transformers in float32): only f32 rounding of sums of <= H products
//   separates them from float64, about sqrt(H) * 2^-24 ~ 5e-7; the bound is 1e-5.
// - bf16 goldens (transformers in bfloat16): each activation is rounded to bf16 (unit
//   roundoff 2^-9 ~ 2e-3) about five times along the path (projections, activation
//   product, down projection, weighted sum), so the bound is 5 * 2^-9 ~ 1e-2. Routing is
//   not compared in bf16: its weights are rounded too.

// RUN: moe-translate --import-hf %golden/mixtral/ckpt -o %t.mlir
// RUN: FileCheck %s < %t.mlir
// RUN: moe-opt %t.mlir --moe-decompose -o %t.decomposed.mlir
// RUN: moe-run %t.mlir --weights-dir %golden/mixtral/ckpt --layer 0 --input %golden/mixtral/T1/input.safetensors --output %t.L0.T1.safetensors
// RUN: %compare %t.L0.T1.safetensors %golden/mixtral/T1/layer0.f32.safetensors --tolerance 1e-5
// RUN: %compare %t.L0.T1.safetensors %golden/mixtral/T1/layer0.bf16.safetensors --tolerance 1e-2 --ids skip
// RUN: moe-run %t.decomposed.mlir --weights-dir %golden/mixtral/ckpt --layer 0 --input %golden/mixtral/T1/input.safetensors --output %t.L0.T1.decomposed.safetensors
// RUN: %compare %t.L0.T1.decomposed.safetensors %golden/mixtral/T1/layer0.f32.safetensors --tolerance 1e-5
// RUN: moe-run %t.mlir --weights-dir %golden/mixtral/ckpt --layer 0 --input %golden/mixtral/T7/input.safetensors --output %t.L0.T7.safetensors
// RUN: %compare %t.L0.T7.safetensors %golden/mixtral/T7/layer0.f32.safetensors --tolerance 1e-5
// RUN: %compare %t.L0.T7.safetensors %golden/mixtral/T7/layer0.bf16.safetensors --tolerance 1e-2 --ids skip
// RUN: moe-run %t.decomposed.mlir --weights-dir %golden/mixtral/ckpt --layer 0 --input %golden/mixtral/T7/input.safetensors --output %t.L0.T7.decomposed.safetensors
// RUN: %compare %t.L0.T7.decomposed.safetensors %golden/mixtral/T7/layer0.f32.safetensors --tolerance 1e-5
// RUN: moe-run %t.mlir --weights-dir %golden/mixtral/ckpt --layer 0 --input %golden/mixtral/T64/input.safetensors --output %t.L0.T64.safetensors
// RUN: %compare %t.L0.T64.safetensors %golden/mixtral/T64/layer0.f32.safetensors --tolerance 1e-5
// RUN: %compare %t.L0.T64.safetensors %golden/mixtral/T64/layer0.bf16.safetensors --tolerance 1e-2 --ids skip
// RUN: moe-run %t.decomposed.mlir --weights-dir %golden/mixtral/ckpt --layer 0 --input %golden/mixtral/T64/input.safetensors --output %t.L0.T64.decomposed.safetensors
// RUN: %compare %t.L0.T64.decomposed.safetensors %golden/mixtral/T64/layer0.f32.safetensors --tolerance 1e-5
// RUN: moe-run %t.mlir --weights-dir %golden/mixtral/ckpt --layer 1 --input %golden/mixtral/T1/input.safetensors --output %t.L1.T1.safetensors
// RUN: %compare %t.L1.T1.safetensors %golden/mixtral/T1/layer1.f32.safetensors --tolerance 1e-5
// RUN: %compare %t.L1.T1.safetensors %golden/mixtral/T1/layer1.bf16.safetensors --tolerance 1e-2 --ids skip
// RUN: moe-run %t.decomposed.mlir --weights-dir %golden/mixtral/ckpt --layer 1 --input %golden/mixtral/T1/input.safetensors --output %t.L1.T1.decomposed.safetensors
// RUN: %compare %t.L1.T1.decomposed.safetensors %golden/mixtral/T1/layer1.f32.safetensors --tolerance 1e-5
// RUN: moe-run %t.mlir --weights-dir %golden/mixtral/ckpt --layer 1 --input %golden/mixtral/T7/input.safetensors --output %t.L1.T7.safetensors
// RUN: %compare %t.L1.T7.safetensors %golden/mixtral/T7/layer1.f32.safetensors --tolerance 1e-5
// RUN: %compare %t.L1.T7.safetensors %golden/mixtral/T7/layer1.bf16.safetensors --tolerance 1e-2 --ids skip
// RUN: moe-run %t.decomposed.mlir --weights-dir %golden/mixtral/ckpt --layer 1 --input %golden/mixtral/T7/input.safetensors --output %t.L1.T7.decomposed.safetensors
// RUN: %compare %t.L1.T7.decomposed.safetensors %golden/mixtral/T7/layer1.f32.safetensors --tolerance 1e-5
// RUN: moe-run %t.mlir --weights-dir %golden/mixtral/ckpt --layer 1 --input %golden/mixtral/T64/input.safetensors --output %t.L1.T64.safetensors
// RUN: %compare %t.L1.T64.safetensors %golden/mixtral/T64/layer1.f32.safetensors --tolerance 1e-5
// RUN: %compare %t.L1.T64.safetensors %golden/mixtral/T64/layer1.bf16.safetensors --tolerance 1e-2 --ids skip
// RUN: moe-run %t.decomposed.mlir --weights-dir %golden/mixtral/ckpt --layer 1 --input %golden/mixtral/T64/input.safetensors --output %t.L1.T64.decomposed.safetensors
// RUN: %compare %t.L1.T64.decomposed.safetensors %golden/mixtral/T64/layer1.f32.safetensors --tolerance 1e-5

// CHECK: module attributes {moe.model_type = "mixtral"}
// CHECK-LABEL: func.func @layer_0(
// CHECK-SAME:    attributes {moe.layer_index = 0 : i64}
// CHECK:         moe.layer %arg0 routing #moe.routing<scoring = softmax, k = 2, normalize = true> ffn #moe.ffn<activation = silu>
// CHECK-NEXT:    return
// CHECK-LABEL: func.func @layer_1(
// CHECK-SAME:    attributes {moe.layer_index = 1 : i64}
// CHECK:         moe.layer %arg0 routing #moe.routing<scoring = softmax, k = 2, normalize = true> ffn #moe.ffn<activation = silu>
// CHECK-NEXT:    return
