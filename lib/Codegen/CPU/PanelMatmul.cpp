//===- PanelMatmul.cpp - the CPU matmul micro-kernel ----------------------===//

#include "lib/Codegen/CPU/PanelMatmul.h"
#include "lib/Codegen/Common/FloatCodes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::cpu;
using namespace mlir::moe::codegen;

namespace {

/// acc[i] += a[r0 + i, k] * bv for each row of the tile.
SmallVector<Value> accumulateRows(IR &ir, Value a, Value r0, Value k, Value bv,
                                  ValueRange acc, int64_t P) {
  SmallVector<Value> next;
  for (int64_t i = 0; i < int64_t(acc.size()); ++i) {
    Value av = ir.load(a, {ir.add(r0, ir.idx(i)), k});
    next.push_back(vector::FMAOp::create(ir.b, ir.splat(av, P), bv, acc[i]));
  }
  return next;
}

/// As accumulateRows for a gated panel whose halves read different columns of
/// `a`: the gate half (the first P/2 columns) a[r0 + i, k], the up half
/// a[r0 + i, k + upColumn] (latent experts whose gate and up have separate
/// bases, so z holds gate's latent columns, then up's).
SmallVector<Value> accumulateSplitRows(IR &ir, Value a, Value r0, Value k,
                                       int64_t upColumn, Value bv,
                                       ValueRange acc, int64_t P) {
  auto halves = ir.b.getDenseI64ArrayAttr(
      llvm::to_vector(llvm::seq<int64_t>(0, P))); // concatenation
  Value kUp = ir.add(k, ir.idx(upColumn));
  SmallVector<Value> next;
  for (int64_t i = 0; i < int64_t(acc.size()); ++i) {
    Value row = ir.add(r0, ir.idx(i));
    Value gate = ir.splat(ir.load(a, {row, k}), P / 2);
    Value up = ir.splat(ir.load(a, {row, kUp}), P / 2);
    Value av = vector::ShuffleOp::create(ir.b, gate, up, halves);
    next.push_back(vector::FMAOp::create(ir.b, av, bv, acc[i]));
  }
  return next;
}

/// Row `row` of `a` at k as a vector<P>: a[row, k] splatted, or with a nonzero
/// `upColumn` (see accumulateSplitRows) a[row, k] in the gate half and
/// a[row, k + upColumn] in the up half.
Value rowOperand(IR &ir, Value a, Value row, Value k, int64_t upColumn,
                 int64_t P) {
  if (!upColumn)
    return ir.splat(ir.load(a, {row, k}), P);
  auto halves = ir.b.getDenseI64ArrayAttr(
      llvm::to_vector(llvm::seq<int64_t>(0, P))); // concatenation
  Value gate = ir.splat(ir.load(a, {row, k}), P / 2);
  Value up = ir.splat(ir.load(a, {row, ir.add(k, ir.idx(upColumn))}), P / 2);
  return vector::ShuffleOp::create(ir.b, gate, up, halves);
}

/// The tile's accumulators over k in [0, K) of integer levels, weights
/// staying 1 or 0.5 bytes in memory. Per group of k rows the scale and zero
/// point are loaded once. When the IR's dequantized weight is f32 (the exact
/// grid values), the scale is applied once per group: sum_k a_k (q_k - z) s =
/// s (sum_k a_k q_k) - s z (sum_k a_k), so a level costs one convert and the
/// FMAs, like a bf16 weight. When the IR says bf16, every level is
/// dequantized and rounded to bf16 as moe.dequantize does, then used. A
/// nonzero `upColumn` reads `a` as accumulateSplitRows does (quantized latent
/// factors); the sums of a for the zero points are then vectors, since the
/// halves sum different columns. A `kBound` (an expert's width) stops k there
/// instead of at K: the levels past it belong to removed channels.
/// FP8 (e4m3) and MXFP4 (e2m1) codes take the place of levels, decoded with
/// bit operations (FloatCodes.h); they have no zero points.
SmallVector<Value> quantizedRows(IR &ir, Value a, Value w, Value e, Value p,
                                 int64_t K, int64_t P, Value r0,
                                 ValueRange init, const QuantizedPanel &q,
                                 int64_t upColumn = 0, Value kBound = Value()) {
  auto f32s = VectorType::get({P}, ir.f32());
  auto bytes = VectorType::get({P}, ir.b.getIntegerType(8));
  Value zero = ir.idx(0);
  bool nibbles = q.bits == 4, perGroup = !q.roundToBF16, zeros = bool(q.zeros);
  int64_t rows = init.size();
  // (Every helper takes the loop body's builder: each body has its own.)
  auto levelsToF32 = [&](IR &ir, Value levels, bool isUnsigned) -> Value {
    // FP8 and MXFP4 codes decode to their exact values.
    if (q.format == LevelFormat::E4M3)
      return q.viaHalf ? decodeE4m3ViaHalf(ir, levels) : decodeE4m3(ir, levels);
    if (q.format == LevelFormat::E2M1)
      return q.viaHalf ? decodeE2m1ViaHalf(ir, levels) : decodeE2m1(ir, levels);
    return isUnsigned ? Value(arith::UIToFPOp::create(ir.b, f32s, levels))
                      : Value(arith::SIToFPOp::create(ir.b, f32s, levels));
  };
  auto roundedWeight = [&](IR &ir, Value f, Value scale,
                           Value zeroPoint) -> Value {
    // (level - zero) is exact in f32: one rounding of the product, then bf16
    // (round to nearest even on the bits: targets without AVX512-BF16 would
    // otherwise need a runtime-library call; weights are finite).
    Value w = ir.mul(zeroPoint ? ir.sub(f, zeroPoint) : f, scale);
    auto i32s = VectorType::get({P}, ir.b.getI32Type());
    auto splat = [&](int64_t v) {
      return ir.splat(arith::ConstantIntOp::create(ir.b, v, 32), P);
    };
    Value bits = arith::BitcastOp::create(ir.b, i32s, w);
    Value lsb = arith::AndIOp::create(
        ir.b, arith::ShRUIOp::create(ir.b, bits, splat(16)), splat(1));
    Value rounded = arith::AddIOp::create(
        ir.b, bits, arith::AddIOp::create(ir.b, lsb, splat(0x7FFF)));
    return arith::BitcastOp::create(
        ir.b, f32s, arith::AndIOp::create(ir.b, rounded, splat(-65536)));
  };
  // One k row of levels `f` (as f32) into the carried state: per-element mode
  // carries the accumulators; per-group mode the group's sums of a * q (and
  // of a, for the zero point: state[rows + i]).
  auto step = [&](IR &ir, Value k, Value f, Value scale, Value zeroPoint,
                  ValueRange state) -> SmallVector<Value> {
    if (!perGroup && upColumn)
      return accumulateSplitRows(ir, a, r0, k, upColumn,
                                 roundedWeight(ir, f, scale, zeroPoint), state,
                                 P);
    if (!perGroup)
      return accumulateRows(ir, a, r0, k,
                            roundedWeight(ir, f, scale, zeroPoint), state, P);
    SmallVector<Value> next(state.begin(), state.end());
    for (int64_t i = 0; i < rows; ++i) {
      Value row = ir.add(r0, ir.idx(i));
      if (upColumn) {
        Value av = rowOperand(ir, a, row, k, upColumn, P);
        next[i] = vector::FMAOp::create(ir.b, av, f, state[i]);
        if (zeros)
          next[rows + i] = ir.add(state[rows + i], av);
        continue;
      }
      Value av = ir.load(a, {row, k});
      next[i] = vector::FMAOp::create(ir.b, ir.splat(av, P), f, state[i]);
      if (zeros)
        next[rows + i] = ir.add(state[rows + i], av);
    }
    return next;
  };
  // Groups [g0, g0 + count) of k rows, each `length` long.
  // (`oddLength`: `length` may be odd, which 4-bit levels must handle.)
  auto groups = [&](Value gBegin, Value gEnd, Value length, bool oddLength,
                    ValueRange acc) -> SmallVector<Value> {
    ValueRange result = ir.forLoop(
        gBegin, gEnd, ir.idx(1), acc, [&](IR &ir, Value g, ValueRange acc) {
          Value scale = vector::LoadOp::create(ir.b, f32s, q.scales,
                                               ValueRange{e, p, g, zero});
          // Codes decoded through f16 come out divided by a power of two:
          // multiplying the scale by it is exact.
          if (q.viaHalf)
            scale = ir.mul(scale, ir.vf(q.format == LevelFormat::E4M3
                                            ? kE4m3HalfFactor
                                            : kE2m1HalfFactor,
                                        P));
          Value zeroPoint =
              zeros ? Value(vector::LoadOp::create(ir.b, f32s, q.zeros,
                                                   ValueRange{e, p, g, zero}))
                    : Value();
          SmallVector<Value> state(acc.begin(), acc.end());
          if (perGroup) {
            state.assign(rows, ir.vf(0.0, P));
            if (zeros)
              state.append(rows, upColumn ? ir.vf(0.0, P) : ir.f(0.0));
          }
          Value k0 = ir.mul(g, ir.idx(q.groupSize));
          Value pairsEnd =
              oddLength ? Value(arith::AndIOp::create(ir.b, length, ir.idx(-2)))
                        : length;
          ValueRange inner = ir.forLoop(
              ir.idx(0), pairsEnd, ir.idx(nibbles ? 2 : 1), state,
              [&](IR &ir, Value dk, ValueRange state) {
                Value k = ir.add(k0, dk);
                if (!nibbles) {
                  Value levels = vector::LoadOp::create(
                      ir.b, bytes, w, ValueRange{e, p, k, zero});
                  return step(ir, k, levelsToF32(ir, levels, false), scale,
                              zeroPoint, state);
                }
                // One byte holds rows k (low nibble) and k + 1 (high).
                Value pair = vector::LoadOp::create(
                    ir.b, bytes, w,
                    ValueRange{e, p, arith::DivUIOp::create(ir.b, k, ir.idx(2)),
                               zero});
                auto splatByte = [&](int64_t v) {
                  return ir.splat(arith::ConstantIntOp::create(ir.b, v, 8), P);
                };
                Value low = arith::AndIOp::create(ir.b, pair, splatByte(15));
                Value high = arith::ShRUIOp::create(ir.b, pair, splatByte(4));
                SmallVector<Value> next = step(
                    ir, k, levelsToF32(ir, low, true), scale, zeroPoint, state);
                return step(ir, ir.add(k, ir.idx(1)),
                            levelsToF32(ir, high, true), scale, zeroPoint,
                            next);
              });
          // An odd length ends inside a byte: its last row is the low nibble
          // alone (the high one is past the bound).
          if (oddLength)
            inner = ir.forLoop(
                pairsEnd, length, ir.idx(2), inner,
                [&](IR &ir, Value dk, ValueRange state) {
                  Value k = ir.add(k0, dk);
                  Value pair = vector::LoadOp::create(
                      ir.b, bytes, w,
                      ValueRange{e, p,
                                 arith::DivUIOp::create(ir.b, k, ir.idx(2)),
                                 zero});
                  Value low = arith::AndIOp::create(
                      ir.b, pair,
                      ir.splat(arith::ConstantIntOp::create(ir.b, 15, 8), P));
                  return step(ir, k, levelsToF32(ir, low, true), scale,
                              zeroPoint, state);
                });
          if (!perGroup)
            return SmallVector<Value>(inner.begin(), inner.end());
          // acc += s * sum(a q) - (s z) * sum(a).
          Value scaledZero = zeros ? ir.mul(zeroPoint, scale) : Value();
          SmallVector<Value> next;
          for (int64_t i = 0; i < rows; ++i) {
            Value sum = vector::FMAOp::create(ir.b, inner[i], scale, acc[i]);
            if (zeros)
              sum = vector::FMAOp::create(
                  ir.b,
                  upColumn
                      ? Value(arith::NegFOp::create(ir.b, inner[rows + i]))
                      : ir.splat(arith::NegFOp::create(ir.b, inner[rows + i]),
                                 P),
                  scaledZero, sum);
            next.push_back(sum);
          }
          return next;
        });
    return SmallVector<Value>(result.begin(), result.end());
  };
  // Whole groups, then the rows of a last partial group (K padded past the
  // weight's input width: its scales are zero).
  Value groupSize = ir.idx(q.groupSize);
  if (kBound) {
    // The bound's whole groups, then its partial one (none when the bound is
    // a multiple of the group size), whose length may be odd.
    Value whole = arith::DivUIOp::create(ir.b, kBound, groupSize);
    Value tail = ir.sub(kBound, ir.mul(whole, groupSize));
    Value end = arith::DivUIOp::create(
        ir.b, ir.add(kBound, ir.idx(q.groupSize - 1)), groupSize);
    SmallVector<Value> acc = groups(ir.idx(0), whole, groupSize, false, init);
    return groups(whole, end, tail, nibbles, acc);
  }
  int64_t whole = K / q.groupSize, tail = K % q.groupSize;
  SmallVector<Value> acc =
      groups(ir.idx(0), ir.idx(whole), groupSize, false, init);
  if (tail)
    acc = groups(ir.idx(whole), ir.idx(whole + 1), ir.idx(tail), false, acc);
  return acc;
}

} // namespace

void cpu::panelMatmul(IR &ir, Value a, Value w, Value e, Value p, int64_t K,
                      int64_t P, int64_t tile, Value begin, Value end,
                      function_ref<void(IR &, Value, Value)> epilogue,
                      const std::optional<QuantizedPanel> &quant,
                      int64_t upColumn, Value kBound) {
  auto wType = cast<MemRefType>(w.getType());
  auto loadType = VectorType::get({P}, wType.getElementType());
  auto accType = VectorType::get({P}, ir.f32());
  Value zero = ir.idx(0);
  auto tiles = [&](int64_t rows, Value from, Value to) {
    ir.forLoop(from, to, ir.idx(rows), {}, [&](IR &ir, Value r0, ValueRange) {
      SmallVector<Value> init(rows, ir.vf(0.0, P));
      SmallVector<Value> acc;
      if (quant) {
        acc = quantizedRows(ir, a, w, e, p, K, P, r0, init, *quant, upColumn,
                            kBound);
      } else {
        ValueRange sums = ir.forLoop(
            ir.idx(0), kBound ? kBound : ir.idx(K), ir.idx(1), init,
            [&](IR &ir, Value k, ValueRange acc) {
              Value bv = vector::LoadOp::create(ir.b, loadType, w,
                                                ValueRange{e, p, k, zero});
              if (loadType != accType)
                bv = arith::ExtFOp::create(ir.b, accType, bv);
              if (upColumn)
                return accumulateSplitRows(ir, a, r0, k, upColumn, bv, acc, P);
              return accumulateRows(ir, a, r0, k, bv, acc, P);
            });
        acc.assign(sums.begin(), sums.end());
      }
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
