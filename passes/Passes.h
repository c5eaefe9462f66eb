//===- Passes.h - moe transformations ---------------------------*- C++ -*-===//

#ifndef MOEC_PASSES_PASSES_H
#define MOEC_PASSES_PASSES_H

#include "dialects/moe/MoEOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::moe {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// Registers moec's named pass pipelines (see Pipelines.cpp).
void registerMoEPipelines();

} // namespace mlir::moe

#endif // MOEC_PASSES_PASSES_H
