//===- FloatFormats.cpp - decoding narrow float formats -------------------===//

#include "lib/Support/FloatFormats.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace moe {

namespace {
template <typename T> T readLE(const uint8_t *data) {
  // Storage is little-endian and may be unaligned; x86-64 and AArch64 hosts are
  // little-endian, so a memcpy is the whole conversion.
  T value;
  std::memcpy(&value, data, sizeof(T));
  return value;
}

/// A float with the given sign, unbiased exponent and fraction of
/// `mantissaBits` bits, for the small formats whose subnormals have exponent 1
/// - bias.
float decodeSmallFloat(unsigned sign, unsigned exponent, unsigned mantissa,
                       unsigned mantissaBits, int bias) {
  float magnitude;
  float scale = 1.0f / float(1u << mantissaBits);
  if (exponent == 0)
    magnitude = std::ldexp(float(mantissa) * scale, 1 - bias);
  else
    magnitude =
        std::ldexp(1.0f + float(mantissa) * scale, int(exponent) - bias);
  return sign ? -magnitude : magnitude;
}
} // namespace

float bf16ToFloat(uint16_t bits) {
  uint32_t word = uint32_t(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof(value));
  return value;
}

uint16_t floatToBf16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof(word));
  if (std::isnan(value))
    return uint16_t((word >> 16) | 0x40); // keep it a (quiet) NaN
  uint32_t roundingBias = 0x7FFF + ((word >> 16) & 1);
  return uint16_t((word + roundingBias) >> 16);
}

float f16ToFloat(uint16_t bits) {
  unsigned sign = bits >> 15, exponent = (bits >> 10) & 0x1F,
           mantissa = bits & 0x3FF;
  if (exponent == 0x1F) {
    if (mantissa)
      return std::numeric_limits<float>::quiet_NaN();
    return sign ? -std::numeric_limits<float>::infinity()
                : std::numeric_limits<float>::infinity();
  }
  return decodeSmallFloat(sign, exponent, mantissa, 10, 15);
}

float f8e4m3fnToFloat(uint8_t bits) {
  unsigned sign = bits >> 7, exponent = (bits >> 3) & 0xF,
           mantissa = bits & 0x7;
  if (exponent == 0xF && mantissa == 0x7)
    return std::numeric_limits<float>::quiet_NaN();
  return decodeSmallFloat(sign, exponent, mantissa, 3, 7);
}

float f8e5m2ToFloat(uint8_t bits) {
  unsigned sign = bits >> 7, exponent = (bits >> 2) & 0x1F,
           mantissa = bits & 0x3;
  if (exponent == 0x1F) {
    if (mantissa)
      return std::numeric_limits<float>::quiet_NaN();
    return sign ? -std::numeric_limits<float>::infinity()
                : std::numeric_limits<float>::infinity();
  }
  return decodeSmallFloat(sign, exponent, mantissa, 2, 15);
}

float f8e8m0ToFloat(uint8_t bits) {
  if (bits == 0xFF)
    return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, int(bits) - 127);
}

float fp4e2m1ToFloat(uint8_t nibble) {
  unsigned sign = (nibble >> 3) & 1, exponent = (nibble >> 1) & 0x3,
           mantissa = nibble & 1;
  return decodeSmallFloat(sign, exponent, mantissa, 1, 1);
}

double loadElement(moe_dtype dtype, const uint8_t *data, uint64_t index) {
  switch (dtype) {
  case MOE_DTYPE_BOOL:
    return data[index] != 0;
  case MOE_DTYPE_U8:
    return data[index];
  case MOE_DTYPE_I8:
    return int8_t(data[index]);
  case MOE_DTYPE_U16:
    return readLE<uint16_t>(data + 2 * index);
  case MOE_DTYPE_I16:
    return readLE<int16_t>(data + 2 * index);
  case MOE_DTYPE_U32:
    return readLE<uint32_t>(data + 4 * index);
  case MOE_DTYPE_I32:
    return readLE<int32_t>(data + 4 * index);
  case MOE_DTYPE_U64:
    return double(readLE<uint64_t>(data + 8 * index));
  case MOE_DTYPE_I64:
    return double(readLE<int64_t>(data + 8 * index));
  case MOE_DTYPE_F8_E4M3:
    return f8e4m3fnToFloat(data[index]);
  case MOE_DTYPE_F8_E5M2:
    return f8e5m2ToFloat(data[index]);
  case MOE_DTYPE_F8_E8M0:
    return f8e8m0ToFloat(data[index]);
  case MOE_DTYPE_F16:
    return f16ToFloat(readLE<uint16_t>(data + 2 * index));
  case MOE_DTYPE_BF16:
    return bf16ToFloat(readLE<uint16_t>(data + 2 * index));
  case MOE_DTYPE_F32:
    return readLE<float>(data + 4 * index);
  case MOE_DTYPE_F64:
    return readLE<double>(data + 8 * index);
  case MOE_DTYPE_INVALID:
    break;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

} // namespace moe
