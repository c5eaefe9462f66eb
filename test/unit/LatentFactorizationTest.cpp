//===- LatentFactorizationTest.cpp - MoLE latent experts ------------------===//
//
// The numerics (Eckart-Young: the error is the discarded energy; exact
// recovery of a shared low-rank row space; whitening helps where the inputs
// are anisotropic) and their execution by the weight materializer (one expert
// at a time agrees with the whole; computing x B^T then A_e equals the
// materialized product).
//
//===----------------------------------------------------------------------===//

#include "lib/Compress/LatentFactorization.h"
#include "lib/Reference/WeightMaterializer.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstring>
#include <random>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::compress;

namespace {

LatentMatrix gaussian(std::mt19937 &random, int64_t rows, int64_t cols,
                      double sigma) {
  std::normal_distribution<double> normal(0.0, sigma);
  LatentMatrix m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i)
    m.data()[i] = normal(random);
  return m;
}

/// G experts [N, K] stacked, whose rows lie in one shared rank-`shared` row
/// space, plus Gaussian noise of `noise` (relative to the signal's entries).
LatentMatrix sharedRowSpace(std::mt19937 &random, int64_t experts, int64_t rows,
                            int64_t cols, int64_t shared, double noise) {
  LatentMatrix basis = gaussian(random, shared, cols, 1.0);
  LatentMatrix stack(experts * rows, cols);
  for (int64_t e = 0; e < experts; ++e)
    stack.middleRows(e * rows, rows) =
        gaussian(random, rows, shared, 1.0) * basis;
  double scale = std::sqrt(stack.squaredNorm() / double(stack.size()));
  if (noise > 0)
    stack += gaussian(random, stack.rows(), cols, noise * scale);
  return stack;
}

TEST(LatentFactorizationTest, ErrorEqualsDiscardedEnergy) {
  std::mt19937 random(7);
  LatentMatrix stack = sharedRowSpace(random, /*experts=*/4, /*rows=*/16,
                                      /*cols=*/48, /*shared=*/8, 0.05);
  for (int64_t rank : {1, 5, 8, 12, 47}) {
    LatentFactors f = factorizeStack(stack, rank);
    double relativeSq = squaredError(stack, f) / stack.squaredNorm();
    EXPECT_NEAR(relativeSq, f.discardedFraction(), 1e-9) << "rank " << rank;
    EXPECT_EQ(f.a.rows(), 64);
    EXPECT_EQ(f.a.cols(), rank);
    EXPECT_EQ(f.b.rows(), rank);
    EXPECT_EQ(f.b.cols(), 48);
  }
  // Past the shared rank only noise is left: about (K - m) / K of the noise
  // energy's share; at the shared rank the fraction is small but not zero.
  EXPECT_LT(factorizeStack(stack, 8).discardedFraction(), 5e-3);
  EXPECT_GT(factorizeStack(stack, 8).discardedFraction(), 1e-4);
  EXPECT_GT(factorizeStack(stack, 5).discardedFraction(), 5e-2);
}

TEST(LatentFactorizationTest, EnergiesAreTheSquaredSingularValues) {
  std::mt19937 random(3);
  LatentMatrix stack = gaussian(random, 24, 10, 1.0);
  LatentFactors f = factorizeStack(stack, 4);
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(stack);
  ASSERT_EQ(f.energies.size(), 10u);
  for (int64_t j = 0; j < 10; ++j)
    EXPECT_NEAR(f.energies[j], std::pow(svd.singularValues()[j], 2),
                1e-10 * f.totalEnergy)
        << "singular value " << j;
  EXPECT_NEAR(f.totalEnergy, stack.squaredNorm(), 1e-12 * f.totalEnergy);
}

TEST(LatentFactorizationTest, ExactRecoveryWithoutNoise) {
  std::mt19937 random(11);
  LatentMatrix stack = sharedRowSpace(random, 8, 12, 40, 6, 0.0);
  LatentFactors f = factorizeStack(stack, 6);
  EXPECT_LT(std::sqrt(squaredError(stack, f) / stack.squaredNorm()), 1e-12);
  // Zero singular values come out of the eigensolver as rounding of the
  // largest: about K * 2^-52 of the energy.
  EXPECT_LT(f.discardedFraction(), 1e-13);
  // The basis is orthonormal (unwhitened): B B^T = I.
  EXPECT_LT((f.b * f.b.transpose() - Eigen::MatrixXd::Identity(6, 6)).norm(),
            1e-12);
}

TEST(LatentFactorizationTest, WhiteningReducesTheInputWeightedError) {
  std::mt19937 random(5);
  int64_t cols = 32, tokens = 512;
  LatentMatrix stack = gaussian(random, 4 * 8, cols, 1.0);
  // Anisotropic inputs: column j has scale 10^(-3 j / K), so the first
  // columns dominate what the layer computes.
  LatentMatrix rows = gaussian(random, tokens, cols, 1.0);
  for (int64_t j = 0; j < cols; ++j)
    rows.col(j) *= std::pow(10.0, -3.0 * double(j) / double(cols));
  Whitening whitening = whiteningFromRows(rows);
  // The error the layer sees: ||(S - A B) X^T||_F^2 / n.
  auto outputError = [&](const LatentFactors &f) {
    return (rows * (stack - f.a * f.b).transpose()).squaredNorm() /
           double(tokens);
  };
  for (int64_t rank : {4, 8, 16}) {
    LatentFactors plain = factorizeStack(stack, rank);
    LatentFactors whitened = factorizeStack(stack, rank, &whitening);
    EXPECT_LT(outputError(whitened), 0.5 * outputError(plain))
        << "rank " << rank;
    // In the whitened norm the error is the discarded whitened energy; that
    // norm is the output error plus the ridge's share, ridge * ||S - A B||^2
    // (||R C_r^{1/2}||^2 = tr(R C R^T) + ridge ||R||^2).
    EXPECT_NEAR(squaredError(stack, whitened, &whitening) /
                    whitened.totalEnergy,
                whitened.discardedFraction(), 1e-9);
    double ridge = kWhiteningRelativeRidge * (rows.transpose() * rows).trace() /
                   double(tokens * cols);
    EXPECT_NEAR(squaredError(stack, whitened, &whitening),
                outputError(whitened) + ridge * squaredError(stack, whitened),
                1e-9 * outputError(whitened));
  }
}

TEST(LatentFactorizationTest, WhiteningSurvivesRankDeficientCalibration) {
  // Fewer calibration rows than columns: C is singular, the ridge keeps the
  // factorization finite and still exact on the covered directions.
  std::mt19937 random(9);
  LatentMatrix stack = sharedRowSpace(random, 2, 6, 20, 3, 0.0);
  LatentMatrix rows = gaussian(random, 5, 20, 1.0);
  Whitening whitening = whiteningFromRows(rows);
  LatentFactors f = factorizeStack(stack, 3, &whitening);
  EXPECT_TRUE(f.a.allFinite());
  EXPECT_TRUE(f.b.allFinite());
  EXPECT_LT(std::sqrt(squaredError(stack, f) / stack.squaredNorm()), 1e-8);
}

/// The recorded ops executed by the weight materializer on a checkpoint of
/// one [E, N, K] tensor.
class LatentMaterializerTest : public ::testing::Test {
protected:
  static constexpr int64_t kExperts = 4, kRows = 8, kCols = 12, kRank = 6,
                           kGroup = 2;

  void SetUp() override {
    context.loadDialect<MoEDialect, func::FuncDialect>();
    ASSERT_FALSE(
        llvm::sys::fs::createUniqueDirectory("moec-latent", directory));
    std::mt19937 random(13);
    weights = sharedRowSpace(random, kExperts, kRows, kCols, 4, 0.1);
    std::vector<float> values(weights.data(), weights.data() + weights.size());
    llvm::ArrayRef<uint8_t> bytes(
        reinterpret_cast<const uint8_t *>(values.data()),
        values.size() * sizeof(float));
    SmallString<128> file(directory);
    llvm::sys::path::append(file, "model.safetensors");
    ASSERT_FALSE(bool(::moe::SafetensorsWriter::writeFile(
        file, {{"w", MOE_DTYPE_F32, {kExperts, kRows, kCols}, bytes}})));
    // The checkpoint holds f32: the reference compares with those values.
    for (int64_t i = 0; i < weights.size(); ++i)
      weights.data()[i] = values[i];
    auto opened = ::moe::Checkpoint::open(directory);
    ASSERT_TRUE(bool(opened));
    checkpoint = std::move(*opened);
    module = parseSourceString<ModuleOp>(R"mlir(
      func.func @f() {
        %w = moe.weight "w" : tensor<4x8x12xf32>
        %a, %b = moe.factorize %w rank(6) group(2)
            : (tensor<4x8x12xf32>) -> (tensor<4x8x6xf32>, tensor<2x6x12xf32>)
        %p = moe.latent_product %a, %b
            : (tensor<4x8x6xf32>, tensor<2x6x12xf32>) -> tensor<4x8x12xf32>
        return
      })mlir",
                                         &context);
    ASSERT_TRUE(module);
    module->walk([&](LatentProductOp op) { product = op; });
    factorize = product.getFactors().getDefiningOp<FactorizeOp>();
  }

  void TearDown() override {
    module = nullptr;
    checkpoint.reset();
    llvm::sys::fs::remove_directories(directory);
  }

  static double relativeDifference(const reference::RefTensor &x,
                                   const reference::RefTensor &y) {
    double diff = 0, norm = 0;
    for (size_t i = 0; i < x.data.size(); ++i) {
      diff += std::pow(x.data[i] - y.data[i], 2);
      norm += std::pow(y.data[i], 2);
    }
    return std::sqrt(diff / norm);
  }

  MLIRContext context;
  SmallString<128> directory;
  LatentMatrix weights;
  std::unique_ptr<::moe::Checkpoint> checkpoint;
  OwningOpRef<ModuleOp> module;
  LatentProductOp product;
  FactorizeOp factorize;
};

TEST_F(LatentMaterializerTest, OneExpertAtATimeMatchesTheWhole) {
  reference::WeightMaterializer whole(*checkpoint), streamed(*checkpoint);
  FailureOr<reference::RefTensor> all = whole.get(product.getResult());
  ASSERT_TRUE(succeeded(all));
  ASSERT_EQ(all->shape, (SmallVector<int64_t, 4>{kExperts, kRows, kCols}));
  for (int64_t e = 0; e < kExperts; ++e) {
    FailureOr<reference::RefTensor> one = streamed.get(product.getResult(), e);
    ASSERT_TRUE(succeeded(one));
    ASSERT_EQ(one->shape, (SmallVector<int64_t, 4>{kRows, kCols}));
    for (int64_t i = 0; i < kRows * kCols; ++i)
      EXPECT_EQ(one->data[i], all->data[e * kRows * kCols + i])
          << "expert " << e << " element " << i;
  }
}

TEST_F(LatentMaterializerTest, ProductIsTheGroupsTruncatedSvd) {
  reference::WeightMaterializer materializer(*checkpoint);
  FailureOr<reference::RefTensor> all = materializer.get(product.getResult());
  ASSERT_TRUE(succeeded(all));
  for (int64_t g = 0; g < kExperts / kGroup; ++g) {
    LatentMatrix stack = weights.middleRows(g * kGroup * kRows, kGroup * kRows);
    LatentFactors f = factorizeStack(stack, kRank);
    LatentMatrix expected = f.a * f.b;
    // The factors are rounded to f32 (their type), then the product.
    for (int64_t i = 0; i < expected.size(); ++i)
      EXPECT_NEAR(all->data[g * expected.size() + i], expected.data()[i],
                  1e-5 * std::sqrt(stack.squaredNorm() / stack.size()));
  }
}

TEST_F(LatentMaterializerTest, FactorizedComputationEqualsMaterialized) {
  // What generated code may compute (x B_g^T once, then A_e) against what it
  // computes today (x W_e^T with W_e = A_e B_g materialized).
  reference::WeightMaterializer materializer(*checkpoint);
  std::mt19937 random(17);
  LatentMatrix x = gaussian(random, 5, kCols, 1.0);
  for (int64_t e = 0; e < kExperts; ++e) {
    FailureOr<reference::RefTensor> a =
        materializer.get(factorize.getFactors(), e);
    FailureOr<reference::RefTensor> b =
        materializer.get(factorize.getBasis(), e / kGroup);
    FailureOr<reference::RefTensor> w =
        materializer.get(product.getResult(), e);
    ASSERT_TRUE(succeeded(a) && succeeded(b) && succeeded(w));
    ASSERT_EQ(a->shape, (SmallVector<int64_t, 4>{kRows, kRank}));
    ASSERT_EQ(b->shape, (SmallVector<int64_t, 4>{kRank, kCols}));
    Eigen::Map<const LatentMatrix> aMatrix(a->data.data(), kRows, kRank),
        bMatrix(b->data.data(), kRank, kCols),
        wMatrix(w->data.data(), kRows, kCols);
    LatentMatrix latent = x * bMatrix.transpose();
    LatentMatrix factorized = latent * aMatrix.transpose();
    LatentMatrix materialized = x * wMatrix.transpose();
    // The product is rounded to f32 once: a relative 2^-24 per element.
    EXPECT_LT((factorized - materialized).norm(), 1e-6 * materialized.norm())
        << "expert " << e;
  }
  // Slices past the end are errors, not reads out of bounds.
  context.getDiagEngine().registerHandler(
      [](Diagnostic &) { return success(); });
  EXPECT_TRUE(failed(materializer.get(factorize.getBasis(), 2)));
  EXPECT_TRUE(failed(materializer.get(product.getResult(), kExperts)));
}

} // namespace
