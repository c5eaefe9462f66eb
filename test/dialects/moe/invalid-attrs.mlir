// Every diagnostic of the moe attribute verifiers (RoutingAttr, FfnAttr and the encodings'
// own parameters) and of RoutingAttr::verifyForExperts. Attribute errors are reported where
// the attribute is written, on the line of the op that uses it.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

// k must be at least 1.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{routing needs k >= 1}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 0> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x1xi32>, tensor<?x1xf32>)
  return
}

// -----

// Non-finite parameters (1.0e999 overflows to infinity).
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{routing parameters must be finite}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, scaling = 1.0e999> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// Non-finite epsilon.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{routing parameters must be finite}}
  %i, %w = moe.route #moe.routing<scoring = sparsemixer, k = 2, epsilon = -1.0e999> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// norm_epsilon without normalize.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{norm_epsilon is set but normalize is false}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, norm_epsilon = 1.0e-20> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// Negative norm_epsilon.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{norm_epsilon must be >= 0, got -1.000000e-06}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, normalize = true, norm_epsilon = -1.0e-6> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// Zero scaling.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{routed scaling factor must be > 0, got 0.000000e+00}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, scaling = 0.0> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// Negative scaling.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{routed scaling factor must be > 0, got -2.500000e+00}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, scaling = -2.5> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// Integer logits_type.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{logits_type must be a floating-point type, got 'i32'}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, logits_type = i32> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// sparsemixer with k != 2.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{sparsemixer routes exactly 2 experts per token, got k = 3}}
  %i, %w = moe.route #moe.routing<scoring = sparsemixer, k = 3, epsilon = 0.01> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x3xi32>, tensor<?x3xf32>)
  return
}

// -----

// sparsemixer with group_limited selection.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{sparsemixer makes its own selection; selection must be topk}}
  %i, %w = moe.route #moe.routing<scoring = sparsemixer, k = 2, selection = group_limited, n_group = 2, topk_group = 1, epsilon = 0.01> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// sparsemixer with top_p selection.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{sparsemixer makes its own selection; selection must be topk}}
  %i, %w = moe.route #moe.routing<scoring = sparsemixer, k = 2, selection = top_p, top_p = 0.5, epsilon = 0.01> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// sparsemixer without epsilon.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{sparsemixer needs epsilon > 0}}
  %i, %w = moe.route #moe.routing<scoring = sparsemixer, k = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// sparsemixer with a zero epsilon.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{sparsemixer needs epsilon > 0}}
  %i, %w = moe.route #moe.routing<scoring = sparsemixer, k = 2, epsilon = 0.0> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// sparsemixer with normalize.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{sparsemixer weights are not renormalized}}
  %i, %w = moe.route #moe.routing<scoring = sparsemixer, k = 2, normalize = true, epsilon = 0.01> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// epsilon without sparsemixer.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{epsilon applies only to sparsemixer scoring}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, epsilon = 0.01> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// group_limited without n_group.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{group_limited selection needs n_group >= 1 and topk_group >= 1}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = group_limited, topk_group = 1> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// group_limited without topk_group.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{group_limited selection needs n_group >= 1 and topk_group >= 1}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = group_limited, n_group = 4> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// topk_group > n_group.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{topk_group (3) exceeds n_group (2)}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = group_limited, n_group = 2, topk_group = 3> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// group_limited with after-top-k scoring.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{group_limited selection needs scores over all experts (softmax or sigmoid scoring)}}
  %i, %w = moe.route #moe.routing<scoring = softmax_after_topk, k = 2, selection = group_limited, n_group = 2, topk_group = 1> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// group_limited with sigmoid_after_topk scoring.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{group_limited selection needs scores over all experts}}
  %i, %w = moe.route #moe.routing<scoring = sigmoid_after_topk, k = 2, selection = group_limited, n_group = 2, topk_group = 1> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// n_group with topk selection.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{n_group and topk_group apply only to group_limited selection}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, n_group = 4> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// topk_group with top_p selection.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{n_group and topk_group apply only to group_limited selection}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = top_p, top_p = 0.5, topk_group = 1> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// group_score with topk selection.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{group_score applies only to group_limited selection}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, group_score = top2_sum> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// top_p selection without a threshold.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{top_p selection needs a top_p threshold}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = top_p> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// top_p = 0 is out of range.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{top_p must be in (0, 1], got 0.000000e+00}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = top_p, top_p = 0.0> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// top_p = 1.5 is out of range.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{top_p must be in (0, 1], got 1.500000e+00}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = top_p, top_p = 1.5> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// Negative top_p.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{top_p must be in (0, 1], got -5.000000e-01}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = top_p, top_p = -0.5> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// top_p with sigmoid scoring.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{top_p selection needs softmax scoring (a probability mass)}}
  %i, %w = moe.route #moe.routing<scoring = sigmoid, k = 2, selection = top_p, top_p = 0.5> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// top_p with softmax_after_topk scoring.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{top_p selection needs softmax scoring}}
  %i, %w = moe.route #moe.routing<scoring = softmax_after_topk, k = 2, selection = top_p, top_p = 0.5> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// top_p set with topk selection.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{top_p is set but selection is not top_p}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, top_p = 0.5> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// k larger than the number of experts.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<2x64xf32>) {
  // expected-error @+1 {{'moe.route' op k = 3 exceeds the number of experts (2)}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 3> %x, %wg
      : (tensor<?x64xf32>, tensor<2x64xf32>) -> (tensor<?x3xi32>, tensor<?x3xf32>)
  return
}

// -----

// Experts that do not split into n_group groups.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op 8 experts do not split into 3 equal groups}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2, selection = group_limited, n_group = 3, topk_group = 1> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// top2_sum over groups of one expert.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op top2_sum group scoring needs at least 2 experts per group, got 1}}
  %i, %w = moe.route #moe.routing<scoring = sigmoid, k = 2, selection = group_limited, n_group = 8, topk_group = 4, group_score = top2_sum> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// k larger than the experts of the kept groups.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op k = 5 exceeds the 4 experts of the kept groups}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 5, selection = group_limited, n_group = 4, topk_group = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x5xi32>, tensor<?x5xf32>)
  return
}

// -----

// Non-finite alpha.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{ffn parameters must be finite}}
  %y = moe.experts #moe.ffn<activation = clamped_swiglu, alpha = 1.0e999, limit = 7.0> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Non-finite limit.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{ffn parameters must be finite}}
  %y = moe.experts #moe.ffn<activation = clamped_swiglu, alpha = 1.702, limit = 1.0e999> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// clamped_swiglu without a gate.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{clamped_swiglu is gated; glu must not be none}}
  %y = moe.experts #moe.ffn<activation = clamped_swiglu, glu = none, alpha = 1.702, limit = 7.0> %x, %off up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// clamped_swiglu without alpha.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{clamped_swiglu needs alpha and limit}}
  %y = moe.experts #moe.ffn<activation = clamped_swiglu, limit = 7.0> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// clamped_swiglu without limit.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{clamped_swiglu needs alpha and limit}}
  %y = moe.experts #moe.ffn<activation = clamped_swiglu, alpha = 1.702> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// clamped_swiglu with a zero limit.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{clamped_swiglu limit must be > 0, got 0.000000e+00}}
  %y = moe.experts #moe.ffn<activation = clamped_swiglu, alpha = 1.702, limit = 0.0> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// alpha with another activation.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{alpha and limit apply only to clamped_swiglu}}
  %y = moe.experts #moe.ffn<activation = silu, alpha = 1.702> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// limit with another activation.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{alpha and limit apply only to clamped_swiglu}}
  %y = moe.experts #moe.ffn<activation = gelu, limit = 7.0> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// fp8_block needs positive block sizes.
func.func @f(%q: tensor<256x256xf8E4M3FN>, %s: tensor<2x2xf32>) {
  // expected-error @+1 {{fp8_block block sizes must be positive, got 0x128}}
  %w = moe.dequantize #moe.fp8_block<0, 128> %q, %s
      : (tensor<256x256xf8E4M3FN>, tensor<2x2xf32>) -> tensor<256x256xbf16>
  return
}

// -----

// Negative block columns.
func.func @f(%q: tensor<256x256xf8E4M3FN>, %s: tensor<2x2xf32>) {
  // expected-error @+1 {{fp8_block block sizes must be positive, got 128x-1}}
  %w = moe.dequantize #moe.fp8_block<128, -1> %q, %s
      : (tensor<256x256xf8E4M3FN>, tensor<2x2xf32>) -> tensor<256x256xbf16>
  return
}

// -----

// int_group supports 4 or 8 bits.
func.func @f(%q: tensor<32x64xi8>, %s: tensor<32x2xf32>) {
  // expected-error @+1 {{int_group supports 4 or 8 bits, got 3}}
  %w = moe.dequantize #moe.int_group<bits = 3, group_size = 32> %q, %s
      : (tensor<32x64xi8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// int_group needs a positive group size.
func.func @f(%q: tensor<32x64xi8>, %s: tensor<32x2xf32>) {
  // expected-error @+1 {{int_group group_size must be positive, got 0}}
  %w = moe.dequantize #moe.int_group<bits = 8, group_size = 0> %q, %s
      : (tensor<32x64xi8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// A configuration attribute where an encoding belongs (ODS constraint).
func.func @f(%q: tensor<32x64xi8>, %s: tensor<32x2xf32>) {
  // expected-error @+1 {{'moe.dequantize' op attribute 'encoding' failed to satisfy constraint: a weight encoding attribute}}
  %w = "moe.dequantize"(%q, %s) {encoding = #moe.ffn<activation = silu>}
      : (tensor<32x64xi8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// The same in the custom form.
func.func @f(%q: tensor<32x64xi8>, %s: tensor<32x2xf32>) {
  // expected-error @+1 {{custom op 'moe.dequantize' invalid kind of attribute specified}}
  %w = moe.dequantize #moe.ffn<activation = silu> %q, %s
      : (tensor<32x64xi8>, tensor<32x2xf32>) -> tensor<32x64xf32>
  return
}
