//===- MoEDialect.cpp - the moe dialect -----------------------------------===//

#include "dialects/moe/MoEDialect.h"
#include "dialects/moe/MoEAttrs.h"
#include "dialects/moe/MoEOps.h"

#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;

#include "dialects/moe/MoEDialect.cpp.inc"

void MoEDialect::initialize() {
  registerAttributes();
  addOperations<
#define GET_OP_LIST
#include "dialects/moe/MoEOps.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// Storage dtypes
//===----------------------------------------------------------------------===//

Type mlir::moe::getElementType(MLIRContext *context, moe_dtype dtype) {
  Builder b(context);
  auto integer = [&](unsigned width,
                     IntegerType::SignednessSemantics signedness) {
    return IntegerType::get(context, width, signedness);
  };
  switch (dtype) {
  case MOE_DTYPE_BOOL:
    return b.getI1Type();
  case MOE_DTYPE_U8:
    return integer(8, IntegerType::Unsigned);
  case MOE_DTYPE_I8:
    return integer(8, IntegerType::Signed);
  case MOE_DTYPE_U16:
    return integer(16, IntegerType::Unsigned);
  case MOE_DTYPE_I16:
    return integer(16, IntegerType::Signed);
  case MOE_DTYPE_U32:
    return integer(32, IntegerType::Unsigned);
  case MOE_DTYPE_I32:
    return integer(32, IntegerType::Signed);
  case MOE_DTYPE_U64:
    return integer(64, IntegerType::Unsigned);
  case MOE_DTYPE_I64:
    return integer(64, IntegerType::Signed);
  case MOE_DTYPE_F8_E4M3:
    return b.getType<Float8E4M3FNType>();
  case MOE_DTYPE_F8_E5M2:
    return b.getType<Float8E5M2Type>();
  case MOE_DTYPE_F8_E8M0:
    return b.getType<Float8E8M0FNUType>();
  case MOE_DTYPE_F16:
    return b.getF16Type();
  case MOE_DTYPE_BF16:
    return b.getBF16Type();
  case MOE_DTYPE_F32:
    return b.getF32Type();
  case MOE_DTYPE_F64:
    return b.getF64Type();
  case MOE_DTYPE_INVALID:
    break;
  }
  return {};
}

std::optional<moe_dtype> mlir::moe::getStorageDType(Type elementType) {
  // Signless integers are accepted as their signed dtype: the bytes are the
  // same.
  if (auto integer = dyn_cast<IntegerType>(elementType)) {
    bool isUnsigned = integer.isUnsigned();
    switch (integer.getWidth()) {
    case 1:
      return MOE_DTYPE_BOOL;
    case 8:
      return isUnsigned ? MOE_DTYPE_U8 : MOE_DTYPE_I8;
    case 16:
      return isUnsigned ? MOE_DTYPE_U16 : MOE_DTYPE_I16;
    case 32:
      return isUnsigned ? MOE_DTYPE_U32 : MOE_DTYPE_I32;
    case 64:
      return isUnsigned ? MOE_DTYPE_U64 : MOE_DTYPE_I64;
    default:
      return std::nullopt;
    }
  }
  return llvm::TypeSwitch<Type, std::optional<moe_dtype>>(elementType)
      .Case<Float8E4M3FNType>([](auto) { return MOE_DTYPE_F8_E4M3; })
      .Case<Float8E5M2Type>([](auto) { return MOE_DTYPE_F8_E5M2; })
      .Case<Float8E8M0FNUType>([](auto) { return MOE_DTYPE_F8_E8M0; })
      .Case<Float16Type>([](auto) { return MOE_DTYPE_F16; })
      .Case<BFloat16Type>([](auto) { return MOE_DTYPE_BF16; })
      .Case<Float32Type>([](auto) { return MOE_DTYPE_F32; })
      .Case<Float64Type>([](auto) { return MOE_DTYPE_F64; })
      .Default([](Type) { return std::nullopt; });
}
