//===- Evaluator.h - the float64 reference evaluator ------------*- C++ -*-===//
//
// Evaluates a function of moe dialect ops directly, in float64, with weights
// read from a checkpoint: the oracle every code path of moec is checked
// against. It accepts every stage of the IR: block level (moe.layer) and
// decomposed (route, dispatch, experts, combine).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_REFERENCE_EVALUATOR_H
#define MOEC_LIB_REFERENCE_EVALUATOR_H

#include "dialects/moe/MoEOps.h"
#include "lib/Reference/Kernels.h"
#include "lib/Reference/RefTensor.h"
#include "lib/Weights/Safetensors.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <map>
#include <optional>

namespace mlir::moe::reference {

/// The value of `weight` read from `checkpoint` (dtype and shape checked
/// against the IR), whole (`expert` < 0) or only expert `expert`'s slice of a
/// weight with a leading expert dimension, so a stage that streams expert by
/// expert never holds all of them.
FailureOr<RefTensor> readWeight(const ::moe::Checkpoint &checkpoint,
                                WeightOp weight, int64_t expert);

/// Reads moe.weight references from a checkpoint, checking each stored tensor's
/// dtype and shape against the IR; loaded weights are cached for the loader's
/// lifetime.
class WeightLoader {
public:
  explicit WeightLoader(const ::moe::Checkpoint &checkpoint)
      : checkpoint(checkpoint) {}
  /// The value of `weight` (stacked and permuted as the op says); errors at the
  /// op.
  FailureOr<const RefTensor *> load(WeightOp weight);
  const ::moe::Checkpoint &getCheckpoint() const { return checkpoint; }

private:
  const ::moe::Checkpoint &checkpoint;
  std::map<std::string, RefTensor> cache;
};

struct Evaluation {
  /// The function's result [T, H].
  RefTensor output;
  /// The routing decision of the first router in the function, if any.
  std::optional<Routing> routing;
};

/// Evaluates `function` (one tensor argument [T, H], one tensor result) on
/// `input`, in float64 throughout. The input values are used as given, whatever
/// the argument's element type: callers wanting bf16 semantics pass bf16-exact
/// values.
FailureOr<Evaluation> evaluate(func::FuncOp function, const RefTensor &input,
                               WeightLoader &weights);

/// Tensor `name` of `file` (read from `path`) as [T, H] doubles: hidden states
/// are 2-D, F32 or BF16, with at least one token. Errors name the file and
/// the tensor.
llvm::Expected<RefTensor> readHiddenStates(const ::moe::SafetensorsFile &file,
                                           llvm::StringRef path,
                                           llvm::StringRef name);

/// How far `got` (element i by `got(i)`) is from `want`: the norm of the
/// difference over the norm of `want` (the plain norm when `want` is zero).
double relativeError(const RefTensor &want,
                     llvm::function_ref<double(int64_t)> got);

/// Tokens of `want` ([T, k] expert ids) whose experts `got(t, j)` chooses too,
/// compared as sets (some families' top-k is unsorted).
int64_t
tokensWithSameExperts(const RefTensor &want,
                      llvm::function_ref<int64_t(int64_t, int64_t)> got);

} // namespace mlir::moe::reference

#endif // MOEC_LIB_REFERENCE_EVALUATOR_H
