//===- DType.cpp - safetensors dtype names and sizes ----------------------===//
//
// The table itself lives in DTypeTable.h; these are its LLVM-typed wrappers.
//
//===----------------------------------------------------------------------===//

#include "lib/Support/DType.h"

namespace moe {

llvm::StringRef getSafetensorsName(moe_dtype dtype) {
  std::string_view name = getSafetensorsDTypeName(dtype);
  return llvm::StringRef(name.data(), name.size());
}

std::optional<uint64_t> getTensorByteSize(moe_dtype dtype,
                                          llvm::ArrayRef<int64_t> shape) {
  return getTensorByteSize(dtype, shape.data(), shape.size());
}

} // namespace moe
