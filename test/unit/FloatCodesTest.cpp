//===- FloatCodesTest.cpp - generated code decoding against the reference -===//
//
// The decoders the kernels emit (arith and vector ops) are folded by MLIR's
// constant folder, which evaluates each op with the semantics LLVM lowers it
// to, for every code; the results must equal the reference decoders' bit for
// bit. Both the scalar and the vector form are checked.
//
//===----------------------------------------------------------------------===//

#include "lib/Codegen/Common/FloatCodes.h"
#include "lib/Support/FloatFormats.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <cmath>
#include <cstring>
#include <gtest/gtest.h>

using namespace mlir;
using namespace mlir::moe::codegen;

namespace {

using Decoder = Value (*)(IR &, Value);

/// The folded f32 values the decoder produces for codes 0 .. count - 1, as
/// one vector<count x i8> (vector form) or count scalar i8 constants.
std::vector<float> decodeByFolding(Decoder decode, int64_t count,
                                   bool asVector) {
  MLIRContext context;
  context.loadDialect<arith::ArithDialect, func::FuncDialect,
                      vector::VectorDialect>();
  ImplicitLocOpBuilder b(UnknownLoc::get(&context), &context);
  ModuleOp module = ModuleOp::create(b);
  b.setInsertionPointToEnd(module.getBody());
  Type i8 = b.getIntegerType(8), f32 = b.getF32Type();
  SmallVector<Type> results(asVector ? 1 : count,
                            asVector ? Type(VectorType::get({count}, f32))
                                     : f32);
  auto function =
      func::FuncOp::create(b, "decode", b.getFunctionType({}, results));
  b.setInsertionPointToEnd(function.addEntryBlock());
  IR ir{b};
  SmallVector<Value> values;
  if (asVector) {
    SmallVector<APInt> codes;
    for (int64_t code = 0; code < count; ++code)
      codes.push_back(APInt(8, uint64_t(code)));
    auto type = VectorType::get({count}, i8);
    Value constant = arith::ConstantOp::create(
        b, DenseElementsAttr::get(type, ArrayRef<APInt>(codes)));
    values.push_back(decode(ir, constant));
  } else {
    for (int64_t code = 0; code < count; ++code)
      values.push_back(decode(ir, arith::ConstantIntOp::create(b, i8, code)));
  }
  func::ReturnOp::create(b, values);
  EXPECT_TRUE(succeeded(
      applyPatternsGreedily(module.getOperation(), FrozenRewritePatternSet())));

  std::vector<float> decoded;
  Operation *returned = function.getBody().front().getTerminator();
  for (Value result : returned->getOperands()) {
    auto constant = result.getDefiningOp<arith::ConstantOp>();
    if (!constant) {
      ADD_FAILURE() << "the decoder did not fold to a constant";
      return {};
    }
    if (auto scalar = dyn_cast<FloatAttr>(constant.getValue())) {
      decoded.push_back(scalar.getValue().convertToFloat());
      continue;
    }
    for (const APFloat &element :
         cast<DenseElementsAttr>(constant.getValue()).getValues<APFloat>())
      decoded.push_back(element.convertToFloat());
  }
  module.erase();
  return decoded;
}

uint32_t bitsOf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}

void expectSameBits(float expected, float actual, unsigned code) {
  if (std::isnan(expected))
    EXPECT_TRUE(std::isnan(actual)) << "code 0x" << std::hex << code;
  else
    EXPECT_EQ(bitsOf(expected), bitsOf(actual))
        << "code 0x" << std::hex << code << ": " << expected << " vs "
        << actual;
}

TEST(FloatCodes, E4M3MatchesReferenceForEveryCode) {
  for (bool asVector : {false, true}) {
    std::vector<float> decoded = decodeByFolding(decodeE4m3, 256, asVector);
    ASSERT_EQ(decoded.size(), 256u);
    for (unsigned code = 0; code < 256; ++code)
      expectSameBits(::moe::f8e4m3fnToFloat(uint8_t(code)), decoded[code],
                     code);
  }
}

TEST(FloatCodes, E2M1MatchesReferenceForEveryCode) {
  for (bool asVector : {false, true}) {
    std::vector<float> decoded = decodeByFolding(decodeE2m1, 16, asVector);
    ASSERT_EQ(decoded.size(), 16u);
    for (unsigned code = 0; code < 16; ++code)
      expectSameBits(::moe::fp4e2m1ToFloat(uint8_t(code)), decoded[code], code);
  }
}

// Through f16 (F16C targets): the value divided by the format's factor, exact,
// for every code but e4m3's two NaN codes (weights never hold them).
TEST(FloatCodes, E4M3ViaHalfMatchesReferenceForEveryFiniteCode) {
  for (bool asVector : {false, true}) {
    std::vector<float> decoded =
        decodeByFolding(decodeE4m3ViaHalf, 256, asVector);
    ASSERT_EQ(decoded.size(), 256u);
    for (unsigned code = 0; code < 256; ++code) {
      if ((code & 0x7F) == 0x7F)
        continue;
      expectSameBits(::moe::f8e4m3fnToFloat(uint8_t(code)),
                     decoded[code] * kE4m3HalfFactor, code);
    }
  }
}

TEST(FloatCodes, E2M1ViaHalfMatchesReferenceForEveryCode) {
  for (bool asVector : {false, true}) {
    std::vector<float> decoded =
        decodeByFolding(decodeE2m1ViaHalf, 16, asVector);
    ASSERT_EQ(decoded.size(), 16u);
    for (unsigned code = 0; code < 16; ++code)
      expectSameBits(::moe::fp4e2m1ToFloat(uint8_t(code)),
                     decoded[code] * kE2m1HalfFactor, code);
  }
}

} // namespace
