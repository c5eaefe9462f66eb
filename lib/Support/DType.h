//===- DType.h - safetensors dtype names and sizes --------------*- C++ -*-===//
//
// The LLVM-typed face of the dtype table in DTypeTable.h (which also declares
// parseSafetensorsDType, getByteSize and a pointer-and-rank getTensorByteSize,
// usable without LLVM).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_SUPPORT_DTYPE_H
#define MOEC_LIB_SUPPORT_DTYPE_H

#include "lib/Support/DTypeTable.h"
#include "moe/dtype.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <optional>

namespace moe {

// From DTypeTable.h (an llvm::StringRef converts to the std::string_view it
// takes):
//   std::optional<moe_dtype> parseSafetensorsDType(std::string_view name);
//   unsigned getByteSize(moe_dtype dtype);

/// The safetensors header name of `dtype` ("" for MOE_DTYPE_INVALID).
llvm::StringRef getSafetensorsName(moe_dtype dtype);

/// Bytes a tensor of `shape` and `dtype` occupies, or nullopt if a dimension is
/// negative or the product overflows 64 bits (a hostile header must not wrap
/// around).
std::optional<uint64_t> getTensorByteSize(moe_dtype dtype,
                                          llvm::ArrayRef<int64_t> shape);

} // namespace moe

#endif // MOEC_LIB_SUPPORT_DTYPE_H
