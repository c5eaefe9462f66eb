//===- LoopBuilder.h - structured IR in a few words -----------*- C++ -*-===//
//
// Small helpers over an ImplicitLocOpBuilder shared by the CPU and GPU code
// generators, so that kernels read like the loops they are.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_CODEGEN_COMMON_LOOPBUILDER_H
#define MOEC_LIB_CODEGEN_COMMON_LOOPBUILDER_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir::moe::codegen {

/// Small helpers over an ImplicitLocOpBuilder, so the kernels below read like
/// the loops they are.
struct IR {
  ImplicitLocOpBuilder &b;

  Type f32() { return b.getF32Type(); }
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value f(double v) {
    return arith::ConstantFloatOp::create(b, b.getF32Type(),
                                          llvm::APFloat(float(v)));
  }
  Value i32(int64_t v) {
    return arith::ConstantIntOp::create(b, b.getI32Type(), v);
  }
  Value add(Value x, Value y) {
    return isa<FloatType, VectorType>(x.getType())
               ? Value(arith::AddFOp::create(b, x, y))
               : Value(arith::AddIOp::create(b, x, y));
  }
  Value sub(Value x, Value y) {
    return isa<FloatType, VectorType>(x.getType())
               ? Value(arith::SubFOp::create(b, x, y))
               : Value(arith::SubIOp::create(b, x, y));
  }
  Value mul(Value x, Value y) {
    return isa<FloatType, VectorType>(x.getType())
               ? Value(arith::MulFOp::create(b, x, y))
               : Value(arith::MulIOp::create(b, x, y));
  }
  Value div(Value x, Value y) { return arith::DivFOp::create(b, x, y); }
  Value maxf(Value x, Value y) { return arith::MaximumFOp::create(b, x, y); }
  Value minf(Value x, Value y) { return arith::MinimumFOp::create(b, x, y); }
  Value exp(Value x) { return math::ExpOp::create(b, x); }
  Value cmpf(arith::CmpFPredicate p, Value x, Value y) {
    return arith::CmpFOp::create(b, p, x, y);
  }
  Value cmpi(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, p, x, y);
  }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, c, x, y);
  }
  Value load(Value m, ValueRange i) { return memref::LoadOp::create(b, m, i); }
  void store(Value v, Value m, ValueRange i) {
    memref::StoreOp::create(b, v, m, i);
  }
  Value toIndex(Value i32v) {
    return arith::IndexCastOp::create(b, b.getIndexType(), i32v);
  }
  Value toI32(Value index) {
    return arith::IndexCastOp::create(b, b.getI32Type(), index);
  }
  Value splat(Value scalar, int64_t n) {
    return vector::BroadcastOp::create(
        b, VectorType::get({n}, scalar.getType()), scalar);
  }
  /// A constant vector<n x f32>.
  Value vf(double v, int64_t n) { return splat(f(v), n); }
  /// An f32 constant of the type of `like` (f32 or vector<n x f32>).
  Value constantLike(Value like, double v) {
    auto vector = dyn_cast<VectorType>(like.getType());
    return vector ? vf(v, vector.getNumElements()) : f(v);
  }
  Value sigmoid(Value x) {
    int64_t n = isa<VectorType>(x.getType())
                    ? cast<VectorType>(x.getType()).getNumElements()
                    : 0;
    Value one = n ? vf(1.0, n) : f(1.0);
    return div(one, add(one, exp(arith::NegFOp::create(b, x))));
  }

  /// for (iv = lb; iv < ub; iv += step) body(iv, carried) -> results
  ValueRange
  forLoop(Value lb, Value ub, Value step, ValueRange init,
          function_ref<SmallVector<Value>(IR &, Value, ValueRange)> body) {
    auto loop = scf::ForOp::create(
        b, lb, ub, step, init,
        [&](OpBuilder &nested, Location loc, Value iv, ValueRange args) {
          ImplicitLocOpBuilder ib(loc, nested);
          IR ir{ib};
          SmallVector<Value> results = body(ir, iv, args);
          scf::YieldOp::create(ib, results);
        });
    return loop.getResults();
  }
  void forLoop(Value lb, Value ub, function_ref<void(IR &, Value)> body) {
    forLoop(lb, ub, idx(1), {}, [&](IR &ir, Value iv, ValueRange) {
      body(ir, iv);
      return SmallVector<Value>();
    });
  }
  void parallel(ValueRange ubs, function_ref<void(IR &, ValueRange)> body) {
    SmallVector<Value> zeros(ubs.size(), idx(0)), ones(ubs.size(), idx(1));
    scf::ParallelOp::create(
        b, zeros, ubs, ones,
        [&](OpBuilder &nested, Location loc, ValueRange ivs) {
          ImplicitLocOpBuilder ib(loc, nested);
          IR ir{ib};
          body(ir, ivs);
        });
  }
  /// if (cond) then() else otherwise(), yielding values of the same types.
  ValueRange ifElse(Value cond, TypeRange types,
                    function_ref<SmallVector<Value>(IR &)> then,
                    function_ref<SmallVector<Value>(IR &)> otherwise) {
    auto op = scf::IfOp::create(b, types, cond, /*withElseRegion=*/true);
    for (auto [region, fn] : {std::pair{&op.getThenRegion(), then},
                              std::pair{&op.getElseRegion(), otherwise}}) {
      OpBuilder::InsertionGuard guard(b);
      // A result-less if comes with implicit yields: drop them before setting
      // the insertion point, which would otherwise point at the erased op.
      if (!region->front().empty())
        region->front().back().erase();
      b.setInsertionPointToEnd(&region->front());
      SmallVector<Value> results = fn(*this);
      scf::YieldOp::create(b, results);
    }
    return op.getResults();
  }
  void ifThen(Value cond, function_ref<void(IR &)> then) {
    auto op = scf::IfOp::create(b, TypeRange{}, cond, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(op.getThenRegion().front().getTerminator());
    then(*this);
  }
};

} // namespace mlir::moe::codegen

#endif // MOEC_LIB_CODEGEN_COMMON_LOOPBUILDER_H
