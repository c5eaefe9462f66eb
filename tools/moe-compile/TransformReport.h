//===- TransformReport.h - what the weight-changing passes did, per layer -*-
//C++ -*-===//
//
// moe-compile --passes runs user-chosen transformations (quantization, ...)
// before code generation. This measures each layer before and after: the bytes
// of weights as the IR stores them, and, on calibration hidden states, the
// relative output error and routing agreement of the transformed layer against
// the original (both by the float64 reference evaluator).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TOOLS_MOE_COMPILE_TRANSFORMREPORT_H
#define MOEC_TOOLS_MOE_COMPILE_TRANSFORMREPORT_H

#include "lib/Weights/Safetensors.h"

#include "mlir/IR/BuiltinOps.h"

#include <nlohmann/json.hpp>

namespace mlir::moe {

/// Bytes of the weight tensors a layer function reads, as the IR stores them:
/// each weight operand of a computing op traced back through the weight
/// writer's transformations (quantization storage, latent factors, slices,
/// concats, column scales) to what is stored; constants count nothing.
uint64_t storedWeightBytes(Operation *function);

/// The per-layer report of `transformed` against `original` (same functions,
/// before the passes). `calibration` (a safetensors file with
/// `layer<N>.hidden_states` or `hidden_states` [T, H]) may be empty: then no
/// error is measured. Errors (unreadable calibration, evaluation failures) are
/// emitted and fail.
FailureOr<nlohmann::ordered_json>
buildTransformReport(ModuleOp original, ModuleOp transformed,
                     const ::moe::Checkpoint &checkpoint,
                     llvm::StringRef calibration, llvm::StringRef passes);

} // namespace mlir::moe

#endif // MOEC_TOOLS_MOE_COMPILE_TRANSFORMREPORT_H
