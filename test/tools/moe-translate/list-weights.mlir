// RUN: moe-translate --moe-list-weights %s | FileCheck %s

// A tensor referenced twice with the same type is listed once; stacking and permutation
// are recorded with the stored (per-tensor) shape.
func.func @f(%x: tensor<?x64xf32>) -> (tensor<8x64xbf16>, tensor<8x64xbf16>, tensor<4x96x64xbf16>, tensor<4x96x64xf8E4M3FN>) {
  %a = moe.weight "router.weight" from "model-00001-of-00002.safetensors" : tensor<8x64xbf16>
  %b = moe.weight "router.weight" from "model-00001-of-00002.safetensors" : tensor<8x64xbf16>
  %c = moe.weight "experts.gate_up_proj" permutation [0, 2, 1] : tensor<4x96x64xbf16>
  %d = moe.weight "experts.{e}.w1.weight" experts(4) : tensor<4x96x64xf8E4M3FN>
  return %a, %b, %c, %d : tensor<8x64xbf16>, tensor<8x64xbf16>, tensor<4x96x64xbf16>, tensor<4x96x64xf8E4M3FN>
}

// CHECK:      "tensors": [
// CHECK:        "name": "router.weight",
// CHECK-NEXT:   "file": "model-00001-of-00002.safetensors",
// CHECK-NEXT:   "dtype": "BF16",
// CHECK:        "bytes": 1024
// CHECK-NOT:    "name": "router.weight"
// CHECK:        "name": "experts.gate_up_proj",
// CHECK-NEXT:   "dtype": "BF16",
// CHECK-NEXT:   "shape": [
// CHECK-NEXT:     4,
// CHECK-NEXT:     96,
// CHECK-NEXT:     64
// CHECK-NEXT:   ],
// CHECK-NEXT:   "stored_shape": [
// CHECK-NEXT:     4,
// CHECK-NEXT:     64,
// CHECK-NEXT:     96
// CHECK-NEXT:   ],
// CHECK-NEXT:   "permutation": [
// CHECK:        "bytes": 49152
// CHECK:        "name": "experts.{e}.w1.weight",
// CHECK-NEXT:   "dtype": "F8_E4M3",
// CHECK:        "stored_shape": [
// CHECK-NEXT:     96,
// CHECK-NEXT:     64
// CHECK-NEXT:   ],
// CHECK-NEXT:   "experts": 4,
// CHECK-NEXT:   "bytes": 24576
// CHECK:      "total_bytes": 74752
