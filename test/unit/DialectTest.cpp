//===- DialectTest.cpp - C++ helpers of the moe dialect -------------------===//
//
// What later stages call directly and no .mlir test reaches: the dtype <->
// element type mapping and the stored-tensor queries of moe.weight.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoEOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace mlir::moe;

namespace {

class MoEDialectTest : public ::testing::Test {
protected:
  MoEDialectTest() { context.loadDialect<MoEDialect>(); }
  MLIRContext context;
  OpBuilder builder{&context};
};

TEST_F(MoEDialectTest, ElementTypesRoundTrip) {
  for (int code = MOE_DTYPE_BOOL; code <= MOE_DTYPE_F64; ++code) {
    auto dtype = static_cast<moe_dtype>(code);
    Type type = getElementType(&context, dtype);
    ASSERT_TRUE(type) << "dtype code " << code;
    EXPECT_EQ(getStorageDType(type), dtype) << "dtype code " << code;
  }
  EXPECT_FALSE(getElementType(&context, MOE_DTYPE_INVALID));
}

TEST_F(MoEDialectTest, SignlessIntegersStoreAsSigned) {
  EXPECT_EQ(getStorageDType(builder.getI8Type()), MOE_DTYPE_I8);
  EXPECT_EQ(getStorageDType(builder.getI32Type()), MOE_DTYPE_I32);
  EXPECT_EQ(getStorageDType(builder.getIntegerType(4)), std::nullopt);
  EXPECT_EQ(getStorageDType(builder.getType<Float8E4M3FNUZType>()),
            std::nullopt);
  EXPECT_EQ(getStorageDType(builder.getIndexType()), std::nullopt);
}

TEST_F(MoEDialectTest, StackedPermutedWeightQueries) {
  // Llama-4 stores gate_up_proj as [E, H, 2I]; the IR wants [E, 2I, H].
  auto type = RankedTensorType::get({4, 96, 64}, builder.getBF16Type());
  auto weight =
      WeightOp::create(builder, builder.getUnknownLoc(), type,
                       builder.getStringAttr("layers.0.experts.gate_up_proj"),
                       /*file=*/StringAttr(), /*experts=*/IntegerAttr(),
                       builder.getDenseI64ArrayAttr({0, 2, 1}));
  EXPECT_TRUE(succeeded(mlir::verify(weight)));
  EXPECT_EQ(weight.getStoredShape(), (SmallVector<int64_t>{4, 64, 96}));
  EXPECT_EQ(weight.getTensorName(3), "layers.0.experts.gate_up_proj");
  weight->erase();

  // Mixtral stores one tensor per expert.
  auto stacked =
      WeightOp::create(builder, builder.getUnknownLoc(), type,
                       builder.getStringAttr("layers.0.experts.{e}.w1.weight"),
                       /*file=*/StringAttr(), builder.getI64IntegerAttr(4),
                       /*permutation=*/DenseI64ArrayAttr());
  EXPECT_TRUE(succeeded(mlir::verify(stacked)));
  EXPECT_EQ(stacked.getStoredShape(), (SmallVector<int64_t>{96, 64}));
  EXPECT_EQ(stacked.getTensorName(3), "layers.0.experts.3.w1.weight");
  EXPECT_EQ(stacked.getTensorName(12), "layers.0.experts.12.w1.weight");
  stacked->erase();
}

TEST_F(MoEDialectTest, RoutingChecksDependOnExpertCount) {
  auto routing = RoutingAttr::get(
      &context, ScoringFunc::Sigmoid, /*k=*/8, ExpertSelection::GroupLimited,
      /*normalize=*/true, FloatAttr(), FloatAttr(), /*n_group=*/8,
      /*topk_group=*/4, GroupScore::Top2Sum, FloatAttr(), FloatAttr(), Type());
  auto emitError = [&] { return mlir::emitError(UnknownLoc::get(&context)); };
  // Silence the diagnostics that the failing cases print.
  ScopedDiagnosticHandler silence(&context,
                                  [](Diagnostic &) { return success(); });
  EXPECT_TRUE(succeeded(routing.verifyForExperts(emitError, 256)));
  EXPECT_TRUE(
      succeeded(routing.verifyForExperts(emitError, ShapedType::kDynamic)));
  EXPECT_TRUE(failed(routing.verifyForExperts(emitError, 7)));  // k > E
  EXPECT_TRUE(failed(routing.verifyForExperts(emitError, 12))); // 12 % 8 != 0
  EXPECT_TRUE(failed(
      routing.verifyForExperts(emitError, 8))); // groups of one, top2_sum
  // Four kept groups of two hold exactly k = 8 experts.
  EXPECT_TRUE(succeeded(routing.verifyForExperts(emitError, 16)));

  auto byMax = RoutingAttr::get(
      &context, ScoringFunc::Softmax, /*k=*/8, ExpertSelection::GroupLimited,
      /*normalize=*/false, FloatAttr(), FloatAttr(), /*n_group=*/8,
      /*topk_group=*/4, GroupScore::Max, FloatAttr(), FloatAttr(), Type());
  // Groups of one are fine for max scoring, but four kept experts cannot supply
  // k = 8.
  EXPECT_TRUE(failed(byMax.verifyForExperts(emitError, 8)));
  EXPECT_TRUE(succeeded(byMax.verifyForExperts(emitError, 64)));
}

} // namespace
