//===- WeightPacking.h - weights in the layout generated code reads -*- C++
//-*-===//
//
// The CPU kernels read each expert's projection in column panels of P outputs:
// W[N, K] (nn.Linear orientation) becomes [panels][K][P], so one k step of a
// panel is one contiguous vector load. A gated first projection packs P/2 gate
// and the matching P/2 up columns in the same panel, which lets the activation
// run in the matmul's epilogue. Panels are zero-padded; padded outputs are
// never read. Router and bias tensors are stored f32.
//
// Packing is planned first (names, shapes, offsets: what code generation needs)
// and executed later, streaming one expert at a time from the checkpoint into
// the output file.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_CODEGEN_CPU_WEIGHTPACKING_H
#define MOEC_LIB_CODEGEN_CPU_WEIGHTPACKING_H

#include "lib/Codegen/CPU/LayerPlan.h"
#include "lib/Weights/Safetensors.h"

#include <functional>
#include <string>
#include <vector>

namespace mlir::moe::cpu {

/// A tensor of the output weights file: where it is and what it holds.
struct PackedTensor {
  std::string name;
  moe_dtype dtype = MOE_DTYPE_INVALID;
  std::vector<int64_t> shape;
  uint64_t offset = 0; // in the data buffer
};

/// A projection stored as integer levels the kernels dequantize in their
/// inner loop: w = (level - zero) * scale, one scale and zero point per group
/// of `groupSize` k rows and output column (computed exactly as the IR's
/// moe.dequantize does, so results match it to float rounding). 8-bit levels
/// are signed bytes [K][P]; 4-bit levels are unsigned nibbles, two k rows a
/// byte ([K/2][P], even k in the low nibble). Scales and zero points are f32
/// [groups][P] per panel; zero points are absent for symmetric 8-bit levels.
///
/// FP8 and MXFP4 weights are stored the same way with their codes as levels
/// (`format`): e4m3 bytes (#moe.fp8_block, groups of the block's columns, each
/// row's scale its block's scale_inv) or e2m1 nibbles (#moe.mxfp4, groups of
/// 32, scales 2^(e - 127)), never with zero points; kernels decode the codes
/// with bit operations (codegen::decodeE4m3, decodeE2m1).
enum class LevelFormat { Int, E4M3, E2M1 };
struct PackedQuantization {
  LevelFormat format = LevelFormat::Int;
  int64_t bits = 8;
  int64_t groupSize = 0;
  int64_t groups = 0; // per panel: ceil(K / groupSize)
  /// The IR's dequantized weight is bf16: kernels round each dequantized value
  /// to bf16 as the IR says (and as the reference evaluator does).
  bool roundToBF16 = false;
  const PackedTensor *scales = nullptr, *zeros = nullptr;
};

/// The latent form of a first projection (LatentPlan): the stacked bases
/// packed like one unguarded projection per group, basis [groups][panels][H][P]
/// (output column c of a group is row c of [B_first; B_second]), so z rows are
/// [groups][panels * P] per token; w1 then holds the factors A with K = rank.
struct PackedLatent {
  const PackedTensor *basis = nullptr;
  int64_t rank = 0, groups = 0;
  int64_t expertsPerGroup = 1;
  int64_t panels = 0;      // of the basis projection
  int64_t widthPadded = 0; // z columns per group: panels * P
  /// The z column (within the group) where the up half of a gated panel
  /// reads k = 0; the gate half reads from 0 (both 0 with one factorization).
  int64_t upColumn = 0;
  /// Set when the bases are quantized (moe-quantize-experts
  /// latent-basis=quantize): `basis` holds their integer levels, one
  /// "expert" per group, K = H.
  std::optional<PackedQuantization> basisQuantization;
};

/// Experts of different widths (LayerPlan::expertWidths) stored compactly
/// (PackingOptions::compactWidths): each expert keeps only the panels and rows
/// its width reaches, the experts one after another. Expert e holds
/// firstPanels[e] panels of w1 (those with a channel below its width) and, in
/// each of w2's panels, downRows[e] = its width k rows (stored rows halved,
/// rounded up, for 4-bit levels; groups: ceil(downRows[e] / groupSize)):
///   w1 [sum firstPanels][Hrows][P], its scales [sum firstPanels][groups][P];
///   w2 [sum panels2 * stored rows][P], its scales [sum panels2 * groups][P],
/// expert e's part of w2 being [panels2][its stored rows or groups][P].
struct PackedWidths {
  std::vector<int64_t> firstPanels, downRows;
};

/// A feed-forward's packed weights: w1 [E][panels1][Hrows][P], w2
/// [E][panels2][Kpad][P] (rows halved for 4-bit levels), or the compact layout
/// of PackedWidths.
struct PackedFfn {
  int64_t numExperts = 1;
  int64_t hidden = 0, width = 0;
  int64_t hiddenRows = 0; // K rows of w1: H, or H zero-padded (PackingOptions)
  int64_t panels1 = 0, panels2 = 0;
  int64_t widthPadded = 0;  // K of the second projection (the stored h width)
  int64_t hiddenPadded = 0; // panels2 * P
  bool gated = true;
  FfnAttr ffn;
  const PackedTensor *w1 = nullptr, *w2 = nullptr, *b1 = nullptr, *b2 = nullptr;
  /// Set when w1 / w2 hold integer levels.
  std::optional<PackedQuantization> q1, q2;
  /// Set when the first projection runs in the latent space: w1 is
  /// [E][panels1][rank][P] and reads the dispatched z rows, not x.
  std::optional<PackedLatent> latent;
  /// Set when w1 and w2 (and their scales and zero points) are compact.
  std::optional<PackedWidths> compact;
};

struct PackedLayer {
  const PackedTensor *router = nullptr, *routerBias = nullptr,
                     *correctionBias = nullptr;
  const PackedTensor *sigmoidGate = nullptr;
  PackedFfn experts;
  std::optional<PackedFfn> shared;
};

/// How a target wants the weights beyond the panel layout.
struct PackingOptions {
  /// Output columns per panel (P).
  int64_t panelWidth = 64;
  /// w1's K rows are zero-padded to a multiple of this (the GPU kernels step
  /// through K in tiles of 32 rows and never test for a tail).
  int64_t kRowMultiple = 1;
  /// Every tensor starts at a multiple of this many bytes of the data buffer
  /// (GPU kernels load 16-byte vectors); gaps are filled with zero "pad"
  /// tensors so the file stays a gap-free safetensors file.
  uint64_t tensorAlignment = 1;
  /// Expert weights stored as bf16 whatever the checkpoint's type (the GPU
  /// kernels feed bf16 tensor cores).
  bool expertsAsBF16 = false;
  /// Expert projections stored with one #moe.int_group encoding (8 or 4 bits)
  /// keep their integer levels (PackedQuantization) instead of being
  /// dequantized here.
  bool keepIntGroups = false;
  /// Latent experts (LayerPlan::latent) keep their factors and bases instead
  /// of the product; the code must then compute in the latent space.
  bool latentExperts = false;
  /// Experts of different widths store only the panels and rows within their
  /// widths (PackedWidths) instead of the widest expert's rectangle.
  bool compactWidths = false;
};

class WeightPacker {
public:
  /// `checkpoint` may be null to plan the layout only (write() then fails).
  WeightPacker(const ::moe::Checkpoint *checkpoint, PackingOptions options)
      : checkpoint(checkpoint), options(options) {}

  int64_t getPanelWidth() const { return options.panelWidth; }

  /// Plans the packed tensors of one layer (nothing is read yet).
  FailureOr<PackedLayer> planLayer(const LayerPlan &plan);

  /// Every planned tensor, in file order (names, dtypes, shapes, offsets).
  llvm::ArrayRef<std::unique_ptr<PackedTensor>> getTensors() const {
    return tensors;
  }

  /// Writes every planned tensor to `path` (atomically); returns the lowercase
  /// hex SHA-256 of the data buffer, also recorded in the file's metadata as
  /// "moec_weights_hash". Weight-reading errors are emitted at the IR op whose
  /// weight failed.
  FailureOr<std::string> write(llvm::StringRef path, Location errorLoc);

private:
  /// Produces a tensor's bytes in order, in as many pieces as it likes (one
  /// expert at a time for stacked weights), handing each to `emit`.
  using Emit = std::function<void(llvm::ArrayRef<uint8_t>)>;
  using Producer = std::function<LogicalResult(const Emit &emit)>;
  const PackedTensor *declare(std::string name, moe_dtype dtype,
                              std::vector<int64_t> shape, Producer producer);
  /// `widths`: each expert's width, empty when all have the full width.
  FailureOr<PackedFfn> planFfn(const std::string &prefix, const FfnPlan &ffn,
                               int64_t hidden,
                               const LatentPlan *latent = nullptr,
                               llvm::ArrayRef<int64_t> widths = {});
  /// Declares the stacked bases of `latent` and the factors as w1 (columns as
  /// `firstRow` maps them: gate row j of panel p, or up row j). Integer
  /// factors keep their levels (`factorsQuantization`, K = rank), and so do
  /// integer bases (PackedLatent::basisQuantization).
  PackedLatent
  planLatent(const std::string &prefix, const LatentPlan &latent,
             const FfnPlan &ffn, int64_t hidden, int64_t panels1,
             const PackedTensor *&factors,
             std::optional<PackedQuantization> &factorsQuantization);
  /// Which integer rows feed column c of panel p (null for padding; `row` is
  /// set to the row within the returned values).
  using ColumnSource =
      std::function<const reference::WeightMaterializer::IntGroupValues *(
          const reference::ExpertIntGroups &, int64_t p, int64_t c,
          int64_t &row)>;
  /// Declares the integer levels (into `levels`), scales and offsets of a
  /// projection with K rows per panel; with `compact`, in its layout (the
  /// first projection: each expert's panels; the down projection: each
  /// expert's K).
  /// `encoding` is an #moe.int_group, or the #moe.fp8_block or #moe.mxfp4
  /// of getFloatCodeEncoding.
  PackedQuantization planQuantized(const std::string &name, Attribute encoding,
                                   int64_t E, int64_t panels, int64_t K,
                                   int64_t P, const ColumnSource &columnSource,
                                   const FfnPlan &plan,
                                   reference::ExpertPart part, bool roundToBF16,
                                   const PackedTensor *&levels,
                                   const PackedWidths *compact = nullptr);

  const ::moe::Checkpoint *checkpoint;
  PackingOptions options;
  int64_t padCount = 0;
  uint64_t nextOffset = 0;
  std::vector<std::unique_ptr<PackedTensor>> tensors;
  std::vector<Producer> producers;
};

} // namespace mlir::moe::cpu

#endif // MOEC_LIB_CODEGEN_CPU_WEIGHTPACKING_H
