//===- MoEAttrs.h - moe dialect enums, attributes, interfaces ---*- C++ -*-===//

#ifndef MOEC_DIALECTS_MOE_MOEATTRS_H
#define MOEC_DIALECTS_MOE_MOEATTRS_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectImplementation.h"
#include "moe/dtype.h"

#include <optional>

namespace mlir::moe {
/// Parses a float literal into an f64 FloatAttr (parameters of the moe
/// attributes).
FailureOr<FloatAttr> parseF64Parameter(AsmParser &parser);
/// Prints an f64 FloatAttr parameter as the shortest decimal that parses back
/// exactly.
void printF64Parameter(AsmPrinter &printer, FloatAttr value);
} // namespace mlir::moe

#include "dialects/moe/MoEEnums.h.inc"
#include "dialects/moe/MoEInterfaces.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/moe/MoEAttrs.h.inc"

namespace mlir::moe {
/// The safetensors dtype that stores tensors of `elementType` (si8/ui8 for
/// I8/U8, f8E4M3FN for F8_E4M3, ...), or nullopt if no dtype does.
std::optional<moe_dtype> getStorageDType(Type elementType);
/// The element type of a tensor stored as `dtype` (null for MOE_DTYPE_INVALID).
Type getElementType(MLIRContext *context, moe_dtype dtype);
} // namespace mlir::moe

#endif // MOEC_DIALECTS_MOE_MOEATTRS_H
