// RUN: moe-translate --moe-list-weights %s -split-input-file -verify-diagnostics

func.func @conflicting_types() -> (tensor<8x64xbf16>, tensor<8x64xf32>) {
  // expected-note @+1 {{first referenced here}}
  %a = moe.weight "router.weight" : tensor<8x64xbf16>
  // expected-error @+1 {{tensor 'router.weight' is referenced with a different type or layout than before}}
  %b = moe.weight "router.weight" : tensor<8x64xf32>
  return %a, %b : tensor<8x64xbf16>, tensor<8x64xf32>
}

// -----

func.func @overflow() -> tensor<4294967296x4294967296xf32> {
  // expected-error @+1 {{tensor 'huge' is too large: its byte size overflows 64 bits}}
  %a = moe.weight "huge" : tensor<4294967296x4294967296xf32>
  return %a : tensor<4294967296x4294967296xf32>
}
