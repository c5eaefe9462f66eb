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
#include "lib/Codegen/Common/Emitters.h"

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
using namespace mlir::moe::codegen;

namespace {

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
