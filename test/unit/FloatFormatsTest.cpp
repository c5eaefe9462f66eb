//===- FloatFormatsTest.cpp - narrow float decoders against APFloat -------===//
//
// Every encoding of each narrow format is decoded and compared with LLVM's
// APFloat, an independent implementation of the same IEEE-style semantics.
//
//===----------------------------------------------------------------------===//

#include "lib/Support/FloatFormats.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/APInt.h"

#include <cmath>
#include <gtest/gtest.h>

namespace {

float viaAPFloat(const llvm::fltSemantics &semantics, unsigned width,
                 uint64_t bits) {
  llvm::APFloat value(semantics, llvm::APInt(width, bits));
  bool lossy = false;
  value.convert(llvm::APFloat::IEEEsingle(), llvm::APFloat::rmNearestTiesToEven,
                &lossy);
  return value.convertToFloat();
}

void expectSame(float expected, float actual, uint64_t bits) {
  if (std::isnan(expected))
    EXPECT_TRUE(std::isnan(actual)) << "bits 0x" << std::hex << bits;
  else
    EXPECT_EQ(expected, actual) << "bits 0x" << std::hex << bits;
}

TEST(FloatFormats, F8E4M3FNMatchesAPFloat) {
  for (unsigned bits = 0; bits < 256; ++bits)
    expectSame(viaAPFloat(llvm::APFloat::Float8E4M3FN(), 8, bits),
               moe::f8e4m3fnToFloat(uint8_t(bits)), bits);
  EXPECT_EQ(moe::f8e4m3fnToFloat(0x7E), 448.0f); // the largest finite value
}

TEST(FloatFormats, F8E5M2MatchesAPFloat) {
  for (unsigned bits = 0; bits < 256; ++bits)
    expectSame(viaAPFloat(llvm::APFloat::Float8E5M2(), 8, bits),
               moe::f8e5m2ToFloat(uint8_t(bits)), bits);
}

TEST(FloatFormats, F8E8M0MatchesAPFloat) {
  // 0xFF is NaN in the OCP MX specification; APFloat's conversion to float
  // yields infinity there, so it is checked on its own.
  for (unsigned bits = 0; bits < 255; ++bits)
    expectSame(viaAPFloat(llvm::APFloat::Float8E8M0FNU(), 8, bits),
               moe::f8e8m0ToFloat(uint8_t(bits)), bits);
  EXPECT_TRUE(std::isnan(moe::f8e8m0ToFloat(0xFF)));
  EXPECT_EQ(moe::f8e8m0ToFloat(127), 1.0f);
}

TEST(FloatFormats, Fp4E2M1MatchesAPFloatAndMxfp4Table) {
  const float table[16] = {0,   .5,  1,  1.5,  2,  3,  4,  6,
                           -0., -.5, -1, -1.5, -2, -3, -4, -6};
  for (unsigned bits = 0; bits < 16; ++bits) {
    expectSame(viaAPFloat(llvm::APFloat::Float4E2M1FN(), 4, bits),
               moe::fp4e2m1ToFloat(uint8_t(bits)), bits);
    EXPECT_EQ(moe::fp4e2m1ToFloat(uint8_t(bits)), table[bits]);
    EXPECT_EQ(std::signbit(moe::fp4e2m1ToFloat(uint8_t(bits))), bits >= 8);
  }
}

TEST(FloatFormats, HalfAndBFloatMatchAPFloat) {
  for (unsigned bits = 0; bits < 65536; ++bits) {
    expectSame(viaAPFloat(llvm::APFloat::IEEEhalf(), 16, bits),
               moe::f16ToFloat(uint16_t(bits)), bits);
    expectSame(viaAPFloat(llvm::APFloat::BFloat(), 16, bits),
               moe::bf16ToFloat(uint16_t(bits)), bits);
  }
}

TEST(FloatFormats, Bf16RoundsToNearestEven) {
  EXPECT_EQ(moe::floatToBf16(1.0f), 0x3F80);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa
  // (1.0).
  EXPECT_EQ(moe::floatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(moe::floatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(moe::bf16ToFloat(moe::floatToBf16(NAN))));
  for (unsigned bits = 0; bits < 65536; ++bits) {
    float value = moe::bf16ToFloat(uint16_t(bits));
    if (!std::isnan(value))
      EXPECT_EQ(moe::floatToBf16(value), bits)
          << "bf16 values round-trip exactly";
  }
}

TEST(FloatFormats, LoadElementReadsUnalignedLittleEndian) {
  const uint8_t bytes[] = {0xAA, 0x00, 0x00, 0x80, 0x3F,
                           0xFE, 0xFF, 0xFF, 0xFF};
  EXPECT_EQ(moe::loadElement(MOE_DTYPE_F32, bytes + 1, 0), 1.0);
  EXPECT_EQ(moe::loadElement(MOE_DTYPE_I32, bytes + 5, 0), -2.0);
  EXPECT_EQ(moe::loadElement(MOE_DTYPE_U8, bytes, 0), 170.0);
  EXPECT_EQ(moe::loadElement(MOE_DTYPE_I8, bytes, 0), -86.0);
  EXPECT_EQ(moe::loadElement(MOE_DTYPE_BF16, bytes + 3, 0), 1.0); // 0x3F80
}

} // namespace
