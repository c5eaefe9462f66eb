//===- FloatCodes.h - narrow float codes decoded in generated code -*- C++ -*-//
//
// FP8 (e4m3) and FP4 (e2m1) weights stay in memory as their codes; kernels
// decode them in registers with integer and bit operations, so a vector of
// codes decodes in a few instructions on any target (no table lookups, which
// would need gathers). Every value of both formats is an f32, so decoding is
// exact: the results equal ::moe::f8e4m3fnToFloat and ::moe::fp4e2m1ToFloat
// bit for bit (NaN for NaN).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_CODEGEN_COMMON_FLOATCODES_H
#define MOEC_LIB_CODEGEN_COMMON_FLOATCODES_H

#include "lib/Codegen/Common/LoopBuilder.h"

namespace mlir::moe::codegen {

/// The f32 values of e4m3 (f8E4M3FN) codes: `codes` is an i8 or a vector of
/// i8 (raw bytes); the result is f32 of the same shape.
Value decodeE4m3(IR &ir, Value codes);

/// The f32 values of e2m1 codes held in the low 4 bits of i8 values (the
/// high bits zero), scalar or vector.
Value decodeE2m1(IR &ir, Value codes);

/// With half-precision conversions in hardware (x86 F16C: vcvtph2ps), codes
/// decode in fewer instructions: the code's fields moved into an f16's are
/// that f16's value times a power of two, converted to f32 exactly (f16
/// subnormals included, whatever the denormal flags). These return the value
/// divided by kE4m3HalfFactor / kE2m1HalfFactor: callers fold the factor into
/// their scales. e4m3's NaN codes (0x7F, 0xFF) come out as finite numbers:
/// weights never hold them (the quantizer saturates, checkpoints are finite).
inline constexpr float kE4m3HalfFactor = 256.0f;   // 2^(15 - 7)
inline constexpr float kE2m1HalfFactor = 16384.0f; // 2^(15 - 1)
Value decodeE4m3ViaHalf(IR &ir, Value codes);
Value decodeE2m1ViaHalf(IR &ir, Value codes);

} // namespace mlir::moe::codegen

#endif // MOEC_LIB_CODEGEN_COMMON_FLOATCODES_H
