//===- EmitLayer.cpp - a layer's native entry point, in upstream dialects -===//
//
// The generated function, for T tokens of hidden size H, E experts, top-k:
//   1. route      (parallel over tokens): logits, scores, selection ->
//   topk_ids/weights
//   2. dispatch   (sequential, O(T k)): per-expert counts, offsets, rows copied
//   in expert order
//   3. first projection (parallel over expert x column panel): x W1 with bias,
//   row scale
//      and activation in the micro-kernel's epilogue -> h
//   4. second projection (parallel over expert x column panel): h W2 + bias ->
//   y
//   5. the shared expert, when there is one: 3 and 4 over all tokens
//   6. combine    (parallel over tokens): out[t] = shared[t] + sum_j w[t,j]
//   y[row(t,j)]
// Matmul micro-kernel: a register tile of R rows x P columns (P/16 vectors a
// row with AVX-512) accumulated over K with one vector load of the packed
// weight and R broadcasts per step; see WeightPacking.h for the panel layout.
//
//===----------------------------------------------------------------------===//

#include "lib/Codegen/CPU/EmitLayer.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::cpu;

namespace {

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
      b.setInsertionPointToStart(&region->front());
      if (!region->front().empty())
        region->front()
            .back()
            .erase(); // the implicit yield of a result-less if
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

/// A memref<shape x element> over `base + byteOffset` (a pointer from the
/// caller): the descriptor is built in the LLVM dialect and cast to the memref
/// type, a cast the memref lowering folds away. Only the leading dimension may
/// be dynamic (`leading`).
Value viewOf(ImplicitLocOpBuilder &b, Value base, int64_t byteOffset,
             ArrayRef<int64_t> shape, Type element, Value leading = {},
             Value dynamicOffset = {}) {
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

Type elementTypeOf(ImplicitLocOpBuilder &b, const PackedTensor &t) {
  return t.dtype == MOE_DTYPE_BF16 ? Type(b.getBF16Type())
                                   : Type(b.getF32Type());
}

Value viewTensor(ImplicitLocOpBuilder &b, Value weights,
                 const PackedTensor &t) {
  return viewOf(b, weights, int64_t(t.offset), t.shape, elementTypeOf(b, t));
}

} // namespace

//===----------------------------------------------------------------------===//
// Expert projections
//===----------------------------------------------------------------------===//

namespace {

/// The activation of the first projection, on vectors: act(gate) * up, or
/// act(up) when the expert is ungated (gate null).
Value activate(IR &ir, FfnAttr ffn, Value gate, Value up) {
  int64_t n = cast<VectorType>(up.getType()).getNumElements();
  auto act = [&](Value x) -> Value {
    switch (ffn.getActivation()) {
    case Activation::Silu:
      return ir.mul(x, ir.sigmoid(x));
    case Activation::Gelu:
      return ir.mul(
          ir.mul(ir.vf(0.5, n), x),
          ir.add(ir.vf(1.0, n),
                 math::ErfOp::create(ir.b, ir.mul(x, ir.vf(M_SQRT1_2, n)))));
    case Activation::GeluTanh: {
      Value cube = ir.mul(ir.mul(x, x), x);
      Value inner = ir.mul(ir.vf(std::sqrt(2.0 / M_PI), n),
                           ir.add(x, ir.mul(ir.vf(0.044715, n), cube)));
      return ir.mul(ir.mul(ir.vf(0.5, n), x),
                    ir.add(ir.vf(1.0, n), math::TanhOp::create(ir.b, inner)));
    }
    case Activation::Relu:
      return ir.maxf(x, ir.vf(0.0, n));
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
  Value g = ir.minf(gate, ir.vf(limit, n));
  Value u = ir.maxf(ir.minf(up, ir.vf(limit, n)), ir.vf(-limit, n));
  return ir.mul(ir.mul(ir.add(u, ir.vf(1.0, n)), g),
                ir.sigmoid(ir.mul(ir.vf(alpha, n), g)));
}

/// Rows [begin, end) of `a` (memref<? x K x f32>) times panel `p` of expert `e`
/// of the packed `w` (memref<E x panels x K x P x bf16|f32>): each row's P
/// accumulated columns go to `epilogue(row, vector<P x f32>)`. Register tiles
/// of `tile` rows, then single rows.
void panelMatmul(IR &ir, Value a, Value w, Value e, Value p, int64_t K,
                 int64_t P, int64_t tile, Value begin, Value end,
                 function_ref<void(IR &, Value, Value)> epilogue) {
  auto wType = cast<MemRefType>(w.getType());
  auto loadType = VectorType::get({P}, wType.getElementType());
  auto accType = VectorType::get({P}, ir.f32());
  Value zero = ir.idx(0);
  auto tiles = [&](int64_t rows, Value from, Value to) {
    ir.forLoop(from, to, ir.idx(rows), {}, [&](IR &ir, Value r0, ValueRange) {
      SmallVector<Value> init(rows, ir.vf(0.0, P));
      ValueRange acc = ir.forLoop(
          ir.idx(0), ir.idx(K), ir.idx(1), init,
          [&](IR &ir, Value k, ValueRange acc) {
            Value bv = vector::LoadOp::create(ir.b, loadType, w,
                                              ValueRange{e, p, k, zero});
            if (loadType != accType)
              bv = arith::ExtFOp::create(ir.b, accType, bv);
            SmallVector<Value> next;
            for (int64_t i = 0; i < rows; ++i) {
              Value av = ir.load(a, {ir.add(r0, ir.idx(i)), k});
              next.push_back(
                  vector::FMAOp::create(ir.b, ir.splat(av, P), bv, acc[i]));
            }
            return next;
          });
      for (int64_t i = 0; i < rows; ++i)
        epilogue(ir, ir.add(r0, ir.idx(i)), acc[i]);
      return SmallVector<Value>();
    });
  };
  // Full tiles, then the remaining rows one by one.
  Value count = ir.sub(end, begin);
  Value full =
      ir.add(begin, ir.mul(arith::DivUIOp::create(ir.b, count, ir.idx(tile)),
                           ir.idx(tile)));
  tiles(tile, begin, full);
  tiles(1, full, end);
}

/// The packed weights of one feed-forward, viewed from the weights pointer.
struct FfnViews {
  Value w1, b1, w2, b2;
};

FfnViews viewFfn(ImplicitLocOpBuilder &b, Value weights, const PackedFfn &f) {
  FfnViews v;
  v.w1 = viewTensor(b, weights, *f.w1);
  v.w2 = viewTensor(b, weights, *f.w2);
  if (f.b1)
    v.b1 = viewTensor(b, weights, *f.b1);
  if (f.b2)
    v.b2 = viewTensor(b, weights, *f.b2);
  return v;
}

/// Both projections of a feed-forward over the rows [offsets[e], offsets[e+1])
/// of `a` (memref<? x H x f32>) for every expert e: h (memref<? x Kpad x f32>)
/// then y (memref<? x Hpad x f32>). `rowScales` (memref<? x f32>) scales each
/// row's input.
void emitFfn(IR &ir, const PackedFfn &f, const FfnViews &v, Value a,
             Value offsets, Value rowScales, Value h, Value y,
             const KernelShape &shape) {
  int64_t P = shape.panelWidth;
  ir.parallel({ir.idx(f.panels1), ir.idx(f.numExperts)}, [&](IR &ir,
                                                             ValueRange ivs) {
    Value p = ivs[0], e = ivs[1];
    Value begin = ir.load(offsets, {e}),
          end = ir.load(offsets, {ir.add(e, ir.idx(1))});
    panelMatmul(
        ir, a, v.w1, e, p, f.hidden, P, shape.rowTile, begin, end,
        [&](IR &ir, Value row, Value acc) {
          if (rowScales)
            acc = ir.mul(acc, ir.splat(ir.load(rowScales, {row}), P));
          if (v.b1)
            acc = ir.add(acc, vector::LoadOp::create(
                                  ir.b, VectorType::get({P}, ir.f32()), v.b1,
                                  ValueRange{e, ir.mul(p, ir.idx(P))}));
          Value out;
          int64_t columns = P;
          if (f.gated) {
            columns = P / 2;
            Value gate = vector::ExtractStridedSliceOp::create(ir.b, acc, {0},
                                                               {P / 2}, {1});
            Value up = vector::ExtractStridedSliceOp::create(ir.b, acc, {P / 2},
                                                             {P / 2}, {1});
            out = activate(ir, f.ffn, gate, up);
          } else {
            out = activate(ir, f.ffn, Value(), acc);
          }
          vector::StoreOp::create(ir.b, out, h,
                                  ValueRange{row, ir.mul(p, ir.idx(columns))});
        });
  });
  ir.parallel({ir.idx(f.panels2), ir.idx(f.numExperts)}, [&](IR &ir,
                                                             ValueRange ivs) {
    Value p = ivs[0], e = ivs[1];
    Value begin = ir.load(offsets, {e}),
          end = ir.load(offsets, {ir.add(e, ir.idx(1))});
    panelMatmul(ir, h, v.w2, e, p, f.widthPadded, P, shape.rowTile, begin, end,
                [&](IR &ir, Value row, Value acc) {
                  if (v.b2)
                    acc = ir.add(acc,
                                 vector::LoadOp::create(
                                     ir.b, VectorType::get({P}, ir.f32()), v.b2,
                                     ValueRange{e, ir.mul(p, ir.idx(P))}));
                  vector::StoreOp::create(
                      ir.b, acc, y, ValueRange{row, ir.mul(p, ir.idx(P))});
                });
  });
}

/// The widest vector length (<= 16) dividing `n`.
int64_t vectorLength(int64_t n) {
  for (int64_t v : {16, 8, 4, 2})
    if (n % v == 0)
      return v;
  return 1;
}

/// sum_h x[row, h] * w[wrow, h] for memref<? x H x f32> rows (wrow null: w is
/// 1-D [H]).
Value dot(IR &ir, Value x, Value row, Value w, Value wrow, int64_t H) {
  int64_t V = vectorLength(H);
  auto vt = VectorType::get({V}, ir.f32());
  Value acc = ir.forLoop(
      ir.idx(0), ir.idx(H), ir.idx(V), {ir.vf(0.0, V)},
      [&](IR &ir, Value h, ValueRange acc) {
        Value xv = vector::LoadOp::create(ir.b, vt, x, ValueRange{row, h});
        SmallVector<Value> wi =
            wrow ? SmallVector<Value>{wrow, h} : SmallVector<Value>{h};
        Value wv = vector::LoadOp::create(ir.b, vt, w, wi);
        return SmallVector<Value>{vector::FMAOp::create(ir.b, xv, wv, acc[0])};
      })[0];
  return vector::ReductionOp::create(ir.b, vector::CombiningKind::ADD, acc);
}

} // namespace

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

namespace {

/// One token's routing, written as straight-line code over k (a compile-time
/// constant) with loops over the E experts.
class RoutingEmitter {
public:
  RoutingEmitter(IR &ir, RoutingAttr routing, int64_t experts)
      : ir(ir), routing(routing), E(experts), k(routing.getK()) {}

  /// Fills ids[k] (index, -1 for unused slots) and weights[k] from `logits`
  /// (memref<E x f32>), with `correction` (memref<E x f32>) added to the scores
  /// only to choose.
  void emit(Value logits, Value correction, SmallVector<Value> &ids,
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

private:
  Value stackArray(int64_t n, Type type) {
    return memref::AllocaOp::create(ir.b, MemRefType::get({n}, type));
  }
  void clear(Value flags) {
    Value no = arith::ConstantIntOp::create(ir.b, ir.b.getI1Type(), 0);
    ir.forLoop(ir.idx(0), ir.idx(E),
               [&](IR &ir, Value e) { ir.store(no, flags, {e}); });
  }

  /// The untaken expert with the largest value (the lowest id on ties), marked
  /// taken.
  std::pair<Value, Value> pickBest(Value values, Value taken) {
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

  void scoreThenSelect(Value logits, Value correction, Value taken,
                       SmallVector<Value> &ids, SmallVector<Value> &weights) {
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
  void maskGroups(Value choice) {
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
  void sparsemixer(Value logits, Value taken, SmallVector<Value> &ids,
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

  IR &ir;
  RoutingAttr routing;
  int64_t E, k;
};

} // namespace

//===----------------------------------------------------------------------===//
// Scratch memory
//===----------------------------------------------------------------------===//

namespace {

/// The scratch buffers of one layer call, carved from a workspace the caller
/// owns (so repeated calls reuse memory instead of allocating and page-faulting
/// tens of MB). Each is [rows, columns] with rows = T * k (one per routing
/// slot) or T.
struct ScratchLayout {
  enum Buffer {
    Rank,
    Permuted,
    H,
    Y,
    RowScales,
    GateValues,
    SharedH,
    SharedY,
    Count
  };
  struct Entry {
    bool perSlot = true;
    int64_t columns = 0; // 0: not used by this layer
  };
  std::array<Entry, Count> entries;

  ScratchLayout(const LayerPlan &plan, const PackedLayer &packed) {
    entries[Rank] = {true, 1}; // index (8 bytes), like every entry's element
    entries[Permuted] = {true, plan.hidden};
    entries[H] = {true, packed.experts.widthPadded};
    entries[Y] = {true, packed.experts.hiddenPadded};
    if (plan.weightsScaleInput)
      entries[RowScales] = {true, 1};
    if (packed.sigmoidGate)
      entries[GateValues] = {false, 1};
    if (packed.shared) {
      entries[SharedH] = {false, packed.shared->widthPadded};
      entries[SharedY] = {false, packed.shared->hiddenPadded};
    }
  }

  /// Byte offsets of every buffer for `tokens` (i64) and the total; buffers
  /// start on 64-byte boundaries. Elements are reserved at 8 bytes (the rank
  /// buffer's index) for simplicity; the f32 buffers use half of theirs.
  std::pair<SmallVector<Value>, Value> offsets(ImplicitLocOpBuilder &b,
                                               Value tokens, int64_t k) const {
    Type i64 = b.getI64Type();
    auto c = [&](int64_t v) -> Value {
      return arith::ConstantIntOp::create(b, i64, v);
    };
    Value slots = arith::MulIOp::create(b, tokens, c(k));
    SmallVector<Value> result;
    Value next = c(0);
    for (const Entry &entry : entries) {
      result.push_back(next);
      if (!entry.columns)
        continue;
      Value bytes = arith::MulIOp::create(b, entry.perSlot ? slots : tokens,
                                          c(entry.columns * 8));
      Value rounded = arith::AndIOp::create(
          b, arith::AddIOp::create(b, bytes, c(63)), c(~int64_t(63)));
      next = arith::AddIOp::create(b, next, rounded);
    }
    return {result, next};
  }
};

} // namespace

//===----------------------------------------------------------------------===//
// The entry point
//===----------------------------------------------------------------------===//

LogicalResult cpu::emitLayerFunction(ModuleOp module, const LayerPlan &plan,
                                     const PackedLayer &packed,
                                     const KernelShape &shape) {
  MLIRContext *ctx = module.getContext();
  ctx->loadDialect<arith::ArithDialect, func::FuncDialect, LLVM::LLVMDialect,
                   math::MathDialect, memref::MemRefDialect, scf::SCFDialect,
                   vector::VectorDialect>();
  ImplicitLocOpBuilder b(func::FuncOp(plan.function).getLoc(), ctx);
  b.setInsertionPointToEnd(module.getBody());
  IR ir{b};

  auto ptr = LLVM::LLVMPointerType::get(ctx);
  Type i64 = b.getI64Type();
  // void moe_layer_L(const float *hidden, int64_t tokens, float *output,
  //                  int32_t *topk_ids, float *topk_weights,
  //                  const uint8_t *weights, uint8_t *workspace)
  auto function = func::FuncOp::create(
      b, "moe_layer_" + std::to_string(plan.layerIndex),
      b.getFunctionType({ptr, i64, ptr, ptr, ptr, ptr, ptr}, {}));
  Block *entry = function.addEntryBlock();
  b.setInsertionPointToStart(entry);
  Value hiddenPtr = entry->getArgument(0), tokens64 = entry->getArgument(1),
        outPtr = entry->getArgument(2), idsPtr = entry->getArgument(3),
        weightsOutPtr = entry->getArgument(4), weights = entry->getArgument(5),
        workspace = entry->getArgument(6);

  int64_t H = plan.hidden, E = plan.numExperts, k = plan.topK;
  int64_t dyn = ShapedType::kDynamic;
  Value T = arith::IndexCastOp::create(b, b.getIndexType(), tokens64);
  Value slots64 = arith::MulIOp::create(
      b, tokens64, arith::ConstantIntOp::create(b, i64, k));
  Value slots = ir.mul(T, ir.idx(k));
  Type f32 = b.getF32Type();
  Value x = viewOf(b, hiddenPtr, 0, {dyn, H}, f32, tokens64);
  Value out = viewOf(b, outPtr, 0, {dyn, H}, f32, tokens64);
  Value ids = viewOf(b, idsPtr, 0, {dyn}, b.getI32Type(), slots64);
  Value topkWeights = viewOf(b, weightsOutPtr, 0, {dyn}, f32, slots64);
  Value router = viewTensor(b, weights, *packed.router);
  Value routerBias =
      packed.routerBias ? viewTensor(b, weights, *packed.routerBias) : Value();
  Value correction = packed.correctionBias
                         ? viewTensor(b, weights, *packed.correctionBias)
                         : Value();
  Value sharedGate = packed.sigmoidGate
                         ? viewTensor(b, weights, *packed.sigmoidGate)
                         : Value();
  ScratchLayout scratch(plan, packed);
  SmallVector<Value> scratchOffsets = scratch.offsets(b, tokens64, k).first;
  auto carve = [&](ScratchLayout::Buffer buffer, ArrayRef<int64_t> shape,
                   Type type) -> Value {
    Value rows = scratch.entries[buffer].perSlot ? slots64 : tokens64;
    return viewOf(b, workspace, 0, shape, type, rows, scratchOffsets[buffer]);
  };
  Value gateValues =
      sharedGate ? carve(ScratchLayout::GateValues, {dyn}, f32) : Value();

  // 1. Routing, one token per iteration.
  ir.parallel({T}, [&](IR &ir, ValueRange ivs) {
    Value t = ivs[0];
    Value logits = memref::AllocaOp::create(ir.b, MemRefType::get({E}, f32));
    ir.forLoop(ir.idx(0), ir.idx(E), [&](IR &ir, Value e) {
      Value logit = dot(ir, x, t, router, e, H);
      if (routerBias)
        logit = ir.add(logit, ir.load(routerBias, {e}));
      ir.store(logit, logits, {e});
    });
    SmallVector<Value> chosen, chosenWeights;
    RoutingEmitter(ir, plan.routing, E)
        .emit(logits, correction, chosen, chosenWeights);
    for (int64_t j = 0; j < k; ++j) {
      Value slot = ir.add(ir.mul(t, ir.idx(k)), ir.idx(j));
      ir.store(ir.toI32(chosen[j]), ids, {slot});
      ir.store(chosenWeights[j], topkWeights, {slot});
    }
    if (sharedGate)
      ir.store(ir.sigmoid(dot(ir, x, t, sharedGate, ir.idx(0), H)), gateValues,
               {t}); // [1, H]
  });

  // 2. Dispatch: count per expert (up to the capacity), offsets, then place the
  // rows.
  Value counts =
      memref::AllocaOp::create(b, MemRefType::get({E + 1}, b.getIndexType()));
  Value offsets =
      memref::AllocaOp::create(b, MemRefType::get({E + 1}, b.getIndexType()));
  ir.forLoop(ir.idx(0), ir.idx(E + 1),
             [&](IR &ir, Value e) { ir.store(ir.idx(0), counts, {e}); });
  Value capacity = slots;
  if (plan.capacityFactor) {
    // ceil(c * T * k / E), as the reference evaluator computes it.
    Value exact = ir.div(
        ir.mul(arith::ConstantFloatOp::create(
                   b, b.getF64Type(), llvm::APFloat(*plan.capacityFactor)),
               arith::UIToFPOp::create(b, b.getF64Type(), slots64)),
        arith::ConstantFloatOp::create(b, b.getF64Type(),
                                       llvm::APFloat(double(E))));
    capacity = arith::IndexCastOp::create(
        b, b.getIndexType(),
        arith::FPToSIOp::create(b, i64, math::CeilOp::create(b, exact)));
  }
  // rank[s]: the slot's position among its expert's rows, or -1 when unused or
  // dropped.
  Value rank = carve(ScratchLayout::Rank, {dyn}, b.getIndexType());
  ir.forLoop(ir.idx(0), slots, [&](IR &ir, Value s) {
    Value expert = ir.load(ids, {s});
    Value valid = ir.cmpi(arith::CmpIPredicate::sge, expert, ir.i32(0));
    Value e = ir.select(valid, ir.toIndex(expert), ir.idx(E));
    Value count = ir.load(counts, {e});
    Value keep = arith::AndIOp::create(
        ir.b, valid, ir.cmpi(arith::CmpIPredicate::ult, count, capacity));
    ir.store(ir.select(keep, ir.add(count, ir.idx(1)), count), counts, {e});
    ir.store(ir.select(keep, count, ir.idx(-1)), rank, {s});
  });
  ir.store(ir.idx(0), offsets, {ir.idx(0)});
  ir.forLoop(ir.idx(0), ir.idx(E), [&](IR &ir, Value e) {
    Value next = ir.add(ir.load(offsets, {e}), ir.load(counts, {e}));
    ir.store(next, offsets, {ir.add(e, ir.idx(1))});
  });
  // N = T * k rows at most; rows past offsets[E] stay unused.
  Value permuted = carve(ScratchLayout::Permuted, {dyn, H}, f32);
  Value rowScales = plan.weightsScaleInput
                        ? carve(ScratchLayout::RowScales, {dyn}, f32)
                        : Value();
  int64_t V = vectorLength(H);
  auto vt = VectorType::get({V}, f32);
  ir.parallel({slots}, [&](IR &ir, ValueRange ivs) {
    Value s = ivs[0];
    Value r = ir.load(rank, {s});
    ir.ifThen(ir.cmpi(arith::CmpIPredicate::sge, r, ir.idx(0)), [&](IR &ir) {
      Value e = ir.toIndex(ir.load(ids, {s}));
      Value row = ir.add(ir.load(offsets, {e}), r);
      ir.store(row, rank, {s}); // from now on: the slot's row
      Value t = arith::DivUIOp::create(ir.b, s, ir.idx(k));
      ir.forLoop(
          ir.idx(0), ir.idx(H), ir.idx(V), {},
          [&](IR &ir, Value h, ValueRange) {
            Value v = vector::LoadOp::create(ir.b, vt, x, ValueRange{t, h});
            vector::StoreOp::create(ir.b, v, permuted, ValueRange{row, h});
            return SmallVector<Value>();
          });
      if (rowScales)
        ir.store(ir.load(topkWeights, {s}), rowScales, {row});
    });
  });

  // 3-4. The routed experts.
  const PackedFfn &experts = packed.experts;
  Value h = carve(ScratchLayout::H, {dyn, experts.widthPadded}, f32);
  Value y = carve(ScratchLayout::Y, {dyn, experts.hiddenPadded}, f32);
  emitFfn(ir, experts, viewFfn(b, weights, experts), permuted, offsets,
          rowScales, h, y, shape);

  // 5. The shared expert: one group holding every token.
  Value sharedOut;
  if (packed.shared) {
    const PackedFfn &shared = *packed.shared;
    Value bounds =
        memref::AllocaOp::create(b, MemRefType::get({2}, b.getIndexType()));
    ir.store(ir.idx(0), bounds, {ir.idx(0)});
    ir.store(T, bounds, {ir.idx(1)});
    Value sh = carve(ScratchLayout::SharedH, {dyn, shared.widthPadded}, f32);
    sharedOut = carve(ScratchLayout::SharedY, {dyn, shared.hiddenPadded}, f32);
    emitFfn(ir, shared, viewFfn(b, weights, shared), x, bounds, Value(), sh,
            sharedOut, shape);
  }

  // 6. Combine, one token per iteration: the shared expert's output, then the
  // experts'.
  bool unweighted = plan.weightsScaleInput;
  ir.parallel({T}, [&](IR &ir, ValueRange ivs) {
    Value t = ivs[0];
    Value gate = gateValues ? ir.load(gateValues, {t}) : Value();
    ir.forLoop(
        ir.idx(0), ir.idx(H), ir.idx(V), {},
        [&](IR &ir, Value hIdx, ValueRange) {
          Value acc = ir.vf(0.0, V);
          if (sharedOut) {
            acc = vector::LoadOp::create(ir.b, vt, sharedOut,
                                         ValueRange{t, hIdx});
            if (gate)
              acc = ir.mul(acc, ir.splat(gate, V));
          }
          for (int64_t j = 0; j < k; ++j) {
            Value s = ir.add(ir.mul(t, ir.idx(k)), ir.idx(j));
            Value row = ir.load(rank, {s});
            Value used = ir.cmpi(arith::CmpIPredicate::sge, row, ir.idx(0));
            acc = ir.ifElse(
                used, {vt},
                [&](IR &ir) -> SmallVector<Value> {
                  Value yv = vector::LoadOp::create(ir.b, vt, y,
                                                    ValueRange{row, hIdx});
                  if (!unweighted)
                    yv = ir.mul(yv, ir.splat(ir.load(topkWeights, {s}), V));
                  return {ir.add(acc, yv)};
                },
                [&](IR &) -> SmallVector<Value> { return {acc}; })[0];
          }
          vector::StoreOp::create(ir.b, acc, out, ValueRange{t, hIdx});
          return SmallVector<Value>();
        });
  });

  func::ReturnOp::create(b);

  // int64_t moe_layer_L_workspace_bytes(int64_t tokens): what the caller
  // provides.
  b.setInsertionPointToEnd(module.getBody());
  auto sizeFunction = func::FuncOp::create(
      b, "moe_layer_" + std::to_string(plan.layerIndex) + "_workspace_bytes",
      b.getFunctionType({i64}, {i64}));
  b.setInsertionPointToStart(sizeFunction.addEntryBlock());
  func::ReturnOp::create(
      b, scratch.offsets(b, sizeFunction.getArgument(0), k).second);
  return success();
}

void cpu::emitWeightsHash(ModuleOp module, llvm::StringRef hash) {
  OpBuilder b(module.getContext());
  b.setInsertionPointToStart(module.getBody());
  std::string value = hash.str() + '\0';
  auto type = LLVM::LLVMArrayType::get(b.getI8Type(), value.size());
  LLVM::GlobalOp::create(b, module.getLoc(), type, /*isConstant=*/true,
                         LLVM::Linkage::External, "moe_weights_hash",
                         b.getStringAttr(value));
}

LogicalResult cpu::lowerToLLVMDialect(ModuleOp module) {
  // exp/tanh/erf on vectors would otherwise become one libm call per lane (LLVM
  // has no vector exp on x86): the activation epilogue runs on every
  // intermediate element, so it takes MLIR's vectorizable polynomial
  // approximations (about 1 ulp for exp).
  {
    RewritePatternSet patterns(module.getContext());
    populateMathPolynomialApproximationPatterns(
        patterns, MathPolynomialApproximationOptions());
    if (failed(applyPatternsGreedily(module, std::move(patterns))))
      return module.emitError() << "cannot vectorize the activation functions";
  }
  // scf.parallel -> OpenMP first, so the outlined regions are still structured;
  // the memref lowering runs before scf -> cf (the OpenMP conversion leaves
  // alloca scopes that need structured control flow around them).
  const char *pipeline =
      "convert-scf-to-openmp, canonicalize, cse, "
      "convert-vector-to-scf{full-unroll=true}, lower-affine, "
      "convert-math-to-llvm, convert-math-to-libm, expand-strided-metadata, "
      "finalize-memref-to-llvm, convert-scf-to-cf, convert-vector-to-llvm, "
      "convert-arith-to-llvm, convert-index-to-llvm, convert-cf-to-llvm, "
      "convert-func-to-llvm, convert-openmp-to-llvm, convert-ub-to-llvm, "
      "reconcile-unrealized-casts, canonicalize";
  PassManager pm(module.getContext());
  if (failed(parsePassPipeline(pipeline, pm)))
    return module.emitError() << "cannot build the CPU lowering pipeline";
  if (failed(pm.run(module)))
    return module.emitError() << "lowering to the LLVM dialect failed";
  return success();
}
