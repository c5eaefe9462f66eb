//===- ReferenceKernelsTest.cpp - oracle semantics without a HF golden ----===//
//
// Routing and dispatch modes no Hugging Face family uses (top-p, capacity
// dropping) and the integer weight encoding, checked on cases small enough to
// work out by hand.
//
//===----------------------------------------------------------------------===//

#include "lib/Reference/Kernels.h"

#include "dialects/moe/MoEOps.h"

#include "mlir/IR/Builders.h"

#include <cmath>
#include <gtest/gtest.h>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::reference;

namespace {

class ReferenceKernels : public ::testing::Test {
protected:
  ReferenceKernels() { context.loadDialect<MoEDialect>(); }

  RoutingAttr routing(ScoringFunc scoring, unsigned k,
                      ExpertSelection selection, double topP = 0.0) {
    Builder b(&context);
    return RoutingAttr::get(&context, scoring, k, selection, false, FloatAttr(),
                            FloatAttr(), 0, 0, GroupScore::Max,
                            topP ? b.getF64FloatAttr(topP) : FloatAttr(),
                            FloatAttr(), Type());
  }
  /// One token whose router logits are `logits`: input [1, E] = logits, gate =
  /// identity.
  Routing routeLogits(RoutingAttr attr, std::vector<double> logits) {
    int64_t experts = logits.size();
    RefTensor input({1, experts}), gate({experts, experts});
    input.data = logits;
    for (int64_t e = 0; e < experts; ++e)
      gate.row(e)[e] = 1.0;
    return route(attr, input, gate, nullptr, nullptr);
  }
  InFlightDiagnostic error() { return emitError(UnknownLoc::get(&context)); }

  MLIRContext context;
};

TEST_F(ReferenceKernels, TopPTakesTheMinimalPrefixReachingP) {
  // Probabilities 0.5, 0.3, 0.1, 0.1 (logits are their logs).
  std::vector<double> logits = {std::log(0.1), std::log(0.5), std::log(0.1),
                                std::log(0.3)};
  struct Case {
    double p;
    std::vector<double> ids;
  } cases[] = {{0.4, {1, -1, -1}}, // 0.5 already reaches 0.4
               {0.5, {1, -1, -1}}, // the crossing element is the first
               {0.6, {1, 3, -1}},  // 0.5 + 0.3
               {0.85, {1, 3, 0}},  // 0.9 after three; ties go to the lower id
               {1.0, {1, 3, 0}}};  // capped at k = 3
  for (const Case &c : cases) {
    Routing result = routeLogits(
        routing(ScoringFunc::Softmax, 3, ExpertSelection::TopP, c.p), logits);
    EXPECT_EQ(result.ids.data, c.ids) << "p = " << c.p;
    double mass = 0.0;
    for (size_t j = 0; j < c.ids.size(); ++j) {
      if (c.ids[j] < 0) {
        EXPECT_EQ(result.weights.data[j], 0.0) << "unused slots weigh nothing";
        continue;
      }
      mass += result.weights.data[j];
    }
    // Weights are the raw probabilities: the selected mass reaches p unless
    // capped.
    if (c.ids.back() < 0)
      EXPECT_GE(mass, c.p - 1e-12) << "p = " << c.p;
  }
}

TEST_F(ReferenceKernels, ScoringAfterTopK) {
  std::vector<double> logits = {0.5, 2.0, -1.0, 1.0};
  Routing softmaxAfter = routeLogits(
      routing(ScoringFunc::SoftmaxAfterTopk, 2, ExpertSelection::TopK), logits);
  EXPECT_EQ(softmaxAfter.ids.data, (std::vector<double>{1, 3}));
  EXPECT_NEAR(softmaxAfter.weights.data[0], 1.0 / (1.0 + std::exp(-1.0)),
              1e-15);
  Routing sigmoidAfter = routeLogits(
      routing(ScoringFunc::SigmoidAfterTopk, 1, ExpertSelection::TopK), logits);
  EXPECT_EQ(sigmoidAfter.ids.data, (std::vector<double>{1}));
  EXPECT_NEAR(sigmoidAfter.weights.data[0], 1.0 / (1.0 + std::exp(-2.0)),
              1e-15);
}

TEST_F(ReferenceKernels, GroupLimitedExcludesOtherGroups) {
  // Sigmoid scores; groups {0,1} {2,3} {4,5}; keep 1 group by top-2 sum.
  auto attr = RoutingAttr::get(
      &context, ScoringFunc::Sigmoid, 2, ExpertSelection::GroupLimited, false,
      FloatAttr(), FloatAttr(), 3, 1, GroupScore::Top2Sum, FloatAttr(),
      FloatAttr(), Type());
  // Expert 0 has the best single score, but group {2,3} has the best pair.
  Routing result = routeLogits(attr, {3.0, -3.0, 2.0, 2.0, -1.0, -1.0});
  EXPECT_EQ(result.ids.data, (std::vector<double>{2, 3}));
  // Group max instead: group {0,1} wins and its weaker member is chosen second.
  auto byMax = RoutingAttr::get(&context, ScoringFunc::Sigmoid, 2,
                                ExpertSelection::GroupLimited, false,
                                FloatAttr(), FloatAttr(), 3, 1, GroupScore::Max,
                                FloatAttr(), FloatAttr(), Type());
  EXPECT_EQ(routeLogits(byMax, {3.0, -3.0, 2.0, 2.0, -1.0, -1.0}).ids.data,
            (std::vector<double>{0, 1}));

  // With a correction bias that makes a kept expert's choice score negative,
  // experts of the dropped groups still cannot be chosen (masking is -inf, not
  // 0.0).
  RefTensor input({1, 6}), gate({6, 6}), bias({6}, 0.0);
  input.data = {3.0, -3.0, 2.0, 2.0, -1.0, -1.0};
  for (int64_t e = 0; e < 6; ++e)
    gate.row(e)[e] = 1.0;
  bias.data = {0.0, -2.0, 0.0, 0.0, 0.0, 0.0}; // expert 1: sigmoid(-3) - 2 < 0
  Routing biased = route(byMax, input, gate, nullptr, &bias);
  EXPECT_EQ(biased.ids.data, (std::vector<double>{0, 1}));
  // Weights are the unbiased scores.
  EXPECT_NEAR(biased.weights.data[1], 1.0 / (1.0 + std::exp(3.0)), 1e-15);
}

TEST_F(ReferenceKernels, SparsemixerMasksFarExperts) {
  Builder b(&context);
  auto attr = RoutingAttr::get(&context, ScoringFunc::Sparsemixer, 2,
                               ExpertSelection::TopK, false, FloatAttr(),
                               FloatAttr(), 0, 0, GroupScore::Max, FloatAttr(),
                               b.getF64FloatAttr(0.1), Type());
  // Round 1: max 2.0; 1.7 is within 2*eps = 0.2 relative ((2-1.7)/2 =
  // 0.15), 1.0 is not.
  Routing result = routeLogits(attr, {1.0, 2.0, 1.7});
  EXPECT_EQ(result.ids.data, (std::vector<double>{1, 2}));
  double e1 = std::exp(2.0), e2 = std::exp(1.7);
  EXPECT_NEAR(result.weights.data[0], e1 / (e1 + e2), 1e-15);
  // Round 2 (expert 1 removed): max 1.7; 1.0 is (1.7-1)/1.7 = 0.41 away:
  // masked, so w2 = 1.
  EXPECT_NEAR(result.weights.data[1], 1.0, 1e-15);
}

TEST_F(ReferenceKernels, CapacityDropsLateTokensAndCombineSkipsThem) {
  // Four tokens, k = 1, all routed to expert 0 of 2; capacity ceil(1.0 * 4 / 2)
  // = 2.
  RefTensor input({4, 2}), ids({4, 1}, 0.0), weights({4, 1}, 0.5);
  for (int64_t i = 0; i < 8; ++i)
    input.data[i] = double(i + 1);
  FailureOr<Dispatch> dispatched =
      dispatch([&] { return error(); }, input, ids, weights, 2, 1.0);
  ASSERT_TRUE(succeeded(dispatched));
  EXPECT_EQ(dispatched->expertOffsets.data, (std::vector<double>{0, 2, 2}));
  EXPECT_EQ(dispatched->sourceSlots.data, (std::vector<double>{0, 1, -1, -1}));
  RefTensor addend({4, 2}, 10.0);
  FailureOr<RefTensor> combined =
      combine([&] { return error(); }, dispatched->permuted,
              dispatched->sourceSlots, weights, &addend, /*unweighted=*/false);
  ASSERT_TRUE(succeeded(combined));
  EXPECT_EQ(combined->data,
            (std::vector<double>{10.5, 11, 11.5, 12, 10, 10, 10, 10}));

  // Without a capacity every token is kept.
  dispatched =
      dispatch([&] { return error(); }, input, ids, weights, 2, std::nullopt);
  EXPECT_EQ(dispatched->expertOffsets.data, (std::vector<double>{0, 4, 4}));
}

TEST_F(ReferenceKernels, DispatchRejectsOutOfRangeIds) {
  ScopedDiagnosticHandler silence(&context,
                                  [](Diagnostic &) { return success(); });
  RefTensor input({1, 2}), ids({1, 1}, 5.0), weights({1, 1}, 1.0);
  EXPECT_TRUE(failed(
      dispatch([&] { return error(); }, input, ids, weights, 2, std::nullopt)));
}

TEST_F(ReferenceKernels, IntGroupDequantization) {
  Builder b(&context);
  auto type = RankedTensorType::get({1, 4}, b.getF32Type());
  // 4-bit, group 2, symmetric: nibbles low-first; 0xF is -1, 0x7 is 7.
  RefTensor packed({1, 2}), scales({1, 2});
  packed.data = {double(0x7F), double(0x21)}; // elements -1, 7 | 1, 2
  scales.data = {0.5, 2.0};
  auto symmetric = IntGroupEncodingAttr::get(&context, 4, 2, true);
  FailureOr<RefTensor> w =
      dequantize([&] { return error(); }, symmetric, {&packed, &scales}, type);
  ASSERT_TRUE(succeeded(w));
  EXPECT_EQ(w->data, (std::vector<double>{-0.5, 3.5, 2.0, 4.0}));

  // Asymmetric: unsigned nibbles minus zero points.
  RefTensor zeros({1, 2});
  zeros.data = {8.0, 0.0};
  auto asymmetric = IntGroupEncodingAttr::get(&context, 4, 2, false);
  w = dequantize([&] { return error(); }, asymmetric,
                 {&packed, &scales, &zeros}, type);
  ASSERT_TRUE(succeeded(w));
  EXPECT_EQ(w->data,
            (std::vector<double>{(15 - 8) * 0.5, (7 - 8) * 0.5, 2.0, 4.0}));

  // 8-bit values are used as stored.
  RefTensor bytes({1, 4});
  bytes.data = {-128, -1, 0, 127};
  w = dequantize([&] { return error(); },
                 IntGroupEncodingAttr::get(&context, 8, 4, true),
                 {&bytes, &scales}, type);
  ASSERT_TRUE(succeeded(w));
  EXPECT_EQ(w->data, (std::vector<double>{-64, -0.5, 0, 63.5}));
}

} // namespace
