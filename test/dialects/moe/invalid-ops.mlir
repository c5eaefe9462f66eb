// Every diagnostic of the moe op verifiers (MoEOps.cpp): moe.weight, moe.route, moe.dispatch,
// moe.experts, moe.combine, moe.shared_expert and moe.layer, including the feed-forward checks
// (verifyFfn) with the `shared_` prefix. A few ODS type constraints close each op's section.
// The routing rule's own checks and RoutingAttr::verifyForExperts are in invalid-attrs.mlir.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

// An empty tensor name.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op tensor name must not be empty}}
  %w = moe.weight "" : tensor<8x64xf32>
  return
}

// -----

// An empty file name.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op file must not be empty when given}}
  %w = moe.weight "w" from "" : tensor<8x64xf32>
  return
}

// -----

// A dynamic shape.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op a weight must have a static shape, got 'tensor<?x64xf32>'}}
  %w = moe.weight "w" : tensor<?x64xf32>
  return
}

// -----

// An element type safetensors cannot store.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op element type 'i4' has no safetensors dtype}}
  %w = moe.weight "w" : tensor<8x64xi4>
  return
}

// -----

// An index element type.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op element type 'index' has no safetensors dtype}}
  %w = moe.weight "w" : tensor<8xindex>
  return
}

// -----

// A zero expert count.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op expert count must be positive, got 0}}
  %w = moe.weight "e.{e}.w" experts(0) : tensor<0x4xf32>
  return
}

// -----

// A negative expert count.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op expert count must be positive, got -2}}
  %w = moe.weight "e.{e}.w" experts(-2) : tensor<2x4xf32>
  return
}

// -----

// A stacked weight without the placeholder.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op a stacked weight's name must contain the placeholder '{e}' exactly once}}
  %w = moe.weight "e.0.w" experts(2) : tensor<2x4xf32>
  return
}

// -----

// A stacked weight with the placeholder twice.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op a stacked weight's name must contain the placeholder '{e}' exactly once}}
  %w = moe.weight "e.{e}.w.{e}" experts(2) : tensor<2x4xf32>
  return
}

// -----

// An expert count that does not match the leading dimension.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op expert count 8 does not match the leading result dimension of 'tensor<4x4xf32>'}}
  %w = moe.weight "e.{e}.w" experts(8) : tensor<4x4xf32>
  return
}

// -----

// A stacked scalar.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op expert count 1 does not match the leading result dimension of 'tensor<f32>'}}
  %w = moe.weight "e.{e}.w" experts(1) : tensor<f32>
  return
}

// -----

// The placeholder without an expert count.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op name contains '{e}' but no expert count is given}}
  %w = moe.weight "e.{e}.w" : tensor<2x4xf32>
  return
}

// -----

// A permutation of the wrong length.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op permutation must be a permutation of 0..2}}
  %w = moe.weight "w" permutation [1, 0] : tensor<2x4x8xf32>
  return
}

// -----

// A permutation with a repeated dimension.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op permutation must be a permutation of 0..1}}
  %w = moe.weight "w" permutation [0, 0] : tensor<2x4xf32>
  return
}

// -----

// A permutation with an out-of-range dimension.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op permutation must be a permutation of 0..1}}
  %w = moe.weight "w" permutation [0, 2] : tensor<2x4xf32>
  return
}

// -----

// A permutation with a negative dimension.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op permutation must be a permutation of 0..1}}
  %w = moe.weight "w" permutation [-1, 0] : tensor<2x4xf32>
  return
}

// -----

// A stacked weight whose permutation moves the expert dimension.
func.func @f() {
  // expected-error @+1 {{'moe.weight' op a stacked weight's permutation must keep the expert dimension first}}
  %w = moe.weight "e.{e}.w" experts(2) permutation [1, 0, 2] : tensor<2x4x8xf32>
  return
}

// -----

// An unranked result (ODS type constraint; the custom form would reject the type itself).
func.func @f() {
  // expected-error @+1 {{'moe.weight' op result #0 must be ranked tensor of any type values}}
  %w = "moe.weight"() <{name = "w"}> : () -> tensor<*xf32>
  return
}

// -----

// An input that is not [tokens, hidden].
func.func @f(%x: tensor<?x4x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op input must be a 2-D tensor [tokens, hidden], got 'tensor<?x4x64xf32>'}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x4x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// A router weight that is not [experts, hidden].
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64x1xf32>) {
  // expected-error @+1 {{'moe.route' op router weight must be a 2-D tensor [experts, hidden], got 'tensor<8x64x1xf32>'}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64x1xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// A router weight of another hidden size.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x32xf32>) {
  // expected-error @+1 {{'moe.route' op router weight dimension 1 is 32 but must equal the input hidden size (64)}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// A router bias that is not 1-D.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %b: tensor<1x8xf32>) {
  // expected-error @+1 {{'moe.route' op router bias must be a 1-D tensor [experts], got 'tensor<1x8xf32>'}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg bias %b
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<1x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// A router bias with another expert count.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{'moe.route' op router bias dimension 0 is 4 but must equal the number of experts (8)}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg bias %b
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// A correction bias that is not 1-D.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %cb: tensor<8x1xf32>) {
  // expected-error @+1 {{'moe.route' op correction bias must be a 1-D tensor [experts], got 'tensor<8x1xf32>'}}
  %i, %w = moe.route #moe.routing<scoring = sigmoid, k = 2> %x, %wg correction_bias %cb
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x1xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// A correction bias with another expert count.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %cb: tensor<16xf32>) {
  // expected-error @+1 {{'moe.route' op correction bias dimension 0 is 16 but must equal the number of experts (8)}}
  %i, %w = moe.route #moe.routing<scoring = sigmoid, k = 2> %x, %wg correction_bias %cb
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<16xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// A correction bias with scores only after selection.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %cb: tensor<8xf32>) {
  // expected-error @+1 {{'moe.route' op a correction bias needs scores over all experts before selection (softmax or sigmoid scoring)}}
  %i, %w = moe.route #moe.routing<scoring = softmax_after_topk, k = 2> %x, %wg correction_bias %cb
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// A correction bias with sparsemixer scoring.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %cb: tensor<8xf32>) {
  // expected-error @+1 {{'moe.route' op a correction bias needs scores over all experts before selection}}
  %i, %w = moe.route #moe.routing<scoring = sparsemixer, k = 2, epsilon = 0.01> %x, %wg correction_bias %cb
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// Expert ids with the wrong k.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op topk_ids must have shape [?, 2] (tokens x k), got 'tensor<?x3xi32>'}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x3xi32>, tensor<?x2xf32>)
  return
}

// -----

// Expert ids for another token count.
func.func @f(%x: tensor<16x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op topk_ids must have shape [16, 2] (tokens x k), got 'tensor<8x2xi32>'}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<16x64xf32>, tensor<8x64xf32>) -> (tensor<8x2xi32>, tensor<16x2xf32>)
  return
}

// -----

// Expert ids of rank 1.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op topk_ids must have shape [?, 2] (tokens x k), got 'tensor<?xi32>'}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?xi32>, tensor<?x2xf32>)
  return
}

// -----

// Weights with the wrong k.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op topk_weights must have shape [?, 2] (tokens x k), got 'tensor<?x1xf32>'}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x1xf32>)
  return
}

// -----

// Weights that are not f32.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op topk_weights must be f32}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xbf16>)
  return
}

// -----

// Expert ids that are not i32 (ODS type constraint).
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op result #0 must be ranked tensor of 32-bit signless integer values}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xi64>, tensor<?x2xf32>)
  return
}

// -----

// An integer input (ODS type constraint).
func.func @f(%x: tensor<?x64xi32>, %wg: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.route' op operand #0 must be ranked tensor of floating-point values}}
  %i, %w = moe.route #moe.routing<scoring = softmax, k = 2> %x, %wg
      : (tensor<?x64xi32>, tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// An input that is not [tokens, hidden].
func.func @f(%x: tensor<16xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op input must be a 2-D tensor [tokens, hidden], got 'tensor<16xf32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// Expert ids that are not [tokens, k].
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<32xi32>, %w: tensor<32xf32>) {
  // expected-error @+1 {{'moe.dispatch' op topk_ids must be a 2-D tensor [tokens, k], got 'tensor<32xi32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<32xi32>,
         tensor<32xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// Expert ids for another token count.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<8x2xi32>, %w: tensor<8x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op topk_ids dimension 0 is 8 but must equal the number of input tokens (16)}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<8x2xi32>,
         tensor<8x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// Weights of another shape than the ids.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x4xf32>) {
  // expected-error @+1 {{'moe.dispatch' op topk_weights must have the shape of topk_ids, got 'tensor<16x4xf32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x4xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// A zero capacity factor.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op capacity_factor must be > 0, got 0.000000e+00}}
  %p:4 = moe.dispatch %x, %ids, %w {capacity_factor = 0.0 : f64}
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// A negative capacity factor.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op capacity_factor must be > 0, got -1.000000e+00}}
  %p:4 = moe.dispatch %x, %ids, %w {capacity_factor = -1.0 : f64}
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// Expert offsets of rank 2.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op expert_offsets must be a static 1-D tensor of E + 1 elements (E >= 1), got 'tensor<9x1xi32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9x1xi32>)
  return
}

// -----

// Dynamic expert offsets.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op expert_offsets must be a static 1-D tensor of E + 1 elements (E >= 1), got 'tensor<?xi32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<?xi32>)
  return
}

// -----

// Expert offsets for no experts.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op expert_offsets must be a static 1-D tensor of E + 1 elements (E >= 1), got 'tensor<1xi32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<1xi32>)
  return
}

// -----

// Permuted rows other than tokens * k.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op permuted must be [32, 64] (tokens * k, hidden) of 'f32', got 'tensor<16x64xf32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<16x64xf32>, tensor<16xf32>, tensor<16xi32>, tensor<9xi32>)
  return
}

// -----

// Permuted rows of another hidden size.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op permuted must be [32, 64] (tokens * k, hidden) of 'f32', got 'tensor<32x32xf32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x32xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// Permuted rows of another element type.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op permuted must be [32, 64] (tokens * k, hidden) of 'f32', got 'tensor<32x64xbf16>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xbf16>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// Permuted rows of rank 1.
func.func @f(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op permuted must be [?, 64] (tokens * k, hidden) of 'f32', got 'tensor<?xf32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<?x64xf32>, tensor<?x2xi32>,
         tensor<?x2xf32>) -> (tensor<?xf32>, tensor<?xf32>, tensor<?xi32>, tensor<9xi32>)
  return
}

// -----

// Permuted weights of another row count.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op permuted_weights must be 1-D with one entry per permuted row, got 'tensor<16xf32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<16xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// Permuted weights of rank 2.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op permuted_weights must be 1-D with one entry per permuted row, got 'tensor<32x1xf32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32x1xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// Source slots of another row count.
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op source_slots must be 1-D with one entry per permuted row, got 'tensor<31xi32>'}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<31xi32>, tensor<9xi32>)
  return
}

// -----

// A capacity factor that is not f64 (ODS type constraint).
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op attribute 'capacity_factor' failed to satisfy constraint: 64-bit float attribute}}
  %p:4 = moe.dispatch %x, %ids, %w {capacity_factor = 1.0 : f32}
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xi32>, tensor<9xi32>)
  return
}

// -----

// Source slots that are not i32 (ODS type constraint).
func.func @f(%x: tensor<16x64xf32>, %ids: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op result #2 must be ranked tensor of 32-bit signless integer values}}
  %p:4 = moe.dispatch %x, %ids, %w
      : (tensor<16x64xf32>, tensor<16x2xi32>,
         tensor<16x2xf32>) -> (tensor<32x64xf32>, tensor<32xf32>, tensor<32xf32>, tensor<9xi32>)
  return
}

// -----

// An input that is not [rows, hidden].
func.func @f(%x: tensor<?xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op input must be a 2-D tensor [rows, hidden], got 'tensor<?xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Expert offsets of rank 2.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9x2xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op expert_offsets must be a static 1-D tensor of E + 1 elements, got 'tensor<9x2xi32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9x2xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Dynamic expert offsets.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<?xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op expert_offsets must be a static 1-D tensor of E + 1 elements, got 'tensor<?xi32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Expert offsets for no experts.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<1xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op expert_offsets must be a static 1-D tensor of E + 1 elements, got 'tensor<1xi32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<1xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A gate projection that is not stacked.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op gate_proj must be a 3-D tensor [experts, out, in], got 'tensor<32x64xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// An up projection that is not stacked.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op up_proj must be a 3-D tensor [experts, out, in], got 'tensor<32x64xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down projection that is not stacked.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op down_proj must be a 3-D tensor [experts, out, in], got 'tensor<64x32xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A gate projection for another expert count.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<4x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op gate_proj dimension 0 is 4 but must equal the number of experts (8)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<4x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// An up projection for another expert count.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<4x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op up_proj dimension 0 is 4 but must equal the number of experts (8)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<4x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down projection for another expert count.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<16x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op down_proj dimension 0 is 16 but must equal the number of experts (8)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<16x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// glu = separate without a gate projection.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %u: tensor<8x32x64xf32>,
             %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op glu = separate needs a gate_proj weight}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A separate gate with glu = halves.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op gate_proj is given but glu is 'halves'; a separate gate needs glu = separate}}
  %y = moe.experts #moe.ffn<activation = silu, glu = halves> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A separate gate with glu = none.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op gate_proj is given but glu is 'none'; a separate gate needs glu = separate}}
  %y = moe.experts #moe.ffn<activation = relu, glu = none> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// An up projection of another input size.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %u: tensor<8x32x32xf32>,
             %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op up_proj dimension 2 is 32 but must equal the hidden size (64)}}
  %y = moe.experts #moe.ffn<activation = silu, glu = none> %x, %off up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x32xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A fused gate/up weight with an odd number of rows.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %u: tensor<8x33x64xf32>,
             %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op fused gate/up weight up_proj must have an even number of rows (gate and up), got 33}}
  %y = moe.experts #moe.ffn<activation = silu, glu = interleaved> %x, %off up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x33x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Gate and up projections of different shapes.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x16x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op gate_proj and up_proj must have the same shape}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x16x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down projection of another output size.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x32x32xf32>) {
  // expected-error @+1 {{'moe.experts' op down_proj dimension 1 is 32 but must equal the hidden size (64)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x32x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down projection of another expert width.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x64xf32>) {
  // expected-error @+1 {{'moe.experts' op down_proj dimension 2 is 64 but must equal the expert width (32)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down projection as wide as a fused gate/up weight (the width is half of it).
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %u: tensor<8x64x64xf32>,
             %d: tensor<8x64x64xf32>) {
  // expected-error @+1 {{'moe.experts' op down_proj dimension 2 is 64 but must equal the expert width (32)}}
  %y = moe.experts #moe.ffn<activation = silu, glu = halves> %x, %off up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x64xf32>,
         tensor<8x64x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A gate bias without a separate gate.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %u: tensor<8x32x64xf32>,
             %d: tensor<8x64x32xf32>, %gate_bias: tensor<8x32xf32>) {
  // expected-error @+1 {{'moe.experts' op gate_bias needs a separate gate_proj}}
  %y = moe.experts #moe.ffn<activation = relu, glu = none> %x, %off up %u down %d gate_bias %gate_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>,
         tensor<8x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A gate bias that is not [experts, out].
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %gate_bias: tensor<32xf32>) {
  // expected-error @+1 {{'moe.experts' op gate_bias must be a 2-D tensor [experts, out], got 'tensor<32xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d gate_bias %gate_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// An up bias that is not [experts, out].
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %up_bias: tensor<8x32x1xf32>) {
  // expected-error @+1 {{'moe.experts' op up_bias must be a 2-D tensor [experts, out], got 'tensor<8x32x1xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d up_bias %up_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<8x32x1xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down bias that is not [experts, out].
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %down_bias: tensor<64xf32>) {
  // expected-error @+1 {{'moe.experts' op down_bias must be a 2-D tensor [experts, out], got 'tensor<64xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d down_bias %down_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A gate bias for another expert count.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %gate_bias: tensor<1x32xf32>) {
  // expected-error @+1 {{'moe.experts' op gate_bias dimension 0 is 1 but must equal the number of experts (8)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d gate_bias %gate_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<1x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// An up bias for another expert count.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %up_bias: tensor<2x32xf32>) {
  // expected-error @+1 {{'moe.experts' op up_bias dimension 0 is 2 but must equal the number of experts (8)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d up_bias %up_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<2x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down bias for another expert count.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %down_bias: tensor<4x64xf32>) {
  // expected-error @+1 {{'moe.experts' op down_bias dimension 0 is 4 but must equal the number of experts (8)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d down_bias %down_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<4x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A gate bias of another width.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %gate_bias: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.experts' op gate_bias dimension 1 is 64 but must equal the output features (32)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d gate_bias %gate_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<8x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// An up bias of another width (a fused weight's bias covers both halves).
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %u: tensor<8x64x64xf32>,
             %d: tensor<8x64x32xf32>, %up_bias: tensor<8x32xf32>) {
  // expected-error @+1 {{'moe.experts' op up_bias dimension 1 is 32 but must equal the output features (64)}}
  %y = moe.experts #moe.ffn<activation = clamped_swiglu, glu = interleaved, alpha = 1.702, limit = 7.0> %x, %off up %u down %d up_bias %up_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x64xf32>, tensor<8x64x32xf32>,
         tensor<8x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down bias of another width.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %down_bias: tensor<8x32xf32>) {
  // expected-error @+1 {{'moe.experts' op down_bias dimension 1 is 32 but must equal the output features (64)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d down_bias %down_bias
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<8x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Row scales that are not 1-D.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %row_scales: tensor<?x1xf32>) {
  // expected-error @+1 {{'moe.experts' op row_scales must be a 1-D tensor [rows], got 'tensor<?x1xf32>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d row_scales %row_scales
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Row scales for another row count.
func.func @f(%x: tensor<16x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %row_scales: tensor<8xf32>) {
  // expected-error @+1 {{'moe.experts' op row_scales dimension 0 is 8 but must equal the number of input rows (16)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d row_scales %row_scales
      : (tensor<16x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<8xf32>) -> tensor<16x64xf32>
  return
}

// -----

// A result of another type than the input.
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op result must have type 'tensor<?x64xf32>', got 'tensor<?x64xbf16>'}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xbf16>
  return
}

// -----

// Integer expert offsets of the wrong width (ODS type constraint).
func.func @f(%x: tensor<?x64xf32>, %off: tensor<9xi64>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.experts' op operand #1 must be ranked tensor of 32-bit signless integer values}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %off gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<9xi64>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Expert outputs that are not [rows, hidden].
func.func @f(%y: tensor<?xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op expert_outputs must be a 2-D tensor [rows, hidden], got 'tensor<?xf32>'}}
  %c = moe.combine %y, %s, %w
      : (tensor<?xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Source slots that are not 1-D.
func.func @f(%y: tensor<?x64xf32>, %s: tensor<?x1xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op source_slots must be a 1-D tensor [rows], got 'tensor<?x1xi32>'}}
  %c = moe.combine %y, %s, %w
      : (tensor<?x64xf32>, tensor<?x1xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Weights that are not [tokens, k].
func.func @f(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?xf32>) {
  // expected-error @+1 {{'moe.combine' op topk_weights must be a 2-D tensor [tokens, k], got 'tensor<?xf32>'}}
  %c = moe.combine %y, %s, %w
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Source slots for another row count.
func.func @f(%y: tensor<32x64xf32>, %s: tensor<16xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op source_slots dimension 0 is 16 but must equal the number of expert output rows (32)}}
  %c = moe.combine %y, %s, %w
      : (tensor<32x64xf32>, tensor<16xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A result for another token count.
func.func @f(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{'moe.combine' op result must be [16, 64] (tokens, hidden), got 'tensor<32x64xf32>'}}
  %c = moe.combine %y, %s, %w
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<16x2xf32>) -> tensor<32x64xf32>
  return
}

// -----

// A result of another hidden size.
func.func @f(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op result must be [?, 64] (tokens, hidden), got 'tensor<?x32xf32>'}}
  %c = moe.combine %y, %s, %w
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  return
}

// -----

// A result of rank 3.
func.func @f(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op result must be [?, 64] (tokens, hidden), got 'tensor<?x64x1xf32>'}}
  %c = moe.combine %y, %s, %w
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64x1xf32>
  return
}

// -----

// An addend of another type than the result.
func.func @f(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>, %a: tensor<?x64xbf16>) {
  // expected-error @+1 {{'moe.combine' op addend must have type 'tensor<?x64xf32>', got 'tensor<?x64xbf16>'}}
  %c = moe.combine %y, %s, %w add %a
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>, tensor<?x64xbf16>) -> tensor<?x64xf32>
  return
}

// -----

// An addend of another shape.
func.func @f(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<16x2xf32>, %a: tensor<?x64xf32>) {
  // expected-error @+1 {{'moe.combine' op addend must have type 'tensor<16x64xf32>', got 'tensor<?x64xf32>'}}
  %c = moe.combine %y, %s, %w add %a
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<16x2xf32>, tensor<?x64xf32>) -> tensor<16x64xf32>
  return
}

// -----

// Source slots that are not i32 (ODS type constraint).
func.func @f(%y: tensor<?x64xf32>, %s: tensor<?xf32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op operand #1 must be ranked tensor of 32-bit signless integer values}}
  %c = moe.combine %y, %s, %w
      : (tensor<?x64xf32>, tensor<?xf32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  return
}

// -----

// unweighted that is not a unit attribute (ODS type constraint).
func.func @f(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op attribute 'unweighted' failed to satisfy constraint: unit attribute}}
  %c = moe.combine %y, %s, %w {unweighted = 1 : i32}
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  return
}

// -----

// An input that is not [tokens, hidden].
func.func @f(%x: tensor<64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op input must be a 2-D tensor [tokens, hidden], got 'tensor<64xf32>'}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<64xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A stacked gate projection.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<1x96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op gate_proj must be a 2-D tensor [out, in], got 'tensor<1x96x64xf32>'}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<1x96x64xf32>, tensor<96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A stacked up projection.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<1x96x64xf32>,
             %d: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op up_proj must be a 2-D tensor [out, in], got 'tensor<1x96x64xf32>'}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<1x96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A 1-D down projection.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op down_proj must be a 2-D tensor [out, in], got 'tensor<64xf32>'}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<96x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// glu = separate without a gate projection.
func.func @f(%x: tensor<?x64xf32>, %u: tensor<96x64xf32>, %d: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op glu = separate needs a gate_proj weight}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x up %u down %d
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A separate gate with glu = interleaved.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op gate_proj is given but glu is 'interleaved'; a separate gate needs glu = separate}}
  %s = moe.shared_expert #moe.ffn<activation = silu, glu = interleaved> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// An up projection of another input size.
func.func @f(%x: tensor<?x64xf32>, %u: tensor<96x32xf32>, %d: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op up_proj dimension 1 is 32 but must equal the hidden size (64)}}
  %s = moe.shared_expert #moe.ffn<activation = gelu, glu = none> %x up %u down %d
      : (tensor<?x64xf32>, tensor<96x32xf32>, tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A fused gate/up weight with an odd number of rows.
func.func @f(%x: tensor<?x64xf32>, %u: tensor<95x64xf32>, %d: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op fused gate/up weight up_proj must have an even number of rows (gate and up), got 95}}
  %s = moe.shared_expert #moe.ffn<activation = silu, glu = halves> %x up %u down %d
      : (tensor<?x64xf32>, tensor<95x64xf32>, tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Gate and up projections of different shapes.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<48x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op gate_proj and up_proj must have the same shape}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down projection of another output size.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<32x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op down_proj dimension 0 is 32 but must equal the hidden size (64)}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<32x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A down projection of another width.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64x48xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op down_proj dimension 1 is 48 but must equal the expert width (96)}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<64x48xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A sigmoid gate that is not [1, hidden].
func.func @f(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64x96xf32>, %sg: tensor<64xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op sigmoid_gate must be a 2-D tensor [1, hidden], got 'tensor<64xf32>'}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d sigmoid_gate %sg
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<96x64xf32>, tensor<64x96xf32>,
         tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A sigmoid gate with more than one output.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64x96xf32>, %sg: tensor<2x64xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op sigmoid_gate dimension 0 is 2 but must equal the single gate output (1)}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d sigmoid_gate %sg
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<96x64xf32>, tensor<64x96xf32>,
         tensor<2x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A sigmoid gate of another hidden size.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64x96xf32>, %sg: tensor<1x32xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op sigmoid_gate dimension 1 is 32 but must equal the hidden size (64)}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d sigmoid_gate %sg
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<96x64xf32>, tensor<64x96xf32>,
         tensor<1x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A result of another type than the input.
func.func @f(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
             %d: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op result must have type 'tensor<?x64xf32>', got 'tensor<8x64xf32>'}}
  %s = moe.shared_expert #moe.ffn<activation = silu> %x gate %g up %u down %d
      : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<64x96xf32>) -> tensor<8x64xf32>
  return
}

// -----

// An input that is not [tokens, hidden].
func.func @f(%x: tensor<?x8x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op input must be a 2-D tensor [tokens, hidden], got 'tensor<?x8x64xf32>'}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x8x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A router weight that is not [experts, hidden].
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<512xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op router weight must be a 2-D tensor [experts, hidden], got 'tensor<512xf32>'}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<512xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A router weight of another hidden size.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x128xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op router weight dimension 1 is 128 but must equal the input hidden size (64)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x128xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// k larger than the number of experts.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op k = 16 exceeds the number of experts (8)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 16>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Experts that do not split into n_group groups.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op 8 experts do not split into 3 equal groups}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2, selection = group_limited, n_group = 3, topk_group = 1>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A router bias with another expert count.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %b: tensor<16xf32>,
             %g: tensor<8x32x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op router bias dimension 0 is 16 but must equal the number of experts (8)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg bias %b) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<16xf32>, tensor<8x32x64xf32>,
         tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A correction bias that is not 1-D.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %cb: tensor<1x8xf32>,
             %g: tensor<8x32x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op correction bias must be a 1-D tensor [experts], got 'tensor<1x8xf32>'}}
  %y = moe.layer %x routing #moe.routing<scoring = sigmoid, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg correction_bias %cb) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<1x8xf32>, tensor<8x32x64xf32>,
         tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A correction bias with scores only after selection.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %cb: tensor<8xf32>,
             %g: tensor<8x32x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op a correction bias needs scores over all experts before selection}}
  %y = moe.layer %x routing #moe.routing<scoring = sigmoid_after_topk, k = 1>
      ffn #moe.ffn<activation = silu>
      router(%wg correction_bias %cb) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8xf32>, tensor<8x32x64xf32>,
         tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Routed experts whose count differs from the router's.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<4x32x64xf32>,
             %u: tensor<4x32x64xf32>, %d: tensor<4x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op gate_proj dimension 0 is 4 but must equal the number of experts (8)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>,
         tensor<4x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Routed experts of another hidden size.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %u: tensor<8x32x32xf32>,
             %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op up_proj dimension 2 is 32 but must equal the hidden size (64)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = gelu, glu = none>
      router(%wg) experts(up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x32xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A routed gate bias without a separate gate.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %u: tensor<8x64x64xf32>,
             %d: tensor<8x64x32xf32>, %gb: tensor<8x32xf32>) {
  // expected-error @+1 {{'moe.layer' op gate_bias needs a separate gate_proj}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu, glu = halves>
      router(%wg) experts(up %u down %d gate_bias %gb)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x64x64xf32>, tensor<8x64x32xf32>,
         tensor<8x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A routed down bias of another width.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %db: tensor<8x32xf32>) {
  // expected-error @+1 {{'moe.layer' op down_bias dimension 1 is 32 but must equal the output features (64)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d down_bias %db)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<8x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Shared expert weights without a shared_ffn.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.layer' op shared expert weights need a shared_ffn attribute}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared_ffn without shared expert weights.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_ffn is set but no shared expert is given}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared gate projection that is not 2-D.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<1x96x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_gate_proj must be a 2-D tensor [out, in], got 'tensor<1x96x64xf32>'}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<1x96x64xf32>, tensor<96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared up projection that is not 2-D.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<8x96x64xf32>, %sd: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_up_proj must be a 2-D tensor [out, in], got 'tensor<8x96x64xf32>'}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<8x96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared down projection that is not 2-D.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<64xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_down_proj must be a 2-D tensor [out, in], got 'tensor<64xf32>'}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared expert with glu = separate but no gate.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<96x64xf32>,
             %sd: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.layer' op glu = separate needs a shared_gate_proj weight}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared gate with an ungated shared_ffn.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_gate_proj is given but glu is 'none'; a separate gate needs glu = separate}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = gelu, glu = none>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared up projection of another input size.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<96x32xf32>,
             %sd: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_up_proj dimension 1 is 32 but must equal the hidden size (64)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = gelu, glu = none>
      router(%wg) experts(gate %g up %u down %d) shared(up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x32xf32>, tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A fused shared gate/up weight with an odd number of rows.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<97x64xf32>,
             %sd: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.layer' op fused gate/up weight shared_up_proj must have an even number of rows (gate and up), got 97}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu, glu = halves>
      router(%wg) experts(gate %g up %u down %d) shared(up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<97x64xf32>, tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Shared gate and up projections of different shapes.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<48x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<64x96xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_gate_proj and shared_up_proj must have the same shape}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<48x64xf32>, tensor<96x64xf32>,
         tensor<64x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared down projection of another output size.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<32x96xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_down_proj dimension 0 is 32 but must equal the hidden size (64)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<32x96xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared down projection of another width.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<64x192xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_down_proj dimension 1 is 192 but must equal the expert width (96)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
         tensor<64x192xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared sigmoid gate that is not [1, hidden].
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<64x96xf32>, %ss: tensor<64xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_sigmoid_gate must be a 2-D tensor [1, hidden], got 'tensor<64xf32>'}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd sigmoid_gate %ss)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<96x64xf32>, tensor<64x96xf32>,
         tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared sigmoid gate with more than one output.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<64x96xf32>, %ss: tensor<4x64xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_sigmoid_gate dimension 0 is 4 but must equal the single gate output (1)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd sigmoid_gate %ss)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<96x64xf32>, tensor<64x96xf32>,
         tensor<4x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared sigmoid gate of another hidden size.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<96x64xf32>, %sd: tensor<64x96xf32>, %ss: tensor<1x128xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_sigmoid_gate dimension 1 is 128 but must equal the hidden size (64)}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu> shared_ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) shared(gate %sg up %su down %sd sigmoid_gate %ss)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<96x64xf32>, tensor<64x96xf32>,
         tensor<1x128xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A zero capacity factor.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op capacity_factor must be > 0, got 0.000000e+00}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d) {capacity_factor = 0.0 : f64}
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A result of another type than the input.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op result must have type 'tensor<?x64xf32>', got 'tensor<?x64xf16>'}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2>
      ffn #moe.ffn<activation = silu>
      router(%wg) experts(gate %g up %u down %d)
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> tensor<?x64xf16>
  return
}

// -----

// A shared gate without shared up and down projections.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>) {
  // expected-error @+1 {{'moe.layer' op a shared expert needs shared_up_proj and shared_down_proj}}
  %y = "moe.layer"(%x, %wg, %g, %u, %d, %sg) <{
        ffn = #moe.ffn<activation = silu>, routing = #moe.routing<scoring = softmax, k = 2>,
        shared_ffn = #moe.ffn<activation = silu>,
        operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0>}>
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared up projection without a shared down projection.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<96x64xf32>,
             %su: tensor<96x64xf32>) {
  // expected-error @+1 {{'moe.layer' op a shared expert needs shared_up_proj and shared_down_proj}}
  %y = "moe.layer"(%x, %wg, %g, %u, %d, %sg, %su) <{
        ffn = #moe.ffn<activation = silu>, routing = #moe.routing<scoring = softmax, k = 2>,
        shared_ffn = #moe.ffn<activation = silu>,
        operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0>}>
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<96x64xf32>, tensor<96x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// A shared sigmoid gate alone.
func.func @f(%x: tensor<?x64xf32>, %wg: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
             %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %ss: tensor<1x64xf32>) {
  // expected-error @+1 {{'moe.layer' op a shared expert needs shared_up_proj and shared_down_proj}}
  %y = "moe.layer"(%x, %wg, %g, %u, %d, %ss) <{
        ffn = #moe.ffn<activation = silu>, routing = #moe.routing<scoring = softmax, k = 2>,
        shared_ffn = #moe.ffn<activation = silu>,
        operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1>}>
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @expert_widths_length(%x: tensor<?x64xbf16>, %r: tensor<8x64xbf16>, %g: tensor<8x32x64xbf16>,
    %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.layer' op expert_widths must have one entry per expert (8), got 2}}
  %y = moe.layer %x routing #moe.routing<scoring = softmax, k = 2> ffn #moe.ffn<activation = silu>
      router(%r) experts(gate %g up %u down %d) {expert_widths = array<i64: 4, 4>}
      : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

func.func @expert_widths_range(%x: tensor<?x64xbf16>, %o: tensor<3xi32>, %g: tensor<2x32x64xbf16>,
    %u: tensor<2x32x64xbf16>, %d: tensor<2x64x32xbf16>) -> tensor<?x64xbf16> {
  // expected-error @+1 {{'moe.experts' op expert_widths[1] = 33 is outside [0, 32] (the experts' intermediate width)}}
  %y = moe.experts #moe.ffn<activation = silu> %x, %o gate %g up %u down %d {expert_widths = array<i64: 32, 33>}
      : (tensor<?x64xbf16>, tensor<3xi32>, tensor<2x32x64xbf16>, tensor<2x32x64xbf16>,
         tensor<2x64x32xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
