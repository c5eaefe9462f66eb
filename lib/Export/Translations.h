//===- Translations.h - moec's moe-translate registrations ------*- C++ -*-===//

#ifndef MOEC_LIB_EXPORT_TRANSLATIONS_H
#define MOEC_LIB_EXPORT_TRANSLATIONS_H

#include "mlir/IR/Operation.h"
#include "llvm/Support/raw_ostream.h"

namespace mlir::moe {

/// Writes, as JSON, every external tensor `op` references through moe.weight:
/// name, shard file, dtype, logical and stored shapes, expert stacking and
/// permutation. Fails with a located error when one tensor is referenced with
/// two different types.
LogicalResult exportWeightsManifest(Operation *op, llvm::raw_ostream &os);

/// Registers moec's translations with mlir-translate's registry.
void registerMoETranslations();

} // namespace mlir::moe

#endif // MOEC_LIB_EXPORT_TRANSLATIONS_H
