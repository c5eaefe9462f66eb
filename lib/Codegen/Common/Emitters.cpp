//===- Emitters.cpp - IR pieces both code generators emit -----------------===//

#include "lib/Codegen/Common/Emitters.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::codegen;

Value codegen::viewOf(ImplicitLocOpBuilder &b, Value base, int64_t byteOffset,
                      ArrayRef<int64_t> shape, Type element, Value leading,
                      Value dynamicOffset) {
  MLIRContext *ctx = b.getContext();
  auto i64 = b.getI64Type();
  auto ptr = LLVM::LLVMPointerType::get(ctx);
  int64_t rank = shape.size();
  auto array = LLVM::LLVMArrayType::get(i64, rank);
  auto descriptor =
      LLVM::LLVMStructType::getLiteral(ctx, {ptr, ptr, i64, array, array});
  Value address = base;
  if (byteOffset || dynamicOffset) {
    Value offset = dynamicOffset
                       ? dynamicOffset
                       : Value(LLVM::ConstantOp::create(
                             b, i64, b.getI64IntegerAttr(byteOffset)));
    address =
        LLVM::GEPOp::create(b, ptr, b.getI8Type(), base, ValueRange{offset});
  }
  Value d = LLVM::PoisonOp::create(b, descriptor);
  d = LLVM::InsertValueOp::create(b, d, address, ArrayRef<int64_t>{0});
  d = LLVM::InsertValueOp::create(b, d, address, ArrayRef<int64_t>{1});
  d = LLVM::InsertValueOp::create(
      b, d, LLVM::ConstantOp::create(b, i64, b.getI64IntegerAttr(0)),
      ArrayRef<int64_t>{2});
  int64_t stride = 1;
  SmallVector<int64_t> strides(rank);
  for (int64_t dim = rank - 1; dim >= 0; --dim) {
    strides[dim] = stride;
    if (dim > 0)
      stride *= shape[dim];
  }
  for (int64_t dim = 0; dim < rank; ++dim) {
    Value size = ShapedType::isDynamic(shape[dim])
                     ? leading
                     : Value(LLVM::ConstantOp::create(
                           b, i64, b.getI64IntegerAttr(shape[dim])));
    d = LLVM::InsertValueOp::create(b, d, size, ArrayRef<int64_t>{3, dim});
    d = LLVM::InsertValueOp::create(
        b, d,
        LLVM::ConstantOp::create(b, i64, b.getI64IntegerAttr(strides[dim])),
        ArrayRef<int64_t>{4, dim});
  }
  auto type = MemRefType::get(shape, element);
  return UnrealizedConversionCastOp::create(b, type, d).getResult(0);
}

Value codegen::activate(IR &ir, FfnAttr ffn, Value gate, Value up) {
  auto c = [&](double v) { return ir.constantLike(up, v); };
  auto act = [&](Value x) -> Value {
    switch (ffn.getActivation()) {
    case Activation::Silu:
      return ir.mul(x, ir.sigmoid(x));
    case Activation::Gelu:
      return ir.mul(
          ir.mul(c(0.5), x),
          ir.add(c(1.0), math::ErfOp::create(ir.b, ir.mul(x, c(M_SQRT1_2)))));
    case Activation::GeluTanh: {
      Value cube = ir.mul(ir.mul(x, x), x);
      Value inner = ir.mul(c(std::sqrt(2.0 / M_PI)),
                           ir.add(x, ir.mul(c(0.044715), cube)));
      return ir.mul(ir.mul(c(0.5), x),
                    ir.add(c(1.0), math::TanhOp::create(ir.b, inner)));
    }
    case Activation::Relu:
      return ir.maxf(x, c(0.0));
    case Activation::ClampedSwiglu:
      break;
    }
    return x;
  };
  if (!gate)
    return act(up);
  if (ffn.getActivation() != Activation::ClampedSwiglu)
    return ir.mul(act(gate), up);
  double limit = ffn.getLimit().getValueAsDouble(),
         alpha = ffn.getAlpha().getValueAsDouble();
  Value g = ir.minf(gate, c(limit));
  Value u = ir.maxf(ir.minf(up, c(limit)), c(-limit));
  return ir.mul(ir.mul(ir.add(u, c(1.0)), g), ir.sigmoid(ir.mul(c(alpha), g)));
}

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

void RoutingEmitter::emit(Value logits, Value correction,
                          SmallVector<Value> &ids,
                          SmallVector<Value> &weights) {
  Value taken = stackArray(E, ir.b.getI1Type());
  clear(taken);
  switch (routing.getScoring()) {
  case ScoringFunc::Sparsemixer:
    sparsemixer(logits, taken, ids, weights);
    break;
  case ScoringFunc::SoftmaxAfterTopk:
  case ScoringFunc::SigmoidAfterTopk: {
    SmallVector<Value> chosen;
    for (int64_t j = 0; j < k; ++j) {
      auto [id, value] = pickBest(logits, taken);
      ids.push_back(id);
      chosen.push_back(value);
    }
    if (routing.getScoring() == ScoringFunc::SigmoidAfterTopk) {
      for (Value v : chosen)
        weights.push_back(ir.sigmoid(v));
    } else {
      // The first pick is the largest: the softmax's stable shift.
      SmallVector<Value> exps;
      Value sum = ir.f(0.0);
      for (Value v : chosen) {
        exps.push_back(ir.exp(ir.sub(v, chosen[0])));
        sum = ir.add(sum, exps.back());
      }
      for (Value x : exps)
        weights.push_back(ir.div(x, sum));
    }
    break;
  }
  case ScoringFunc::Softmax:
  case ScoringFunc::Sigmoid:
    scoreThenSelect(logits, correction, taken, ids, weights);
    break;
  }
  if (routing.getNormalize()) {
    Value sum = ir.f(routing.getNormEpsilonValue());
    for (Value w : weights)
      sum = ir.add(sum, w);
    for (Value &w : weights)
      w = ir.div(w, sum);
  }
  if (routing.getScalingValue() != 1.0)
    for (Value &w : weights)
      w = ir.mul(w, ir.f(routing.getScalingValue()));
}

Value RoutingEmitter::stackArray(int64_t n, Type type) {
  return memref::AllocaOp::create(ir.b, MemRefType::get({n}, type));
}
void RoutingEmitter::clear(Value flags) {
  Value no = arith::ConstantIntOp::create(ir.b, ir.b.getI1Type(), 0);
  ir.forLoop(ir.idx(0), ir.idx(E),
             [&](IR &ir, Value e) { ir.store(no, flags, {e}); });
}

/// The untaken expert with the largest value (the lowest id on ties), marked
/// taken.
std::pair<Value, Value> RoutingEmitter::pickBest(Value values, Value taken) {
  Value negInf = ir.f(-std::numeric_limits<float>::infinity());
  // (id, value, found): `found` keeps the first untaken expert even if its
  // value is -inf.
  Value no = arith::ConstantIntOp::create(ir.b, ir.b.getI1Type(), 0);
  ValueRange result = ir.forLoop(
      ir.idx(0), ir.idx(E), ir.idx(1), {ir.idx(0), negInf, no},
      [&](IR &ir, Value e, ValueRange acc) {
        Value v = ir.load(values, {e});
        Value free = arith::XOrIOp::create(
            ir.b, ir.load(taken, {e}),
            arith::ConstantIntOp::create(ir.b, ir.b.getI1Type(), 1));
        Value better = arith::OrIOp::create(
            ir.b, ir.cmpf(arith::CmpFPredicate::OGT, v, acc[1]),
            arith::XOrIOp::create(
                ir.b, acc[2],
                arith::ConstantIntOp::create(ir.b, ir.b.getI1Type(), 1)));
        Value take = arith::AndIOp::create(ir.b, free, better);
        return SmallVector<Value>{ir.select(take, e, acc[0]),
                                  ir.select(take, v, acc[1]),
                                  arith::OrIOp::create(ir.b, acc[2], take)};
      });
  ir.store(arith::ConstantIntOp::create(ir.b, ir.b.getI1Type(), 1), taken,
           {result[0]});
  return {result[0], result[1]};
}

void RoutingEmitter::scoreThenSelect(Value logits, Value correction,
                                     Value taken, SmallVector<Value> &ids,
                                     SmallVector<Value> &weights) {
  Value scores = stackArray(E, ir.f32()), choice = stackArray(E, ir.f32());
  if (routing.getScoring() == ScoringFunc::Softmax) {
    Value negInf = ir.f(-std::numeric_limits<float>::infinity());
    Value max = ir.forLoop(ir.idx(0), ir.idx(E), ir.idx(1), {negInf},
                           [&](IR &ir, Value e, ValueRange m) {
                             return SmallVector<Value>{
                                 ir.maxf(m[0], ir.load(logits, {e}))};
                           })[0];
    Value sum = ir.forLoop(ir.idx(0), ir.idx(E), ir.idx(1), {ir.f(0.0)},
                           [&](IR &ir, Value e, ValueRange s) {
                             Value x =
                                 ir.exp(ir.sub(ir.load(logits, {e}), max));
                             ir.store(x, scores, {e});
                             return SmallVector<Value>{ir.add(s[0], x)};
                           })[0];
    ir.forLoop(ir.idx(0), ir.idx(E), [&](IR &ir, Value e) {
      ir.store(ir.div(ir.load(scores, {e}), sum), scores, {e});
    });
  } else {
    ir.forLoop(ir.idx(0), ir.idx(E), [&](IR &ir, Value e) {
      ir.store(ir.sigmoid(ir.load(logits, {e})), scores, {e});
    });
  }
  // The correction bias only chooses.
  ir.forLoop(ir.idx(0), ir.idx(E), [&](IR &ir, Value e) {
    Value c = ir.load(scores, {e});
    if (correction)
      c = ir.add(c, ir.load(correction, {e}));
    ir.store(c, choice, {e});
  });
  if (routing.getSelection() == ExpertSelection::GroupLimited)
    maskGroups(choice);

  if (routing.getSelection() == ExpertSelection::TopP) {
    // Take the next best while the selected mass is below p, at most k times.
    Value threshold = ir.f(routing.getTopP().getValueAsDouble());
    Value mass = ir.f(0.0);
    Value active = arith::ConstantIntOp::create(ir.b, ir.b.getI1Type(), 1);
    for (int64_t j = 0; j < k; ++j) {
      auto [id, value] = pickBest(choice, taken);
      Value score = ir.load(scores, {id});
      ids.push_back(ir.select(active, id, ir.idx(-1)));
      weights.push_back(ir.select(active, score, ir.f(0.0)));
      mass = ir.add(mass, ir.select(active, score, ir.f(0.0)));
      active = arith::AndIOp::create(
          ir.b, active, ir.cmpf(arith::CmpFPredicate::OLT, mass, threshold));
    }
    return;
  }
  for (int64_t j = 0; j < k; ++j) {
    Value id = pickBest(choice, taken).first;
    ids.push_back(id);
    weights.push_back(ir.load(scores, {id}));
  }
}

/// DeepSeek: experts outside the topk_group best groups are excluded (-inf).
void RoutingEmitter::maskGroups(Value choice) {
  int64_t groups = routing.getNGroup(), size = E / groups;
  bool top2 = routing.getGroupScore() == GroupScore::Top2Sum;
  Value groupScores = stackArray(groups, ir.f32());
  Value negInf = ir.f(-std::numeric_limits<float>::infinity());
  for (int64_t g = 0; g < groups; ++g) {
    ValueRange best =
        ir.forLoop(ir.idx(g * size), ir.idx((g + 1) * size), ir.idx(1),
                   {negInf, negInf}, [&](IR &ir, Value e, ValueRange acc) {
                     Value v = ir.load(choice, {e});
                     Value first = ir.maxf(acc[0], v);
                     // The second largest: the larger of the old second and
                     // whichever of (old first, v) did not become the first.
                     Value second = ir.maxf(acc[1], ir.minf(acc[0], v));
                     return SmallVector<Value>{first, second};
                   });
    ir.store(top2 ? ir.add(best[0], best[1]) : best[0], groupScores,
             {ir.idx(g)});
  }
  Value keptGroups = stackArray(groups, ir.b.getI1Type());
  Value no = arith::ConstantIntOp::create(ir.b, ir.b.getI1Type(), 0);
  for (int64_t g = 0; g < groups; ++g)
    ir.store(no, keptGroups, {ir.idx(g)});
  int64_t savedE = E;
  E = groups;
  for (int64_t j = 0; j < int64_t(routing.getTopkGroup()); ++j)
    pickBest(groupScores, keptGroups); // marks the group kept
  E = savedE;
  ir.forLoop(ir.idx(0), ir.idx(E), [&](IR &ir, Value e) {
    Value group = arith::DivUIOp::create(ir.b, e, ir.idx(size));
    Value kept = ir.load(keptGroups, {group});
    ir.store(ir.select(kept, ir.load(choice, {e}), negInf), choice, {e});
  });
}

/// PhiMoE's two masked softmax rounds (see the reference evaluator).
void RoutingEmitter::sparsemixer(Value logits, Value taken,
                                 SmallVector<Value> &ids,
                                 SmallVector<Value> &weights) {
  Value twoEps = ir.f(2.0 * routing.getEpsilon().getValueAsDouble());
  for (int64_t round = 0; round < 2; ++round) {
    auto [id, top] = pickBest(logits, taken);
    // 1 / sum over unmasked (and, in round 2, not the first choice) of
    // exp(s_j - top).
    Value sum = ir.forLoop(
        ir.idx(0), ir.idx(E), ir.idx(1), {ir.f(0.0)},
        [&](IR &ir, Value e, ValueRange acc) {
          Value s = ir.load(logits, {e});
          Value factor = ir.maxf(math::AbsFOp::create(ir.b, s), top);
          Value masked = ir.cmpf(arith::CmpFPredicate::OGT,
                                 ir.div(ir.sub(top, s), factor), twoEps);
          Value excluded =
              round == 1
                  ? ir.cmpi(arith::CmpIPredicate::eq, e, ids[0])
                  : arith::ConstantIntOp::create(ir.b, ir.b.getI1Type(), 0);
          Value skip = arith::OrIOp::create(ir.b, masked, excluded);
          Value term = ir.select(skip, ir.f(0.0), ir.exp(ir.sub(s, top)));
          return SmallVector<Value>{ir.add(acc[0], term)};
        })[0];
    ids.push_back(id);
    weights.push_back(ir.div(ir.f(1.0), sum));
  }
}
