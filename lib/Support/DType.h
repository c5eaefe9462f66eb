//===- DType.h - safetensors dtype names and sizes --------------*- C++ -*-===//

#ifndef MOEC_LIB_SUPPORT_DTYPE_H
#define MOEC_LIB_SUPPORT_DTYPE_H

#include "moe/dtype.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <optional>

namespace moe {

/// The dtype a safetensors header names, e.g. "BF16"; nullopt for names moec does not read
/// (including valid safetensors dtypes such as "F4" that moec has no use for yet).
std::optional<moe_dtype> parseSafetensorsDType(llvm::StringRef name);

/// The safetensors header name of `dtype` ("" for MOE_DTYPE_INVALID).
llvm::StringRef getSafetensorsName(moe_dtype dtype);

/// Bytes per element of `dtype` (0 for MOE_DTYPE_INVALID).
unsigned getByteSize(moe_dtype dtype);

/// Bytes a tensor of `shape` and `dtype` occupies, or nullopt if a dimension is negative or
/// the product overflows 64 bits (a hostile header must not wrap around).
std::optional<uint64_t> getTensorByteSize(moe_dtype dtype, llvm::ArrayRef<int64_t> shape);

} // namespace moe

#endif // MOEC_LIB_SUPPORT_DTYPE_H
