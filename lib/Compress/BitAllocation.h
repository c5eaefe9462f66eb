//===- BitAllocation.h - per-expert bit widths under a budget ---*- C++ -*-===//
//
// Mixed-precision quantization (MC#-style): each expert e gets one bit width b
// from a candidate list, minimising the total cost sum_e cost[e][b] (for MC#:
// activation frequency x mean routing weight^1.5 x measured quantization loss)
// subject to sum_e params[e] * b <= budget bits. A multiple-choice knapsack,
// solved exactly by dynamic programming over the bits spent, in units of the
// greatest common divisor of the experts' sizes (equal in MoE layers), so the
// table stays small.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_COMPRESS_BITALLOCATION_H
#define MOEC_LIB_COMPRESS_BITALLOCATION_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <vector>

namespace mlir::moe {

struct BitAllocationProblem {
  std::vector<int64_t> widths; // candidate bit widths, e.g. {2, 3, 4, 8}
  std::vector<int64_t> params; // parameters of each expert
  std::vector<std::vector<double>> cost; // cost[e][i] of widths[i] for expert e
  int64_t budgetBits = 0;                // sum_e params[e] * width <= this
};

struct BitAllocation {
  std::vector<int64_t> width; // the chosen width of each expert
  double cost = 0;
  int64_t bits = 0;
};

/// The exact optimum; an error when the problem is malformed (sizes,
/// non-positive widths or parameters, NaN costs), when even the narrowest
/// widths exceed the budget, or when the table would be too large (more than
/// `maxCells` DP cells).
llvm::Expected<BitAllocation>
solveBitAllocation(const BitAllocationProblem &problem,
                   int64_t maxCells = int64_t(1) << 26);

} // namespace mlir::moe

#endif // MOEC_LIB_COMPRESS_BITALLOCATION_H
