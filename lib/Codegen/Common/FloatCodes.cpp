//===- FloatCodes.cpp - narrow float codes decoded in generated code ------===//

#include "lib/Codegen/Common/FloatCodes.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::codegen;

namespace {

/// Integer and float operations on codes widened to i32 lanes (scalar or
/// vector, like the codes).
struct Lanes {
  IR &ir;
  Type i32, f32;

  Lanes(IR &ir, Value codes) : ir(ir) {
    i32 = ir.b.getI32Type();
    f32 = ir.f32();
    if (auto vector = dyn_cast<VectorType>(codes.getType())) {
      i32 = VectorType::get(vector.getShape(), i32);
      f32 = VectorType::get(vector.getShape(), f32);
    }
  }
  Value splatLike(Type type, Value scalar) {
    if (auto vector = dyn_cast<VectorType>(type))
      return vector::BroadcastOp::create(ir.b, vector, scalar);
    return scalar;
  }
  Value int32(int64_t v) { return splatLike(i32, ir.i32(v)); }
  Value float32(float v) { return splatLike(f32, ir.f(v)); }
  Value widen(Value codes) { return arith::ExtUIOp::create(ir.b, i32, codes); }
  Value bitsAnd(Value x, int64_t mask) {
    return arith::AndIOp::create(ir.b, x, int32(mask));
  }
  Value shiftLeft(Value x, int64_t bits) {
    return arith::ShLIOp::create(ir.b, x, int32(bits));
  }
  Value toFloat(Value bits) {
    return arith::BitcastOp::create(ir.b, f32, bits);
  }
  Value toBits(Value x) { return arith::BitcastOp::create(ir.b, i32, x); }
  Value below(Value x, int64_t bound) {
    return ir.cmpi(arith::CmpIPredicate::ult, x, int32(bound));
  }
  /// `magnitude` with the code's sign bit (at `signBit`) as f32's sign.
  Value withSign(Value magnitude, Value code, int64_t signBit) {
    Value sign = shiftLeft(bitsAnd(code, int64_t(1) << signBit), 31 - signBit);
    return toFloat(arith::OrIOp::create(ir.b, toBits(magnitude), sign));
  }
  /// A normal value: the code's exponent and mantissa fields (`magnitude`,
  /// `mantissaBits` wide at the bottom) moved to f32's positions, the
  /// exponent rebiased from `bias` to 127.
  Value normal(Value magnitude, int64_t mantissaBits, int64_t bias) {
    Value bits =
        arith::AddIOp::create(ir.b, shiftLeft(magnitude, 23 - mantissaBits),
                              int32((127 - bias) << 23));
    return toFloat(bits);
  }
  /// A subnormal value (exponent field zero): mantissa * 2^(1 - bias -
  /// mantissaBits).
  Value subnormal(Value mantissa, int64_t mantissaBits, int64_t bias) {
    Value asFloat = arith::UIToFPOp::create(ir.b, f32, mantissa);
    return ir.mul(asFloat,
                  float32(std::ldexp(1.0f, int(1 - bias - mantissaBits))));
  }
};

} // namespace

Value codegen::decodeE4m3(IR &ir, Value codes) {
  // sign (bit 7), exponent (bits 6-3, bias 7), mantissa (bits 2-0).
  Lanes lanes(ir, codes);
  Value code = lanes.widen(codes);
  Value magnitude = lanes.bitsAnd(code, 0x7F);
  Value value = ir.select(lanes.below(magnitude, 1 << 3),
                          lanes.subnormal(magnitude, 3, 7),
                          lanes.normal(magnitude, 3, 7));
  value = lanes.withSign(value, code, 7);
  // S.1111.111 is NaN; the format has no infinities.
  Value isNaN = ir.cmpi(arith::CmpIPredicate::eq, magnitude, lanes.int32(0x7F));
  return ir.select(
      isNaN, lanes.float32(std::numeric_limits<float>::quiet_NaN()), value);
}

Value codegen::decodeE2m1(IR &ir, Value codes) {
  // sign (bit 3), exponent (bits 2-1, bias 1), mantissa (bit 0): magnitudes
  // 0, 0.5, 1, 1.5, 2, 3, 4, 6.
  Lanes lanes(ir, codes);
  Value code = lanes.widen(codes);
  Value magnitude = lanes.bitsAnd(code, 0x7);
  Value value = ir.select(lanes.below(magnitude, 1 << 1),
                          lanes.subnormal(magnitude, 1, 1),
                          lanes.normal(magnitude, 1, 1));
  return lanes.withSign(value, code, 3);
}

/// An f16 holding the code's sign at bit 15 and its exponent and mantissa
/// fields (`fieldBits` wide below the sign) shifted up by `shift`, as f32.
static Value viaHalf(IR &ir, Value codes, int64_t signBit, int64_t fieldBits,
                     int64_t shift) {
  Type i16 = ir.b.getI16Type(), f16 = ir.b.getF16Type(), f32 = ir.f32();
  if (auto vector = dyn_cast<VectorType>(codes.getType())) {
    i16 = VectorType::get(vector.getShape(), i16);
    f16 = VectorType::get(vector.getShape(), f16);
    f32 = VectorType::get(vector.getShape(), f32);
  }
  auto constant = [&](int64_t v) -> Value {
    Value scalar = arith::ConstantIntOp::create(ir.b, v, 16);
    if (auto vector = dyn_cast<VectorType>(i16))
      return vector::BroadcastOp::create(ir.b, vector, scalar);
    return scalar;
  };
  Value code = arith::ExtUIOp::create(ir.b, i16, codes);
  Value sign = arith::ShLIOp::create(
      ir.b, arith::AndIOp::create(ir.b, code, constant(1 << signBit)),
      constant(15 - signBit));
  Value fields = arith::ShLIOp::create(
      ir.b, arith::AndIOp::create(ir.b, code, constant((1 << fieldBits) - 1)),
      constant(shift));
  Value bits = arith::OrIOp::create(ir.b, sign, fields);
  return arith::ExtFOp::create(
      ir.b, f32, arith::BitcastOp::create(ir.b, f16, bits).getResult());
}

Value codegen::decodeE4m3ViaHalf(IR &ir, Value codes) {
  // 4-bit exponent and 3-bit mantissa at f16's bits 13-10 and 9-7.
  return viaHalf(ir, codes, 7, 7, 7);
}

Value codegen::decodeE2m1ViaHalf(IR &ir, Value codes) {
  // 2-bit exponent and 1-bit mantissa at f16's bits 11-10 and 9.
  return viaHalf(ir, codes, 3, 3, 9);
}
