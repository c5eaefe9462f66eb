//===- MoEOps.h - moe dialect operations ------------------------*- C++ -*-===//

#ifndef MOEC_DIALECTS_MOE_MOEOPS_H
#define MOEC_DIALECTS_MOE_MOEOPS_H

#include "dialects/moe/MoEAttrs.h"
#include "dialects/moe/MoEDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "dialects/moe/MoEOps.h.inc"

#endif // MOEC_DIALECTS_MOE_MOEOPS_H
