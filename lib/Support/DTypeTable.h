//===- DTypeTable.h - safetensors dtype table, LLVM-free --------*- C++ -*-===//
//
// The one table of safetensors dtype names and element sizes, in plain C++17 so
// that code which must not depend on LLVM (the runtime,
// lib/Weights/SafetensorsFormat) can use it. lib/Support/DType.h wraps it with
// the LLVM-typed API the compiler uses.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_SUPPORT_DTYPETABLE_H
#define MOEC_LIB_SUPPORT_DTYPETABLE_H

#include "moe/dtype.h"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace moe {
namespace detail {
struct DTypeEntry {
  moe_dtype dtype;
  std::string_view name;
  unsigned bytes;
};

inline constexpr DTypeEntry kDTypes[] = {
    {MOE_DTYPE_BOOL, "BOOL", 1},       {MOE_DTYPE_U8, "U8", 1},
    {MOE_DTYPE_I8, "I8", 1},           {MOE_DTYPE_U16, "U16", 2},
    {MOE_DTYPE_I16, "I16", 2},         {MOE_DTYPE_U32, "U32", 4},
    {MOE_DTYPE_I32, "I32", 4},         {MOE_DTYPE_U64, "U64", 8},
    {MOE_DTYPE_I64, "I64", 8},         {MOE_DTYPE_F8_E4M3, "F8_E4M3", 1},
    {MOE_DTYPE_F8_E5M2, "F8_E5M2", 1}, {MOE_DTYPE_F8_E8M0, "F8_E8M0", 1},
    {MOE_DTYPE_F16, "F16", 2},         {MOE_DTYPE_BF16, "BF16", 2},
    {MOE_DTYPE_F32, "F32", 4},         {MOE_DTYPE_F64, "F64", 8},
};

inline const DTypeEntry *lookupDType(moe_dtype dtype) {
  for (const DTypeEntry &entry : kDTypes)
    if (entry.dtype == dtype)
      return &entry;
  return nullptr;
}
} // namespace detail

/// The dtype a safetensors header names, e.g. "BF16"; nullopt for names moec
/// does not read (including valid safetensors dtypes such as "F4" that moec has
/// no use for yet).
inline std::optional<moe_dtype> parseSafetensorsDType(std::string_view name) {
  for (const detail::DTypeEntry &entry : detail::kDTypes)
    if (entry.name == name)
      return entry.dtype;
  return std::nullopt;
}

/// The safetensors header name of `dtype` ("" for MOE_DTYPE_INVALID). DType.h's
/// getSafetensorsName is the same as an llvm::StringRef.
inline std::string_view getSafetensorsDTypeName(moe_dtype dtype) {
  const detail::DTypeEntry *entry = detail::lookupDType(dtype);
  return entry ? entry->name : std::string_view();
}

/// Bytes per element of `dtype` (0 for MOE_DTYPE_INVALID).
inline unsigned getByteSize(moe_dtype dtype) {
  const detail::DTypeEntry *entry = detail::lookupDType(dtype);
  return entry ? entry->bytes : 0;
}

/// Bytes a tensor of shape `dims[0..rank)` and `dtype` occupies, or nullopt if
/// a dimension is negative or the product overflows 64 bits (a hostile header
/// must not wrap around).
inline std::optional<uint64_t>
getTensorByteSize(moe_dtype dtype, const int64_t *dims, size_t rank) {
  unsigned bytes = getByteSize(dtype);
  if (bytes == 0)
    return std::nullopt;
  uint64_t total = bytes;
  for (size_t i = 0; i < rank; ++i) {
    if (dims[i] < 0)
      return std::nullopt;
    uint64_t dim = static_cast<uint64_t>(dims[i]);
    if (dim != 0 && total > std::numeric_limits<uint64_t>::max() / dim)
      return std::nullopt;
    total *= dim;
  }
  return total;
}

} // namespace moe

#endif // MOEC_LIB_SUPPORT_DTYPETABLE_H
