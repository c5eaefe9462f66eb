//===- LatentFactorization.cpp - shared-basis factorization of experts ----===//

#include "lib/Compress/LatentFactorization.h"

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cassert>

using namespace mlir::moe;
using namespace mlir::moe::compress;

Whitening compress::whiteningFromRows(const LatentMatrix &rows,
                                      double relativeRidge) {
  assert(rows.rows() > 0 && "whitening needs calibration rows");
  int64_t k = rows.cols();
  Eigen::MatrixXd covariance =
      (rows.transpose() * rows) / static_cast<double>(rows.rows());
  double ridge = relativeRidge * covariance.trace() / static_cast<double>(k);
  // An all-zero calibration set still whitens to the identity rather than
  // dividing by zero.
  if (ridge <= 0)
    ridge = 1.0;
  covariance.diagonal().array() += ridge;
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(covariance);
  // Rounding can leave eigenvalues of a PSD matrix slightly below the ridge;
  // never below it.
  Eigen::VectorXd eigenvalues = solver.eigenvalues().cwiseMax(ridge);
  const Eigen::MatrixXd &q = solver.eigenvectors();
  Whitening whitening;
  whitening.sqrtCovariance =
      q * eigenvalues.cwiseSqrt().asDiagonal() * q.transpose();
  whitening.invSqrtCovariance =
      q * eigenvalues.cwiseSqrt().cwiseInverse().asDiagonal() * q.transpose();
  return whitening;
}

LatentFactors compress::factorizeStack(const LatentMatrix &stack, int64_t rank,
                                       const Whitening *whitening) {
  int64_t k = stack.cols();
  assert(rank >= 1 && rank <= std::min<int64_t>(stack.rows(), k) &&
         "rank must be within the stack's dimensions");
  LatentMatrix whitened =
      whitening ? LatentMatrix(stack * whitening->sqrtCovariance) : stack;
  Eigen::MatrixXd gram = whitened.transpose() * whitened;
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(gram);
  // Eigen sorts ascending: the basis is the last `rank` eigenvectors, taken
  // largest first.
  Eigen::MatrixXd basis =
      solver.eigenvectors().rightCols(rank).rowwise().reverse();

  LatentFactors factors;
  factors.a = whitened * basis;
  factors.b =
      whitening ? LatentMatrix(basis.transpose() * whitening->invSqrtCovariance)
                : LatentMatrix(basis.transpose());
  int64_t count = std::min<int64_t>(stack.rows(), k);
  for (int64_t j = 0; j < count; ++j)
    factors.energies.push_back(std::max(0.0, solver.eigenvalues()[k - 1 - j]));
  // The total is the Frobenius norm itself, not the eigenvalue sum, so the
  // fraction's denominator carries no eigensolver rounding.
  factors.totalEnergy = whitened.squaredNorm();
  for (int64_t j = rank; j < count; ++j)
    factors.discardedEnergy += factors.energies[j];
  return factors;
}

double compress::squaredError(const LatentMatrix &stack,
                              const LatentFactors &factors,
                              const Whitening *whitening) {
  LatentMatrix residual = stack - factors.a * factors.b;
  if (whitening)
    return (residual * whitening->sqrtCovariance).squaredNorm();
  return residual.squaredNorm();
}
