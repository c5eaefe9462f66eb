//===- DTypeTest.cpp - safetensors dtype table ----------------------------===//

#include "lib/Support/DType.h"

#include <gtest/gtest.h>

namespace {

TEST(DType, NamesRoundTrip) {
  for (int code = MOE_DTYPE_BOOL; code <= MOE_DTYPE_F64; ++code) {
    auto dtype = static_cast<moe_dtype>(code);
    llvm::StringRef name = moe::getSafetensorsName(dtype);
    ASSERT_FALSE(name.empty()) << "dtype code " << code;
    EXPECT_EQ(moe::parseSafetensorsDType(name), dtype) << name.str();
  }
}

TEST(DType, UnknownNamesAreRejected) {
  EXPECT_EQ(moe::parseSafetensorsDType("bf16"),
            std::nullopt); // names are case-sensitive
  EXPECT_EQ(moe::parseSafetensorsDType("F4"), std::nullopt);
  EXPECT_EQ(moe::parseSafetensorsDType(""), std::nullopt);
  EXPECT_TRUE(moe::getSafetensorsName(MOE_DTYPE_INVALID).empty());
  EXPECT_EQ(moe::getByteSize(MOE_DTYPE_INVALID), 0u);
}

TEST(DType, ByteSizes) {
  EXPECT_EQ(moe::getByteSize(MOE_DTYPE_BF16), 2u);
  EXPECT_EQ(moe::getByteSize(MOE_DTYPE_F8_E4M3), 1u);
  EXPECT_EQ(moe::getByteSize(MOE_DTYPE_I64), 8u);
  EXPECT_EQ(moe::getTensorByteSize(MOE_DTYPE_BF16, {8, 14336, 4096}),
            uint64_t(8) * 14336 * 4096 * 2);
  EXPECT_EQ(moe::getTensorByteSize(MOE_DTYPE_F32, {}),
            4u); // a 0-rank tensor is one element
  EXPECT_EQ(moe::getTensorByteSize(MOE_DTYPE_F32, {0, 7}), 0u);
}

TEST(DType, HostileShapesDoNotWrap) {
  EXPECT_EQ(moe::getTensorByteSize(MOE_DTYPE_F32, {-1, 4}), std::nullopt);
  EXPECT_EQ(moe::getTensorByteSize(MOE_DTYPE_F64,
                                   {int64_t(1) << 40, int64_t(1) << 30}),
            std::nullopt);
  EXPECT_EQ(moe::getTensorByteSize(MOE_DTYPE_INVALID, {4}), std::nullopt);
}

} // namespace
