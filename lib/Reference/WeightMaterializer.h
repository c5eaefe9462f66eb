//===- WeightMaterializer.h - values of weight expressions ------*- C++ -*-===//
//
// Weights never enter the IR: a weight is an expression over moe.weight
// references (moe.dequantize, moe.quantize, tensor.concat, constants, and the
// ops compression passes record). This computes the value of such an
// expression, whole or one expert at a time, for everything that needs
// numbers: the weight packer (streaming expert by expert), the reference
// evaluator and the passes that measure weights. A new weight-transforming op
// is taught here, once.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_REFERENCE_WEIGHTMATERIALIZER_H
#define MOEC_LIB_REFERENCE_WEIGHTMATERIALIZER_H

#include "dialects/moe/MoEOps.h"
#include "lib/Reference/RefTensor.h"
#include "lib/Weights/Safetensors.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Value.h"
#include "mlir/Support/LLVM.h"

#include <list>
#include <map>

namespace mlir::moe::reference {

class WeightMaterializer {
public:
  explicit WeightMaterializer(const ::moe::Checkpoint &checkpoint)
      : checkpoint(checkpoint) {}

  /// The value of `value` in float64: whole (`expert` < 0) or only expert
  /// `expert`'s slice of a value with a leading expert dimension. Errors are
  /// emitted at the op that cannot be computed.
  FailureOr<RefTensor> get(Value value, int64_t expert = -1);

  /// Whether `op` is one of the weight expressions get() computes.
  static bool isWeightExpression(Operation *op);

  const ::moe::Checkpoint &getCheckpoint() const { return checkpoint; }

  /// The integer levels, scales and zero points of a weight stored with one
  /// #moe.int_group encoding: a moe.dequantize, or concatenations and expert
  /// slices of such (what fusing gate/up and selecting experts make of them).
  /// Compiled kernels dequantize these themselves.
  ///
  /// Weights stored as #moe.fp8_block with e4m3 values or as #moe.mxfp4 read
  /// the same way, with their codes as levels (e4m3 bytes 0..255, e2m1
  /// nibbles 0..15) and one scale per row and group of k (fp8: the block's
  /// scale_inv, groups of blockCols; mxfp4: 2^(e - 127), groups of 32).
  struct IntGroupValues {
    RefTensor levels; // [..., N, K]: q, signed when symmetric
    RefTensor scales; // [..., N, K / group]
    RefTensor zeros;  // like scales when asymmetric, else empty
  };
  FailureOr<IntGroupValues> getIntGroup(Value value, int64_t expert = -1);

  /// The #moe.int_group encoding whose storage holds the levels of `value`
  /// (as getIntGroup reads them), from the IR alone: its one encoding, or the
  /// widest of encodings that differ only in bits; null otherwise.
  static IntGroupEncodingAttr getIntGroupEncoding(Value value);

  /// As getIntGroupEncoding for float codes: the #moe.fp8_block (e4m3
  /// values) or #moe.mxfp4 encoding every part of `value` is stored with;
  /// null otherwise.
  static Attribute getFloatCodeEncoding(Value value);

private:
  /// The value a slice cuts (one expert's, or whole for expert < 0), read
  /// once for consecutive slices of it.
  FailureOr<const RefTensor *> getSliceSource(tensor::ExtractSliceOp slice,
                                              int64_t expert);

  const ::moe::Checkpoint &checkpoint;
  struct SliceSourceKey {
    Value value;
    int64_t expert;
  };
  static constexpr size_t kSliceSourcesKept = 4;
  /// Recently read slice sources, oldest first (a list: references to its
  /// elements stay valid while others are added or removed).
  std::list<std::pair<SliceSourceKey, RefTensor>> sliceSources;
  /// The last multi-result op computed (moe.quantize): its consumers ask for
  /// each result in turn.
  std::pair<Operation *, int64_t> cachedKey{nullptr, 0};
  SmallVector<RefTensor> cached;
  /// The factors [G or E, N, R] and bases [1 or E/G, R, K] of the last group
  /// computed (group -1: all of them) of the most recent moe.factorize ops:
  /// the experts of a group share one SVD, which expert-by-expert reads would
  /// otherwise repeat. A few ops (gate, up, down) at a time.
  struct Factorized {
    Operation *op;
    int64_t group;
    RefTensor factors, basis;
  };
  static constexpr size_t kFactorizationsKept = 3;
  SmallVector<Factorized, 3> factorized;
};

/// The input of a concatenation of experts (tensor.concat along dimension 0)
/// holding expert `expert`, and the expert's index in it; failure (emitted at
/// the op) when the concatenation has no such expert.
FailureOr<std::pair<Value, int64_t>> concatPartHolding(tensor::ConcatOp concat,
                                                       int64_t expert);

/// The weight values of one feed-forward as the IR has them: routed experts
/// stacked [E, ...], a shared expert 2-D.
struct FfnValues {
  FfnAttr ffn;
  Value gate, up, down; // gate null when fused into up or ungated
  Value gateBias, upBias, downBias;
  int64_t numExperts = 1; // 1 for a shared expert
  int64_t width = 0;      // I: the intermediate width
  bool stacked = false;   // weights carry a leading expert dimension

  /// The feed-forward of these weights: the expert count and width from the
  /// up projection (halved when gate and up are fused into it).
  static FfnValues get(FfnAttr ffn, Value gate, Value up, Value down,
                       Value gateBias, Value upBias, Value downBias,
                       bool stacked);
};

/// The matrices of one expert in logical form: gate [I, H] (none when
/// ungated), up [I, H], down [H, I], and biases; fused gate/up layouts are
/// split.
struct ExpertMatrices {
  std::optional<RefTensor> gate, gateBias;
  RefTensor up, down;
  std::optional<RefTensor> upBias, downBias;
};

/// Which of an expert's matrices to read (each read dequantizes, so a
/// consumer of one matrix reads only that one).
enum class ExpertPart { All, First, FirstBias, Down, DownBias };

/// Expert `expert`'s matrices of `ffn` (expert is ignored for a shared
/// expert).
FailureOr<ExpertMatrices> loadExpertMatrices(WeightMaterializer &source,
                                             const FfnValues &ffn,
                                             int64_t expert, ExpertPart part);

/// An expert's first projection (gate and up, split like
/// ExpertMatrices) or down projection as integer levels.
struct ExpertIntGroups {
  std::optional<WeightMaterializer::IntGroupValues> gate;
  WeightMaterializer::IntGroupValues up, down;
};
/// As loadExpertMatrices for the weights getIntGroupEncoding accepts; `part`
/// is First or Down.
FailureOr<ExpertIntGroups> loadExpertIntGroups(WeightMaterializer &source,
                                               const FfnValues &ffn,
                                               int64_t expert, ExpertPart part);

} // namespace mlir::moe::reference

#endif // MOEC_LIB_REFERENCE_WEIGHTMATERIALIZER_H
