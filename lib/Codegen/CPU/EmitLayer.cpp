//===- EmitLayer.cpp - a layer's native entry point, in upstream dialects -===//
//
// The generated function, for T tokens of hidden size H, E experts, top-k:
//   0. scale input (parallel over tokens, layers with moe.scale_channels only):
//   x * scales (a constant global) into the workspace, read as x from then on
//   1. route      (parallel over tokens): logits, scores, selection ->
//   topk_ids/weights
//   1b. latent stage (latent experts only; parallel over basis panel x group):
//   z = x B^T for every token and group, B the stacked bases (PackedLatent)
//   2. dispatch   (sequential, O(T k)): per-expert counts, offsets, rows copied
//   in expert order (latent experts: the expert's group's z columns)
//   3. first projection (parallel over expert x column panel): x W1 with bias,
//   row scale
//      and activation in the micro-kernel's epilogue -> h
//   4. second projection (parallel over expert x column panel): h W2 + bias ->
//   y
//   5. the shared expert, when there is one: 3 and 4 over all tokens
//   6. combine    (parallel over tokens): out[t] = shared[t] + sum_j w[t,j]
//   y[row(t,j)]
// Matmul micro-kernel: PanelMatmul.h; see WeightPacking.h for the panel layout.
//
//===----------------------------------------------------------------------===//

#include "lib/Codegen/CPU/EmitLayer.h"
#include "lib/Codegen/CPU/PanelMatmul.h"
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
  switch (t.dtype) {
  case MOE_DTYPE_BF16:
    return b.getBF16Type();
  case MOE_DTYPE_I8:
  case MOE_DTYPE_U8:
  case MOE_DTYPE_F8_E4M3: // codes the kernels decode themselves
    return b.getIntegerType(8);
  default:
    return b.getF32Type();
  }
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

/// The packed weights of one feed-forward, viewed from the weights pointer.
struct FfnViews {
  Value w1, b1, w2, b2;
  std::optional<QuantizedPanel> q1, q2;
  /// memref<E x i64>: each expert's width (LayerPlan::expertWidths); null when
  /// every expert has the full width.
  Value widths;
  /// Compact experts (PackedFfn::compact): memref<(E + 1) x i64> prefix sums
  /// of the experts' w1 panels, w2 stored rows and w2 groups (null without
  /// integer levels), where each expert's part of those tensors starts.
  Value firstPanelStart, downRowStart, downGroupStart;
};

std::optional<QuantizedPanel>
viewQuantization(ImplicitLocOpBuilder &b, Value weights,
                 const std::optional<PackedQuantization> &q,
                 const KernelShape &shape) {
  if (!q)
    return std::nullopt;
  QuantizedPanel panel;
  panel.viaHalf = shape.halfConversions && q->format != LevelFormat::Int;
  panel.format = q->format;
  panel.bits = q->bits;
  panel.groupSize = q->groupSize;
  panel.roundToBF16 = q->roundToBF16;
  panel.scales = viewTensor(b, weights, *q->scales);
  if (q->zeros)
    panel.zeros = viewTensor(b, weights, *q->zeros);
  return panel;
}

FfnViews viewFfn(ImplicitLocOpBuilder &b, Value weights, const PackedFfn &f,
                 const KernelShape &shape) {
  FfnViews v;
  v.w1 = viewTensor(b, weights, *f.w1);
  v.w2 = viewTensor(b, weights, *f.w2);
  v.q1 = viewQuantization(b, weights, f.q1, shape);
  v.q2 = viewQuantization(b, weights, f.q2, shape);
  if (f.b1)
    v.b1 = viewTensor(b, weights, *f.b1);
  if (f.b2)
    v.b2 = viewTensor(b, weights, *f.b2);
  return v;
}

/// Expert `e`'s width (FfnViews::widths) as an index.
Value expertWidth(IR &ir, const FfnViews &v, Value e) {
  return arith::IndexCastOp::create(ir.b, ir.b.getIndexType(),
                                    ir.load(v.widths, {e}));
}

/// Expert `e`'s part of a compact tensor (PackedWidths) as the
/// [1][panels][rows][P] memref the matmuls read as expert 0. `start` holds the
/// prefix sums locating it: in panels of `rows` rows (the first projection,
/// whose panels all have K rows), or with `rowsPerExpert` in rows of each of
/// `panels` panels (the down projection: expert e has start[e + 1] - start[e]).
Value compactPart(IR &ir, Value tensor, Value start, Value e, int64_t panels,
                  int64_t rows, int64_t P, bool rowsPerExpert) {
  auto loadIndex = [&](Value i) -> Value {
    return arith::IndexCastOp::create(ir.b, ir.b.getIndexType(),
                                      ir.load(start, {i}));
  };
  Value first = loadIndex(e), rowCount = ir.idx(rows);
  Value offset = ir.mul(first, ir.idx(rows * P));
  if (rowsPerExpert) {
    rowCount = ir.sub(loadIndex(ir.add(e, ir.idx(1))), first);
    offset = ir.mul(first, ir.idx(panels * P));
  }
  Value panelStride = ir.mul(rowCount, ir.idx(P));
  int64_t dyn = ShapedType::kDynamic;
  auto type = MemRefType::get(
      {1, panels, dyn, P}, cast<MemRefType>(tensor.getType()).getElementType(),
      StridedLayoutAttr::get(ir.b.getContext(), dyn, {dyn, dyn, P, 1}));
  return memref::ReinterpretCastOp::create(
      ir.b, type, tensor, OpFoldResult(offset),
      {ir.b.getIndexAttr(1), ir.b.getIndexAttr(panels), rowCount,
       ir.b.getIndexAttr(P)},
      {ir.mul(panelStride, ir.idx(panels)), panelStride, ir.b.getIndexAttr(P),
       ir.b.getIndexAttr(1)});
}

/// What expert `e`'s first (or down) projection reads: the weights, the
/// expert index to read them at, and their scales and zero points.
struct ExpertWeights {
  Value w, expert;
  std::optional<QuantizedPanel> q;
};

ExpertWeights expertWeights(IR &ir, const PackedFfn &f, const FfnViews &v,
                            Value e, bool first, int64_t P) {
  ExpertWeights weights{first ? v.w1 : v.w2, e, first ? v.q1 : v.q2};
  if (!f.compact)
    return weights;
  // Compact tensors: the expert's own part, read as expert 0.
  auto part = [&](Value tensor, Value start, const PackedTensor &packed) {
    return first ? compactPart(ir, tensor, start, e, f.panels1, packed.shape[1],
                               P, false)
                 : compactPart(ir, tensor, start, e, f.panels2, 0, P, true);
  };
  const std::optional<PackedQuantization> &q = first ? f.q1 : f.q2;
  weights.expert = ir.idx(0);
  weights.w = part(weights.w, first ? v.firstPanelStart : v.downRowStart,
                   first ? *f.w1 : *f.w2);
  if (q) {
    Value start = first ? v.firstPanelStart : v.downGroupStart;
    weights.q->scales = part(weights.q->scales, start, *q->scales);
    if (q->zeros)
      weights.q->zeros = part(weights.q->zeros, start, *q->zeros);
  }
  return weights;
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
    // A panel wholly past its expert's width computes nothing (no rows); the
    // second projection never reads its columns of h.
    if (v.widths) {
      Value firstColumn = ir.mul(p, ir.idx(f.gated ? P / 2 : P));
      Value needed = arith::CmpIOp::create(ir.b, arith::CmpIPredicate::ult,
                                           firstColumn, expertWidth(ir, v, e));
      end = arith::SelectOp::create(ir.b, needed, end, begin);
    }
    // Latent experts: `a` holds z rows and w1 the factors, K = rank.
    ExpertWeights w1 = expertWeights(ir, f, v, e, /*first=*/true, P);
    panelMatmul(
        ir, a, w1.w, w1.expert, p, f.latent ? f.latent->rank : f.hidden, P,
        shape.rowTile, begin, end,
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
        },
        w1.q, f.latent ? f.latent->upColumn : 0);
  });
  ir.parallel({ir.idx(f.panels2), ir.idx(f.numExperts)}, [&](IR &ir,
                                                             ValueRange ivs) {
    Value p = ivs[0], e = ivs[1];
    Value begin = ir.load(offsets, {e}),
          end = ir.load(offsets, {ir.add(e, ir.idx(1))});
    // h is read up to the expert's width only: its later columns were not
    // computed (skipped panels) or belong to removed channels.
    Value kBound = v.widths ? expertWidth(ir, v, e) : Value();
    ExpertWeights w2 = expertWeights(ir, f, v, e, /*first=*/false, P);
    panelMatmul(
        ir, h, w2.w, w2.expert, p, f.widthPadded, P, shape.rowTile, begin, end,
        [&](IR &ir, Value row, Value acc) {
          if (v.b2)
            acc = ir.add(acc, vector::LoadOp::create(
                                  ir.b, VectorType::get({P}, ir.f32()), v.b2,
                                  ValueRange{e, ir.mul(p, ir.idx(P))}));
          vector::StoreOp::create(ir.b, acc, y,
                                  ValueRange{row, ir.mul(p, ir.idx(P))});
        },
        w2.q, /*upColumn=*/0, kBound);
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
    ScaledInput,
    Latent,
    Count
  };
  struct Entry {
    bool perSlot = true;
    int64_t columns = 0; // 0: not used by this layer
  };
  std::array<Entry, Count> entries;

  ScratchLayout(const LayerPlan &plan, const PackedLayer &packed) {
    entries[Rank] = {true, 1}; // index (8 bytes), like every entry's element
    // Latent experts dispatch z rows (their group's) instead of x rows.
    const std::optional<PackedLatent> &latent = packed.experts.latent;
    entries[Permuted] = {true, latent ? latent->widthPadded : plan.hidden};
    if (latent)
      entries[Latent] = {false, latent->groups * latent->widthPadded};
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
    if (!plan.inputScales.empty())
      entries[ScaledInput] = {false, plan.hidden};
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

  // 0. The smoothed input (moe.scale_channels), when the layer has one: every
  // later stage reads x, so x becomes the scaled copy.
  if (!plan.inputScales.empty()) {
    std::string name =
        "moe_layer_" + std::to_string(plan.layerIndex) + "_input_scales";
    auto scalesType = MemRefType::get({H}, f32);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(module.getBody());
      memref::GlobalOp::create(
          b, name, b.getStringAttr("private"), scalesType,
          DenseElementsAttr::get(RankedTensorType::get({H}, f32),
                                 ArrayRef<float>(plan.inputScales)),
          /*constant=*/true, b.getI64IntegerAttr(64));
    }
    Value scales = memref::GetGlobalOp::create(b, scalesType, name);
    Value scaled = carve(ScratchLayout::ScaledInput, {dyn, H}, f32);
    int64_t V = vectorLength(H);
    auto vt = VectorType::get({V}, f32);
    ir.parallel({T}, [&](IR &ir, ValueRange ivs) {
      Value t = ivs[0];
      ir.forLoop(
          ir.idx(0), ir.idx(H), ir.idx(V), {},
          [&](IR &ir, Value h, ValueRange) {
            Value xv = vector::LoadOp::create(ir.b, vt, x, ValueRange{t, h});
            Value sv = vector::LoadOp::create(ir.b, vt, scales, ValueRange{h});
            vector::StoreOp::create(ir.b, ir.mul(xv, sv), scaled,
                                    ValueRange{t, h});
            return SmallVector<Value>();
          });
    });
    x = scaled;
  }

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

  // 1b. Latent experts: z = x [B_first; B_second]^T for every token and every
  // group of experts, one dense matmul over the stacked bases. Computing only
  // the groups a token's experts use would skip at most (groups - 1) / groups
  // of this stage, and MoLE uses few groups (usually one), so every group is
  // computed for every token.
  const std::optional<PackedLatent> &latent = packed.experts.latent;
  Value z;
  if (latent) {
    int64_t Z = latent->widthPadded, P = shape.panelWidth;
    z = carve(ScratchLayout::Latent, {dyn, latent->groups * Z}, f32);
    Value basis = viewTensor(b, weights, *latent->basis);
    // Quantized bases (latent-basis=quantize): integer levels, one "expert"
    // per group.
    std::optional<QuantizedPanel> basisQuantization =
        viewQuantization(b, weights, latent->basisQuantization, shape);
    ir.parallel(
        {ir.idx(latent->panels), ir.idx(latent->groups)},
        [&](IR &ir, ValueRange ivs) {
          Value p = ivs[0], g = ivs[1];
          Value column = ir.add(ir.mul(g, ir.idx(Z)), ir.mul(p, ir.idx(P)));
          panelMatmul(
              ir, x, basis, g, p, H, P, shape.rowTile, ir.idx(0), T,
              [&](IR &ir, Value row, Value acc) {
                vector::StoreOp::create(ir.b, acc, z, ValueRange{row, column});
              },
              basisQuantization);
        });
  }

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
  // Latent experts place the z columns of the slot's expert's group instead.
  Value source = latent ? z : x;
  int64_t rowWidth = latent ? latent->widthPadded : H;
  Value permuted = carve(ScratchLayout::Permuted, {dyn, rowWidth}, f32);
  Value rowScales = plan.weightsScaleInput
                        ? carve(ScratchLayout::RowScales, {dyn}, f32)
                        : Value();
  int64_t V = vectorLength(H);
  auto vt = VectorType::get({V}, f32);
  int64_t rowV = vectorLength(rowWidth);
  auto rowVt = VectorType::get({rowV}, f32);
  ir.parallel({slots}, [&](IR &ir, ValueRange ivs) {
    Value s = ivs[0];
    Value r = ir.load(rank, {s});
    ir.ifThen(ir.cmpi(arith::CmpIPredicate::sge, r, ir.idx(0)), [&](IR &ir) {
      Value e = ir.toIndex(ir.load(ids, {s}));
      Value row = ir.add(ir.load(offsets, {e}), r);
      ir.store(row, rank, {s}); // from now on: the slot's row
      Value t = arith::DivUIOp::create(ir.b, s, ir.idx(k));
      Value groupColumn =
          latent ? ir.mul(arith::DivUIOp::create(
                              ir.b, e, ir.idx(latent->expertsPerGroup)),
                          ir.idx(rowWidth))
                 : Value();
      ir.forLoop(
          ir.idx(0), ir.idx(rowWidth), ir.idx(rowV), {},
          [&](IR &ir, Value h, ValueRange) {
            Value column = groupColumn ? ir.add(groupColumn, h) : h;
            Value v = vector::LoadOp::create(ir.b, rowVt, source,
                                             ValueRange{t, column});
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
  FfnViews expertViews = viewFfn(b, weights, experts, shape);
  // A constant i64 table compiled into the code.
  auto constantTable = [&](StringRef suffix, ArrayRef<int64_t> values) {
    std::string name =
        "moe_layer_" + std::to_string(plan.layerIndex) + "_" + suffix.str();
    auto type = MemRefType::get({int64_t(values.size())}, i64);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(module.getBody());
      memref::GlobalOp::create(
          b, name, b.getStringAttr("private"), type,
          DenseElementsAttr::get(
              RankedTensorType::get({int64_t(values.size())}, i64), values),
          /*constant=*/true, b.getI64IntegerAttr(64));
    }
    return memref::GetGlobalOp::create(b, type, name).getResult();
  };
  // Experts of different widths (micro-expert pruning): a table the
  // projections bound their work by.
  if (!plan.expertWidths.empty())
    expertViews.widths = constantTable("expert_widths", plan.expertWidths);
  // Compact experts: where each expert's part of w1 and w2 starts.
  if (const std::optional<PackedWidths> &compact = experts.compact) {
    SmallVector<int64_t> panels{0}, rows{0}, groups{0};
    bool nibbles = experts.q2 && experts.q2->bits == 4;
    for (auto [firstPanels, downRows] :
         llvm::zip_equal(compact->firstPanels, compact->downRows)) {
      panels.push_back(panels.back() + firstPanels);
      rows.push_back(rows.back() +
                     (nibbles ? llvm::divideCeil(downRows, 2) : downRows));
      if (experts.q2)
        groups.push_back(groups.back() +
                         llvm::divideCeil(downRows, experts.q2->groupSize));
    }
    expertViews.firstPanelStart = constantTable("w1_panel_starts", panels);
    expertViews.downRowStart = constantTable("w2_row_starts", rows);
    if (experts.q2)
      expertViews.downGroupStart = constantTable("w2_group_starts", groups);
  }
  emitFfn(ir, experts, expertViews, permuted, offsets, rowScales, h, y, shape);

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
    emitFfn(ir, shared, viewFfn(b, weights, shared, shape), x, bounds, Value(),
            sh, sharedOut, shape);
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
