//===- QuantizationTest.cpp - GPTQ, FP8/MXFP4 quantizers, router clipping -===//
//
// Properties with bounds derived from the methods and formats, on synthetic
// data whose seeds are fixed:
// - GPTQ minimises the Hessian-weighted error tr((W - Q) H (W - Q)^T), so it
//   is at most round-to-nearest's on the same grid;
// - with each input scaled by sqrt(routing weight) (MoEQuant) that Hessian is
//   the router-weighted output error, so the weighted variant beats plain
//   GPTQ on it when heavily and lightly weighted tokens differ;
// - e4m3 keeps 3 mantissa bits: |error| <= |w| / 16 above the normal range and
//   half the subnormal step (2^-10 * scale) below it; e2m1 keeps 1:
//   |error| <= max(|w| / 4, amax / 16) with the OCP shared exponent;
// - EAQuant's clipping search on a router with planted outlier columns keeps
//   at least the top-k agreement of plain per-row quantization.
//
//===----------------------------------------------------------------------===//

#include "lib/Compress/Gptq.h"
#include "lib/Compress/RouterClipping.h"
#include "lib/Reference/Kernels.h"

#include "dialects/moe/MoEOps.h"

#include "mlir/IR/Builders.h"

#include <cmath>
#include <gtest/gtest.h>
#include <random>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::compress;
using reference::RefTensor;

namespace {

double asFloat(double v) { return double(float(v)); }

QuantMatrix gaussian(int64_t rows, int64_t cols, std::mt19937 &rng,
                     double sigma = 1.0) {
  std::normal_distribution<double> normal(0.0, sigma);
  QuantMatrix m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i)
    m.data()[i] = normal(rng);
  return m;
}

/// Rows z A with A mixing the columns: correlated inputs, as activations are.
QuantMatrix correlatedRows(int64_t n, int64_t cols, std::mt19937 &rng) {
  QuantMatrix mixing = gaussian(cols, cols, rng, 1.0 / std::sqrt(cols));
  mixing.diagonal().array() += 1.0;
  return gaussian(n, cols, rng) * mixing;
}

TEST(Gptq, HessianWeightedErrorAtMostRoundToNearest) {
  std::mt19937 rng(7);
  for (bool symmetric : {true, false})
    for (int64_t bits : {4, 8}) {
      QuantMatrix weight = gaussian(48, 128, rng, 0.02);
      QuantMatrix rows = correlatedRows(512, 128, rng);
      QuantMatrix hessian = gptqHessian(rows);
      IntGrid grid{bits, symmetric};
      double rtn = hessianWeightedError(
          weight, quantizeRtn(weight, grid, 32, asFloat).dequantized(32),
          hessian);
      double gptq = hessianWeightedError(
          weight,
          quantizeGptq(weight, hessian, grid, 32, asFloat).dequantized(32),
          hessian);
      EXPECT_LT(gptq, rtn) << "bits " << bits << " symmetric " << symmetric;
      // Measured: GPTQ removes a third or more of RTN's error here.
      EXPECT_LT(gptq, 0.8 * rtn) << "bits " << bits;
    }
}

TEST(Gptq, LevelsStayOnTheGrid) {
  std::mt19937 rng(3);
  QuantMatrix weight = gaussian(16, 64, rng);
  QuantMatrix hessian = gptqHessian(correlatedRows(100, 64, rng));
  IntQuantized q = quantizeGptq(weight, hessian, IntGrid{4, true}, 16, asFloat);
  EXPECT_LE(q.levels.maxCoeff(), 7.0);
  EXPECT_GE(q.levels.minCoeff(), -7.0);
  IntQuantized a =
      quantizeGptq(weight, hessian, IntGrid{4, false}, 16, asFloat);
  EXPECT_LE(a.levels.maxCoeff(), 15.0);
  EXPECT_GE(a.levels.minCoeff(), 0.0);
}

TEST(Gptq, ZeroHessianIsRoundToNearest) {
  std::mt19937 rng(5);
  QuantMatrix weight = gaussian(8, 64, rng);
  QuantMatrix zero = QuantMatrix::Zero(64, 64);
  IntGrid grid{4, true};
  EXPECT_EQ(quantizeGptq(weight, zero, grid, 32, asFloat).levels,
            quantizeRtn(weight, grid, 32, asFloat).levels);
}

/// A synthetic expert: heavily routed tokens (g ~ 0.9) and lightly routed
/// ones (g ~ 0.05) come from different input distributions, so which tokens
/// the Hessian favours changes the solution.
TEST(Gptq, RouterWeightedBeatsUnweightedOnRouterWeightedError) {
  std::mt19937 rng(11);
  int64_t cols = 64, heavy = 200, light = 400;
  int wins = 0, trials = 5;
  for (int trial = 0; trial < trials; ++trial) {
    QuantMatrix weight = gaussian(32, cols, rng, 0.02);
    QuantMatrix heavyRows = correlatedRows(heavy, cols, rng);
    QuantMatrix lightRows = correlatedRows(light, cols, rng);
    // Light tokens load other channels strongly.
    lightRows.leftCols(16) *= 6.0;
    QuantMatrix inputs(heavy + light, cols);
    inputs << heavyRows, lightRows;
    std::uniform_real_distribution<double> jitter(-0.05, 0.05);
    std::vector<double> gates(heavy + light);
    for (int64_t t = 0; t < heavy + light; ++t)
      gates[t] = (t < heavy ? 0.9 : 0.05) + jitter(rng) * (t < heavy ? 1 : 0.5);
    QuantMatrix scaled = inputs;
    for (int64_t t = 0; t < inputs.rows(); ++t)
      scaled.row(t) *= std::sqrt(gates[t]);
    IntGrid grid{4, true};
    QuantMatrix weighted =
        quantizeGptq(weight, gptqHessian(scaled), grid, 16, asFloat)
            .dequantized(16);
    QuantMatrix plain =
        quantizeGptq(weight, gptqHessian(inputs), grid, 16, asFloat)
            .dequantized(16);
    // sum_t g_t ||(W - Q) x_t||^2, directly.
    auto routerWeightedError = [&](const QuantMatrix &q) {
      QuantMatrix outputs = inputs * (weight - q).transpose();
      double total = 0.0;
      for (int64_t t = 0; t < inputs.rows(); ++t)
        total += gates[t] * outputs.row(t).squaredNorm();
      return total;
    };
    double weightedError = routerWeightedError(weighted);
    double plainError = routerWeightedError(plain);
    EXPECT_LT(weightedError, plainError) << "trial " << trial;
    wins += weightedError < plainError;
  }
  EXPECT_EQ(wins, trials);
}

class FormatQuantizers : public ::testing::Test {
protected:
  FormatQuantizers() { context.loadDialect<MoEDialect>(); }
  InFlightDiagnostic error() { return emitError(UnknownLoc::get(&context)); }

  /// A [rows, cols] weight whose blocks span magnitudes from 1e-4 to 10, so
  /// subnormal and normal ranges of each format are both exercised.
  RefTensor spreadWeight(int64_t rows, int64_t cols) {
    std::mt19937 rng(13);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> exponent(-4.0, 1.0);
    RefTensor w({rows, cols});
    for (double &v : w.data)
      v = normal(rng) * std::pow(10.0, exponent(rng));
    return w;
  }

  MLIRContext context;
};

TEST_F(FormatQuantizers, Fp8BlockRoundTripWithinE4m3Step) {
  Builder b(&context);
  int64_t rows = 200, cols = 300; // partial edge blocks too
  RefTensor w = spreadWeight(rows, cols);
  auto encoding = Fp8BlockEncodingAttr::get(&context, 128, 128);
  SmallVector<Type> storage{
      RankedTensorType::get({rows, cols}, b.getType<Float8E4M3FNType>()),
      RankedTensorType::get({2, 3}, b.getF32Type())};
  auto stored =
      reference::quantize([&] { return error(); }, encoding, w, storage);
  ASSERT_TRUE(succeeded(stored));
  const RefTensor &scales = (*stored)[1];
  auto result = RankedTensorType::get({rows, cols}, b.getF32Type());
  auto back = reference::dequantize([&] { return error(); }, encoding,
                                    {&(*stored)[0], &scales}, result);
  ASSERT_TRUE(succeeded(back));
  double worstRelative = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      double v = w.data[r * cols + c], q = back->data[r * cols + c];
      double scale = scales.data[(r / 128) * 3 + c / 128];
      // Half an e4m3 step, plus the f32 result's rounding.
      double bound = std::max(std::abs(v) / 16.0, scale * std::ldexp(1, -10)) *
                         (1 + 1e-6) +
                     std::abs(v) * 1e-7;
      ASSERT_LE(std::abs(v - q), bound) << "at " << r << ", " << c;
      if (std::abs(v) / scale >= std::ldexp(1, -6))
        worstRelative = std::max(worstRelative, std::abs(v - q) / std::abs(v));
    }
  EXPECT_LE(worstRelative, 1.0 / 16.0 + 1e-6);
  // The block maximum is exact: amax / scale = 448 is representable.
  EXPECT_GT(worstRelative, 0.0);
}

TEST_F(FormatQuantizers, Mxfp4RoundTripWithinE2m1StepAndIdempotent) {
  Builder b(&context);
  int64_t rows = 16, cols = 128;
  RefTensor w = spreadWeight(rows, cols);
  auto encoding = Mxfp4EncodingAttr::get(&context);
  Type byte = b.getIntegerType(8, /*isSigned=*/false);
  SmallVector<Type> storage{RankedTensorType::get({rows, cols / 32, 16}, byte),
                            RankedTensorType::get({rows, cols / 32}, byte)};
  auto result = RankedTensorType::get({rows, cols}, b.getF32Type());
  auto roundTrip = [&](const RefTensor &input) {
    auto stored =
        reference::quantize([&] { return error(); }, encoding, input, storage);
    EXPECT_TRUE(succeeded(stored));
    return *reference::dequantize([&] { return error(); }, encoding,
                                  {&(*stored)[0], &(*stored)[1]}, result);
  };
  RefTensor back = roundTrip(w);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t block = 0; block < cols / 32; ++block) {
      double amax = 0.0;
      for (int64_t i = 0; i < 32; ++i)
        amax = std::max(amax, std::abs(w.data[r * cols + block * 32 + i]));
      for (int64_t i = 0; i < 32; ++i) {
        int64_t at = r * cols + block * 32 + i;
        double v = w.data[at];
        ASSERT_LE(std::abs(v - back.data[at]),
                  std::max(std::abs(v) / 4.0, amax / 16.0) * (1 + 1e-6))
            << "at " << r << ", " << block * 32 + i;
      }
    }
  // Values already on an MXFP4 grid come back exactly.
  RefTensor again = roundTrip(back);
  EXPECT_EQ(again.data, back.data);
}

TEST_F(FormatQuantizers, Mxfp4EncodesAsGptOssStoresIt) {
  Builder b(&context);
  // Block max 5.0 -> exponent floor(log2 5) - 2 = 0 (byte 127); 5 is a tie
  // between 4 and 6 and goes to the even encoding (4 = 0b110); 0.75 ties to 1
  // (0b010); -1.5 is 0b1011.
  RefTensor w({1, 32});
  w.data[0] = 5.0;
  w.data[1] = 0.75;
  w.data[2] = -1.5;
  auto encoding = Mxfp4EncodingAttr::get(&context);
  Type byte = b.getIntegerType(8, /*isSigned=*/false);
  auto stored = reference::quantize([&] { return error(); }, encoding, w,
                                    {RankedTensorType::get({1, 1, 16}, byte),
                                     RankedTensorType::get({1, 1}, byte)});
  ASSERT_TRUE(succeeded(stored));
  EXPECT_EQ((*stored)[1].data[0], 127.0);
  EXPECT_EQ((*stored)[0].data[0], double(0x6 | (0x2 << 4)));
  EXPECT_EQ((*stored)[0].data[1], double(0xB));
}

/// A router with three huge input columns: per-row scales sized by them leave
/// the other columns a coarse grid. The inputs barely use those channels, so
/// clipping them costs little.
TEST(RouterClipping, PlantedOutliersKeepTopkAgreement) {
  std::mt19937 rng(17);
  int64_t experts = 16, hidden = 64, tokens = 512, k = 2;
  QuantMatrix router = gaussian(experts, hidden, rng, 0.1);
  for (int64_t c : {3, 17, 40})
    for (int64_t e = 0; e < experts; ++e)
      router(e, c) = (e % 2 ? 1 : -1) * (3.0 + 0.1 * e);
  QuantMatrix states = gaussian(tokens, hidden, rng);
  for (int64_t c : {3, 17, 40})
    states.col(c) *= 0.01;
  for (int64_t bits : {8, 4}) {
    RouterClipChoice none = chooseRouterClip(
        router, {}, states, k, bits, /*search=*/false, asFloat, asFloat);
    RouterClipChoice searched = chooseRouterClip(
        router, {}, states, k, bits, /*search=*/true, asFloat, asFloat);
    EXPECT_EQ(none.clip, 1.0);
    EXPECT_LT(searched.clip, 1.0) << "bits " << bits;
    EXPECT_GE(searched.clip, kRouterClipLowest);
    EXPECT_LE(searched.klChosen, none.klChosen);
    EXPECT_GE(searched.agreementChosen, none.agreementChosen)
        << "bits " << bits;
    // Measured agreement (int8, int4) without/with the search: printed for
    // the record.
    std::printf("bits=%lld clip=%.4f kl %.3g -> %.3g agreement %.3f -> %.3f\n",
                (long long)bits, searched.clip, none.klChosen,
                searched.klChosen, none.agreementChosen,
                searched.agreementChosen);
  }
}

} // namespace
