// RUN: moe-opt %s --moe-mixed-precision="budget-bits=6 group-size=32 weights=%golden/mixtral/ckpt calibration=%golden/mixtral/T64/input.safetensors" | FileCheck %s

// Mixtral layer 0 of the golden checkpoint, calibrated on its 64 input tokens: at a mean of
// 6 bits the exact solver gives experts 1, 2, 3 and 7 eight bits and the others four. Each
// stacked weight becomes the concat of four runs ([0,1) int4, [1,4) int8, [4,7) int4,
// [7,8) int8), each quantize + dequantize of a slice. Bytes: 98304 bf16 before; after,
// 4 x 3840 (int4 values + f32 scales) + 4 x 6912 (int8) = 43008.
// CHECK-LABEL: func.func @layer_0
// CHECK-SAME:    "moe.report.moe-mixed-precision" = {bits = array<i64: 4, 8, 8, 8, 4, 4, 4, 8>, budget_bits = 6.000000e+00 : f64, bytes_after = 43008 : i64, bytes_before = 98304 : i64, objective = {{.*}} : f64}
// CHECK:         %[[G:.*]] = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight"
// CHECK:         %[[U:.*]] = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight"
// CHECK:         %[[D:.*]] = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight"
// CHECK:         %[[G0:.*]] = tensor.extract_slice %[[G]][0, 0, 0] [1, 32, 64] [1, 1, 1] : tensor<8x32x64xbf16> to tensor<1x32x64xbf16>
// CHECK:         %[[Q0:.*]]:2 = moe.quantize #moe.int_group<bits = 4, group_size = 32> %[[G0]] : (tensor<1x32x64xbf16>) -> (tensor<1x32x32xi8>, tensor<1x32x2xf32>)
// CHECK:         %[[D0:.*]] = moe.dequantize #moe.int_group<bits = 4, group_size = 32> %[[Q0]]#0, %[[Q0]]#1 : (tensor<1x32x32xi8>, tensor<1x32x2xf32>) -> tensor<1x32x64xf32>
// CHECK:         %[[G1:.*]] = tensor.extract_slice %[[G]][1, 0, 0] [3, 32, 64] [1, 1, 1]
// CHECK:         %[[Q1:.*]]:2 = moe.quantize #moe.int_group<bits = 8, group_size = 32> %[[G1]] : (tensor<3x32x64xbf16>) -> (tensor<3x32x64xi8>, tensor<3x32x2xf32>)
// CHECK:         %[[D1:.*]] = moe.dequantize #moe.int_group<bits = 8, group_size = 32> %[[Q1]]#0, %[[Q1]]#1
// CHECK:         %[[G4:.*]] = tensor.extract_slice %[[G]][4, 0, 0] [3, 32, 64] [1, 1, 1]
// CHECK:         moe.quantize #moe.int_group<bits = 4, group_size = 32> %[[G4]]
// CHECK:         %[[D4:.*]] = moe.dequantize
// CHECK:         %[[G7:.*]] = tensor.extract_slice %[[G]][7, 0, 0] [1, 32, 64] [1, 1, 1]
// CHECK:         moe.quantize #moe.int_group<bits = 8, group_size = 32> %[[G7]]
// CHECK:         %[[D7:.*]] = moe.dequantize
// CHECK:         %[[GM:.*]] = tensor.concat dim(0) %[[D0]], %[[D1]], %[[D4]], %[[D7]] : (tensor<1x32x64xf32>, tensor<3x32x64xf32>, tensor<3x32x64xf32>, tensor<1x32x64xf32>) -> tensor<8x32x64xf32>
// CHECK:         %[[UM:.*]] = tensor.concat dim(0) {{.*}} -> tensor<8x32x64xf32>
// CHECK:         moe.quantize #moe.int_group<bits = 4, group_size = 32> %{{.*}} : (tensor<1x64x32xbf16>) -> (tensor<1x64x16xi8>, tensor<1x64x1xf32>)
// CHECK:         %[[DM:.*]] = tensor.concat dim(0) {{.*}} -> tensor<8x64x32xf32>
// CHECK:         moe.layer {{.*}} router(%{{.*}}) experts(gate %[[GM]] up %[[UM]] down %[[DM]])
func.func @layer_0(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> attributes {moe.layer_index = 0 : i64} {
  %r = moe.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x64xbf16>
  %g = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w1.weight" experts(8) : tensor<8x32x64xbf16>
  %u = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w3.weight" experts(8) : tensor<8x32x64xbf16>
  %d = moe.weight "model.layers.0.block_sparse_moe.experts.{e}.w2.weight" experts(8) : tensor<8x64x32xbf16>
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, normalize = true> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d)
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
