//===- DType.cpp - safetensors dtype names and sizes ----------------------===//

#include "lib/Support/DType.h"

#include "llvm/Support/MathExtras.h"

namespace moe {
namespace {
struct DTypeEntry {
  moe_dtype dtype;
  llvm::StringLiteral name;
  unsigned bytes;
};

constexpr DTypeEntry kDTypes[] = {
    {MOE_DTYPE_BOOL, "BOOL", 1},       {MOE_DTYPE_U8, "U8", 1},
    {MOE_DTYPE_I8, "I8", 1},           {MOE_DTYPE_U16, "U16", 2},
    {MOE_DTYPE_I16, "I16", 2},         {MOE_DTYPE_U32, "U32", 4},
    {MOE_DTYPE_I32, "I32", 4},         {MOE_DTYPE_U64, "U64", 8},
    {MOE_DTYPE_I64, "I64", 8},         {MOE_DTYPE_F8_E4M3, "F8_E4M3", 1},
    {MOE_DTYPE_F8_E5M2, "F8_E5M2", 1}, {MOE_DTYPE_F8_E8M0, "F8_E8M0", 1},
    {MOE_DTYPE_F16, "F16", 2},         {MOE_DTYPE_BF16, "BF16", 2},
    {MOE_DTYPE_F32, "F32", 4},         {MOE_DTYPE_F64, "F64", 8},
};

const DTypeEntry *lookup(moe_dtype dtype) {
  for (const DTypeEntry &entry : kDTypes)
    if (entry.dtype == dtype)
      return &entry;
  return nullptr;
}
} // namespace

std::optional<moe_dtype> parseSafetensorsDType(llvm::StringRef name) {
  for (const DTypeEntry &entry : kDTypes)
    if (entry.name == name)
      return entry.dtype;
  return std::nullopt;
}

llvm::StringRef getSafetensorsName(moe_dtype dtype) {
  const DTypeEntry *entry = lookup(dtype);
  return entry ? llvm::StringRef(entry->name) : llvm::StringRef();
}

unsigned getByteSize(moe_dtype dtype) {
  const DTypeEntry *entry = lookup(dtype);
  return entry ? entry->bytes : 0;
}

std::optional<uint64_t> getTensorByteSize(moe_dtype dtype, llvm::ArrayRef<int64_t> shape) {
  unsigned bytes = getByteSize(dtype);
  if (bytes == 0)
    return std::nullopt;
  uint64_t total = bytes;
  for (int64_t dim : shape) {
    if (dim < 0)
      return std::nullopt;
    bool overflow = false;
    total = llvm::SaturatingMultiply(total, static_cast<uint64_t>(dim), &overflow);
    if (overflow)
      return std::nullopt;
  }
  return total;
}

} // namespace moe
