//===- FloatFormats.h - decoding narrow float formats -----------*- C++ -*-===//
//
// Exact conversions of the stored element formats moec reads into float/double:
// each value of a narrow format is representable in a float, so no rounding
// happens here.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_SUPPORT_FLOATFORMATS_H
#define MOEC_LIB_SUPPORT_FLOATFORMATS_H

#include "moe/dtype.h"

#include <cstdint>

namespace moe {

float bf16ToFloat(uint16_t bits);
/// Rounds to nearest even (NaN stays NaN).
uint16_t floatToBf16(float value);
float f16ToFloat(uint16_t bits);
/// OCP FP8 E4M3 as torch.float8_e4m3fn: bias 7, no infinities, S.1111.111 is
/// NaN.
float f8e4m3fnToFloat(uint8_t bits);
float f8e5m2ToFloat(uint8_t bits);
/// E8M0 scale: 2^(bits - 127); 0xFF is NaN.
float f8e8m0ToFloat(uint8_t bits);
/// FP4 E2M1 (MXFP4 element): the low 4 bits of `nibble`.
float fp4e2m1ToFloat(uint8_t nibble);

/// The element at `index` of little-endian storage `data` of `dtype`, as a
/// double (integers exactly up to 2^53). `dtype` must be valid.
double loadElement(moe_dtype dtype, const uint8_t *data, uint64_t index);

} // namespace moe

#endif // MOEC_LIB_SUPPORT_FLOATFORMATS_H
