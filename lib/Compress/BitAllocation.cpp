//===- BitAllocation.cpp - per-expert bit widths under a budget -----------===//

#include "lib/Compress/BitAllocation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

using namespace mlir::moe;

static llvm::Error problemError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "bit allocation: " + message);
}

llvm::Expected<BitAllocation>
mlir::moe::solveBitAllocation(const BitAllocationProblem &problem,
                              int64_t maxCells) {
  int64_t experts = int64_t(problem.params.size());
  int64_t choices = int64_t(problem.widths.size());
  if (experts == 0 || choices == 0)
    return problemError("needs at least one expert and one width");
  if (int64_t(problem.cost.size()) != experts)
    return problemError("cost has " + llvm::Twine(problem.cost.size()) +
                        " rows for " + llvm::Twine(experts) + " experts");
  for (int64_t w : problem.widths)
    if (w < 1)
      return problemError("widths must be positive, got " + llvm::Twine(w));
  int64_t unit = 0;
  for (int64_t e = 0; e < experts; ++e) {
    if (problem.params[e] < 1)
      return problemError("expert " + llvm::Twine(e) + " has no parameters");
    if (int64_t(problem.cost[e].size()) != choices)
      return problemError("cost of expert " + llvm::Twine(e) + " has " +
                          llvm::Twine(problem.cost[e].size()) +
                          " entries for " + llvm::Twine(choices) + " widths");
    for (double c : problem.cost[e])
      if (std::isnan(c))
        return problemError("cost of expert " + llvm::Twine(e) + " is NaN");
    unit = std::gcd(unit, problem.params[e]);
  }
  // Spend in units of `unit` parameter-bits: expert e at width w costs
  // params[e] / unit * w units.
  int64_t capacity = problem.budgetBits / unit;
  int64_t narrowest =
      *std::min_element(problem.widths.begin(), problem.widths.end());
  int64_t minimum = 0;
  for (int64_t p : problem.params)
    minimum += p / unit * narrowest;
  if (minimum > capacity)
    return problemError("the budget of " + llvm::Twine(problem.budgetBits) +
                        " bits is below the narrowest allocation (" +
                        llvm::Twine(minimum * unit) + " bits)");
  // More units than the widest allocation are never needed.
  int64_t widest =
      *std::max_element(problem.widths.begin(), problem.widths.end());
  int64_t maximum = 0;
  for (int64_t p : problem.params)
    maximum += p / unit * widest;
  capacity = std::min(capacity, maximum);
  if ((experts + 1) * (capacity + 1) > maxCells)
    return problemError("the table would need " +
                        llvm::Twine((experts + 1) * (capacity + 1)) +
                        " cells (more than " + llvm::Twine(maxCells) + ")");

  // best[e][s]: the least cost of experts [0, e) spending exactly s units.
  const double infinity = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(
      experts + 1, std::vector<double>(capacity + 1, infinity));
  std::vector<std::vector<int64_t>> choice(
      experts + 1, std::vector<int64_t>(capacity + 1, -1));
  best[0][0] = 0;
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t s = 0; s <= capacity; ++s) {
      if (best[e][s] == infinity)
        continue;
      for (int64_t i = 0; i < choices; ++i) {
        int64_t next = s + problem.params[e] / unit * problem.widths[i];
        double total = best[e][s] + problem.cost[e][i];
        if (next <= capacity && total < best[e + 1][next]) {
          best[e + 1][next] = total;
          choice[e + 1][next] = i;
        }
      }
    }
  int64_t end = 0;
  for (int64_t s = 0; s <= capacity; ++s)
    if (best[experts][s] < best[experts][end])
      end = s;
  BitAllocation result;
  result.cost = best[experts][end];
  result.bits = end * unit;
  result.width.resize(experts);
  for (int64_t e = experts, s = end; e > 0; --e) {
    int64_t i = choice[e][s];
    result.width[e - 1] = problem.widths[i];
    s -= problem.params[e - 1] / unit * problem.widths[i];
  }
  return result;
}
