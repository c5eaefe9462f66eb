//===- BitAllocationTest.cpp - the mixed-precision solver -----------------===//

#include "lib/Compress/BitAllocation.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <random>

using namespace mlir::moe;

namespace {

/// Every assignment of widths, for comparison (E = 8, 4 widths: 65536).
BitAllocation bruteForce(const BitAllocationProblem &p) {
  int64_t experts = p.params.size(), choices = p.widths.size();
  BitAllocation best;
  best.cost = std::numeric_limits<double>::infinity();
  std::vector<int64_t> pick(experts, 0);
  while (true) {
    int64_t bits = 0;
    double cost = 0;
    for (int64_t e = 0; e < experts; ++e) {
      bits += p.params[e] * p.widths[pick[e]];
      cost += p.cost[e][pick[e]];
    }
    if (bits <= p.budgetBits && cost < best.cost) {
      best.cost = cost;
      best.bits = bits;
      best.width.clear();
      for (int64_t e = 0; e < experts; ++e)
        best.width.push_back(p.widths[pick[e]]);
    }
    int64_t e = 0;
    while (e < experts && ++pick[e] == choices)
      pick[e++] = 0;
    if (e == experts)
      return best;
  }
}

/// MC#-like costs: frequency x weight^1.5 x a loss that falls with the width.
BitAllocationProblem randomProblem(std::mt19937 &random, double averageBits) {
  BitAllocationProblem p;
  p.widths = {2, 3, 4, 8};
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int64_t e = 0; e < 8; ++e) {
    p.params.push_back(4096);
    double importance = unit(random) * std::pow(unit(random), 1.5);
    std::vector<double> row;
    for (int64_t w : p.widths)
      row.push_back(importance * std::pow(2.0, -double(w)) *
                    (0.5 + unit(random)));
    p.cost.push_back(row);
  }
  p.budgetBits = int64_t(averageBits * 8 * 4096);
  return p;
}

TEST(BitAllocation, MatchesBruteForceAndRespectsBudget) {
  std::mt19937 random(1234);
  for (int trial = 0; trial < 200; ++trial) {
    double average = 2.0 + 6.0 * (trial % 20) / 19.0; // 2 .. 8 bits
    BitAllocationProblem p = randomProblem(random, average);
    llvm::Expected<BitAllocation> solved = solveBitAllocation(p);
    ASSERT_TRUE(bool(solved)) << llvm::toString(solved.takeError());
    BitAllocation expected = bruteForce(p);
    EXPECT_NEAR(solved->cost, expected.cost, 1e-12 * (1 + expected.cost))
        << "trial " << trial;
    int64_t bits = 0;
    double cost = 0;
    for (size_t e = 0; e < p.params.size(); ++e) {
      bits += p.params[e] * solved->width[e];
      auto at = std::find(p.widths.begin(), p.widths.end(), solved->width[e]);
      ASSERT_NE(at, p.widths.end());
      cost += p.cost[e][at - p.widths.begin()];
    }
    EXPECT_LE(bits, p.budgetBits) << "trial " << trial;
    EXPECT_EQ(bits, solved->bits);
    EXPECT_NEAR(cost, solved->cost, 1e-12 * (1 + cost));
  }
}

TEST(BitAllocation, MoreImportantExpertsGetMoreBits) {
  BitAllocationProblem p;
  p.widths = {4, 8};
  p.params = {100, 100};
  // Expert 1 loses ten times more at 4 bits; the budget allows one at 8.
  p.cost = {{1.0, 0.1}, {10.0, 1.0}};
  p.budgetBits = 100 * 12;
  llvm::Expected<BitAllocation> solved = solveBitAllocation(p);
  ASSERT_TRUE(bool(solved));
  EXPECT_EQ(solved->width, (std::vector<int64_t>{4, 8}));
}

TEST(BitAllocation, RejectsImpossibleAndMalformedProblems) {
  BitAllocationProblem p;
  p.widths = {4, 8};
  p.params = {100, 100};
  p.cost = {{1.0, 0.5}, {1.0, 0.5}};
  p.budgetBits = 799; // below 2 x 100 x 4
  llvm::Expected<BitAllocation> tooSmall = solveBitAllocation(p);
  ASSERT_FALSE(bool(tooSmall));
  EXPECT_NE(llvm::toString(tooSmall.takeError()).find("below the narrowest"),
            std::string::npos);
  p.budgetBits = 1600;
  p.cost = {{1.0}, {1.0, 0.5}};
  llvm::Expected<BitAllocation> ragged = solveBitAllocation(p);
  ASSERT_FALSE(bool(ragged));
  EXPECT_NE(llvm::toString(ragged.takeError()).find("cost of expert 0 has 1"),
            std::string::npos);
  p.cost = {{1.0, NAN}, {1.0, 0.5}};
  llvm::Expected<BitAllocation> nan = solveBitAllocation(p);
  ASSERT_FALSE(bool(nan));
  llvm::consumeError(nan.takeError());
}

} // namespace
