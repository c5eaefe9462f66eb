//===- LatentFactorization.h - experts sharing a latent basis -*- C++ -*-===//
//
// MoLE-style latent experts: a group of G expert weights W_1..W_G, each
// [N, K], is approximated as W_i ~ A_i B with one basis B [R, K] shared by
// the group and a small A_i [N, R] per expert. The best such approximation in
// the Frobenius norm is the truncated SVD of the stacked S = [W_1; ...; W_G]
// (Eckart-Young): B = V_R^T, A_i = row block i of U_R Sigma_R, and the squared
// error is exactly the discarded singular energy sum_{j>R} sigma_j^2.
//
// With calibration rows X [n, K] the error that matters is the one the
// inputs see, ||(S - A B) C^{1/2}||_F with C = X^T X / n; factorizing the
// whitened S C^{1/2} and mapping the basis back (B = V_R^T C^{-1/2}) minimises
// it, and then that weighted error equals the discarded energy of S C^{1/2}.
//
// Kept free of MLIR so the weight materializer (which executes the recorded
// factorization) and the pass (which reports its error) share it.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_COMPRESS_LATENTFACTORIZATION_H
#define MOEC_LIB_COMPRESS_LATENTFACTORIZATION_H

#include <Eigen/Dense>

#include <cstdint>
#include <vector>

namespace mlir::moe::compress {

/// Row-major, so an expert's [N, K] weight (as the checkpoint stores it) is a
/// block of rows of the stack.
using LatentMatrix =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The ridge added to the calibration covariance, relative to its mean
/// eigenvalue (trace / K). Calibration sets often have fewer distinct rows
/// than K, leaving C singular: the ridge keeps C^{-1/2} finite and lets the
/// directions no calibration row covers still count, slightly, so the basis
/// does not discard them arbitrarily.
inline constexpr double kWhiteningRelativeRidge = 1e-6;

/// C^{1/2} and C^{-1/2} of the regularised covariance of calibration rows.
struct Whitening {
  LatentMatrix sqrtCovariance;    // [K, K]
  LatentMatrix invSqrtCovariance; // [K, K]
};

/// The whitening of rows X [n, K]: C = X^T X / n + ridge * trace / K * I with
/// ridge = `relativeRidge`. `rows` must have at least one row.
Whitening whiteningFromRows(const LatentMatrix &rows,
                            double relativeRidge = kWhiteningRelativeRidge);

struct LatentFactors {
  LatentMatrix a; // [G*N, R]: row block i is A_i
  LatentMatrix b; // [R, K]: the shared basis
  /// Squared singular values of the (whitened) stack, descending, min(G*N, K)
  /// of them.
  std::vector<double> energies;
  /// Their sum (the squared Frobenius norm of the (whitened) stack) and the
  /// sum of those past the rank.
  double totalEnergy = 0, discardedEnergy = 0;

  double discardedFraction() const {
    return totalEnergy > 0 ? discardedEnergy / totalEnergy : 0.0;
  }
};

/// Factorizes `stack` [G*N, K] at rank `rank` (1 <= rank <= min(G*N, K)),
/// whitened by `whitening` when non-null. The truncated SVD comes from the
/// eigendecomposition of the [K, K] Gram matrix: its top eigenvectors are V_R
/// and its eigenvalues the squared singular values, and A = S V_R is the
/// stack's exact projection onto the basis, so the error identity holds to
/// rounding whatever the conditioning of the discarded part.
LatentFactors factorizeStack(const LatentMatrix &stack, int64_t rank,
                             const Whitening *whitening = nullptr);

/// ||S - A B||_F^2 (times C^{1/2} on the right when `whitening` is non-null,
/// with the same regularised C the factorization used).
double squaredError(const LatentMatrix &stack, const LatentFactors &factors,
                    const Whitening *whitening = nullptr);

} // namespace mlir::moe::compress

#endif // MOEC_LIB_COMPRESS_LATENTFACTORIZATION_H
