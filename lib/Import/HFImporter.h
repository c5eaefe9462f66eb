//===- HFImporter.h - Hugging Face checkpoint -> moe dialect ----*- C++ -*-===//

#ifndef MOEC_LIB_IMPORT_HFIMPORTER_H
#define MOEC_LIB_IMPORT_HFIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace mlir::moe {

/// Imports the checkpoint folder `directory` (config.json + model.safetensors,
/// or shards listed in model.safetensors.index.json): one function `@layer_<L>`
/// per MoE decoder layer L, computing the MoE block on hidden states [T, H]
/// with the family's exact routing, its weights as moe.weight references
/// checked against the checkpoint (nothing is copied). Errors (unsupported
/// model_type, missing tensor, shape contradicting config.json, ...) are
/// emitted at a location naming config.json and return null.
OwningOpRef<ModuleOp> importHFCheckpoint(llvm::StringRef directory,
                                         MLIRContext *context);

/// The model_type values importHFCheckpoint accepts.
llvm::ArrayRef<llvm::StringRef> getSupportedModelTypes();

/// Registers `moe-translate --import-hf DIR`.
void registerImportHFTranslation();

} // namespace mlir::moe

#endif // MOEC_LIB_IMPORT_HFIMPORTER_H
