//===- EmitKernels.cpp - a layer's CUDA kernels and their launch plan -----===//
//
// Conventions of every kernel here:
// - the seven parameters of runtime/FORMAT.md (generic pointers; NVPTX infers
//   the global address space of kernel pointer parameters);
// - device scratch is carved from `workspace` at offsets that the host's
//   workspace query computes with the same code (DeviceScratch), so both sides
//   agree for every token count;
// - weights are viewed at offsets fixed when they were packed (the same
//   PackedLayer the weights file was written from).
//
//===----------------------------------------------------------------------===//

#include "lib/Codegen/GPU/EmitKernels.h"
#include "lib/Codegen/Common/Emitters.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <array>
#include <functional>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::codegen;
using cpu::LayerPlan;
using cpu::PackedFfn;
using cpu::PackedLayer;
using cpu::PackedTensor;

namespace {

// The tensor-core tile: 64 rows (4 warps x 16) by one 64-column weight panel,
// stepping K by 32 (two m16n8k16 steps) through a two-stage cp.async pipeline.
constexpr int64_t kTileRows = 64;
constexpr int64_t kPanel = 64;
constexpr int64_t kTileK = 32;
constexpr int64_t kMmaThreads = 128;
// Shared-memory rows are padded by 8 bf16 (16 bytes): row starts stay 16-byte
// aligned for cp.async and ldmatrix, and consecutive rows fall on different
// banks.
constexpr int64_t kPitchA = kTileK + 8;
constexpr int64_t kPitchB = kPanel + 8;
// Decode kernels: 256 threads = 8 column groups of 8 columns x 32 K lanes;
// rows of an expert in chunks of 8.
constexpr int64_t kDecodeThreads = 256;
constexpr int64_t kDecodeRows = 8;
// Hopper (sm_90a) form: one warpgroup computes a 64 x 64 tile with wgmma
// m64n64k16, fed by TMA loads of 64 x 64 bf16 tiles (128-byte rows, 128-byte
// swizzle) into a two-stage buffer guarded by mbarriers. Two tensor maps (A
// rows, B weights) per projection, at most four projections.
constexpr int64_t kWgmmaK = 64;
constexpr int64_t kStageBytes = 64 * 64 * 2;
constexpr int64_t kMaxTensorMaps = 8;

Value i64c(IR &ir, int64_t v) {
  return arith::ConstantIntOp::create(ir.b, ir.b.getI64Type(), v);
}
Value toI64(IR &ir, Value index) {
  return arith::IndexCastOp::create(ir.b, ir.b.getI64Type(), index);
}
Value toIndex64(IR &ir, Value i64) {
  return arith::IndexCastOp::create(ir.b, ir.b.getIndexType(), i64);
}
Value ceilDiv(IR &ir, Value x, Value y) {
  return arith::CeilDivUIOp::create(ir.b, x, y);
}
Value minIndex(IR &ir, Value x, Value y) {
  return arith::MinSIOp::create(ir.b, x, y);
}

//===----------------------------------------------------------------------===//
// Device scratch
//===----------------------------------------------------------------------===//

/// The device scratch of one call: each buffer is rows x rowBytes with rows =
/// 1, T or T*k, at 256-byte aligned offsets.
struct DeviceScratch {
  enum Buffer {
    Maps,       // encoded CUtensorMaps, 128 bytes each (sm_90a forms only)
    Meta,       // i32 counts[E+1], offsets[E+1], tileStarts[E+1]
    Logits,     // f32 [T, E]
    Rank,       // i32 [T*k]: a slot's position among its expert's rows, or -1
    Row,        // i32 [T*k]: a slot's row of the permuted buffer, or -1
    GateValues, // f32 [T]: the shared expert's sigmoid gate
    RowScales,  // f32 [T*k rows]: Llama-4's routing weight on the input
    Permuted,   // bf16 [T*k, Kx]: the routed rows in expert order
    H,          // bf16 [T*k, widthPadded]
    Y,          // f32 [T*k, hiddenPadded]
    Xb,         // bf16 [T, Kx]: every token, for the shared expert
    SharedH,    // bf16 [T, shared widthPadded]
    SharedY,    // f32 [T, shared hiddenPadded]
    ScaledX,    // f32 [T, H]: the smoothed input (moe.scale_channels)
    Count
  };
  enum class Rows { None, One, Tokens, Slots };
  struct Entry {
    Rows rows = Rows::None;
    int64_t rowBytes = 0;
  };
  std::array<Entry, Count> entries;
  int64_t k = 1;

  DeviceScratch(const LayerPlan &plan, const PackedLayer &packed)
      : k(plan.topK) {
    int64_t E = plan.numExperts;
    const PackedFfn &f = packed.experts;
    entries[Maps] = {Rows::One, kMaxTensorMaps * 128};
    entries[Meta] = {Rows::One, 3 * (E + 1) * 4};
    entries[Logits] = {Rows::Tokens, E * 4};
    entries[Rank] = {Rows::Slots, 4};
    entries[Row] = {Rows::Slots, 4};
    if (packed.sigmoidGate)
      entries[GateValues] = {Rows::Tokens, 4};
    if (plan.weightsScaleInput)
      entries[RowScales] = {Rows::Slots, 4};
    entries[Permuted] = {Rows::Slots, f.hiddenRows * 2};
    entries[H] = {Rows::Slots, f.widthPadded * 2};
    entries[Y] = {Rows::Slots, f.hiddenPadded * 4};
    if (packed.shared) {
      entries[Xb] = {Rows::Tokens, packed.shared->hiddenRows * 2};
      entries[SharedH] = {Rows::Tokens, packed.shared->widthPadded * 2};
      entries[SharedY] = {Rows::Tokens, packed.shared->hiddenPadded * 4};
    }
    if (!plan.inputScales.empty())
      entries[ScaledX] = {Rows::Tokens, plan.hidden * 4};
  }

  /// Byte offsets (i64) of every buffer for `tokens` (i64), and the total.
  std::pair<SmallVector<Value>, Value> offsets(IR &ir, Value tokens) const {
    Value slots = ir.mul(tokens, i64c(ir, k));
    SmallVector<Value> result;
    Value next = i64c(ir, 0);
    for (const Entry &entry : entries) {
      result.push_back(next);
      if (entry.rows == Rows::None)
        continue;
      Value rows = entry.rows == Rows::One      ? i64c(ir, 1)
                   : entry.rows == Rows::Tokens ? tokens
                                                : slots;
      Value bytes = ir.mul(rows, i64c(ir, entry.rowBytes));
      Value rounded = arith::AndIOp::create(ir.b, ir.add(bytes, i64c(ir, 255)),
                                            i64c(ir, ~int64_t(255)));
      next = ir.add(next, rounded);
    }
    return {result, next};
  }
};

//===----------------------------------------------------------------------===//
// Kernel scaffolding
//===----------------------------------------------------------------------===//

Type elementTypeOf(IR &ir, const PackedTensor &t) {
  return t.dtype == MOE_DTYPE_BF16 ? Type(ir.b.getBF16Type()) : Type(ir.f32());
}

/// What a kernel body sees: the parameters, T and the scratch views. Its
/// helpers build at `ir`'s insertion point: call them outside loops (ifs share
/// the builder, loops do not), and hand loop bodies what they return.
struct KernelContext {
  IR &ir;
  const LayerPlan &plan;
  const PackedLayer &packed;
  const DeviceScratch &scratch;
  Value hidden, tokens64, output, ids, topkWeights, weights, workspace;
  Value T, slots; // index
  SmallVector<Value> offsets;

  int64_t E() const { return plan.numExperts; }
  int64_t k() const { return plan.topK; }
  int64_t H() const { return plan.hidden; }

  /// The parameters as memrefs: hidden and output [T, H] f32, topk_ids and
  /// topk_weights [T*k] (i32, f32). A layer with a smoothed input reads the
  /// copy scale_input wrote instead of the parameter.
  Value hiddenView() {
    if (!plan.inputScales.empty())
      return scratchView(DeviceScratch::ScaledX, ir.f32(), H());
    return tokenRows(hidden);
  }
  Value outputView() { return tokenRows(output); }
  Value idsView() { return slotVector(ids, ir.b.getI32Type()); }
  Value topkWeightsView() { return slotVector(topkWeights, ir.f32()); }

  /// A view of scratch buffer `buffer` as memref<rows x columns x element>
  /// (columns omitted for 1-D).
  Value scratchView(DeviceScratch::Buffer buffer, Type element,
                    std::optional<int64_t> columns = std::nullopt) {
    const DeviceScratch::Entry &entry = scratch.entries[buffer];
    Value rows = entry.rows == DeviceScratch::Rows::One      ? i64c(ir, 1)
                 : entry.rows == DeviceScratch::Rows::Tokens ? tokens64
                                                             : toI64(ir, slots);
    int64_t dyn = ShapedType::kDynamic;
    SmallVector<int64_t> shape = columns ? SmallVector<int64_t>{dyn, *columns}
                                         : SmallVector<int64_t>{dyn};
    return viewOf(ir.b, workspace, 0, shape, element, rows, offsets[buffer]);
  }
  /// Meta: counts, offsets and tileStarts, each memref<E+1 x i32>.
  Value meta(int64_t which) {
    Value base =
        ir.add(offsets[DeviceScratch::Meta], i64c(ir, which * (E() + 1) * 4));
    return viewOf(ir.b, workspace, 0, {E() + 1}, ir.b.getI32Type(), Value(),
                  base);
  }
  Value tokenRows(Value pointer) {
    return viewOf(ir.b, pointer, 0, {ShapedType::kDynamic, H()}, ir.f32(),
                  tokens64);
  }
  Value slotVector(Value pointer, Type element) {
    return viewOf(ir.b, pointer, 0, {ShapedType::kDynamic}, element,
                  toI64(ir, slots));
  }
  Value weight(const PackedTensor &t) {
    return viewOf(ir.b, weights, int64_t(t.offset), t.shape,
                  elementTypeOf(ir, t));
  }
  Value threadId() { return gpu::ThreadIdOp::create(ir.b, gpu::Dimension::x); }
  Value blockId(gpu::Dimension d = gpu::Dimension::x) {
    return gpu::BlockIdOp::create(ir.b, d);
  }
};

/// Builds the kernels of one layer into gpu.modules and records their names.
class KernelFactory {
public:
  KernelFactory(ModuleOp container, const LayerPlan &plan,
                const PackedLayer &packed, const DeviceScratch &scratch,
                Attribute target)
      : container(container), plan(plan), packed(packed), scratch(scratch),
        target(target) {}

  /// Adds kernel `moe_layer_<L>_<suffix>` and returns its index. `shared`
  /// lists the shared-memory buffers the body gets (as memref.globals).
  int64_t add(StringRef suffix, ArrayRef<MemRefType> shared,
              function_ref<void(KernelContext &, ValueRange)> body) {
    MLIRContext *ctx = container.getContext();
    std::string name =
        "moe_layer_" + std::to_string(plan.layerIndex) + "_" + suffix.str();
    Location loc = func::FuncOp(plan.function).getLoc();
    OpBuilder ob(ctx);
    ob.setInsertionPointToEnd(container.getBody());
    auto module =
        gpu::GPUModuleOp::create(ob, loc, name, ArrayRef<Attribute>{target});
    ob.setInsertionPointToStart(module.getBody());
    SmallVector<std::string> globals;
    for (auto [i, type] : llvm::enumerate(shared)) {
      globals.push_back("smem" + std::to_string(i));
      memref::GlobalOp::create(ob, loc, globals.back(),
                               ob.getStringAttr("private"), type, Attribute(),
                               /*constant=*/false,
                               // 128-byte swizzled TMA tiles need 1024.
                               ob.getI64IntegerAttr(1024));
    }
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    auto type =
        ob.getFunctionType({ptr, ob.getI64Type(), ptr, ptr, ptr, ptr, ptr}, {});
    auto function = gpu::GPUFuncOp::create(ob, loc, name, type);
    function->setAttr(gpu::GPUDialect::getKernelFuncAttrName(),
                      ob.getUnitAttr());
    Block &entry = function.getBody().front();
    ImplicitLocOpBuilder b(loc, ctx);
    b.setInsertionPointToStart(&entry);
    IR ir{b};
    KernelContext kc{ir,
                     plan,
                     packed,
                     scratch,
                     entry.getArgument(0),
                     entry.getArgument(1),
                     entry.getArgument(2),
                     entry.getArgument(3),
                     entry.getArgument(4),
                     entry.getArgument(5),
                     entry.getArgument(6),
                     Value(),
                     Value(),
                     {}};
    kc.T = toIndex64(ir, kc.tokens64);
    kc.slots = ir.mul(kc.T, ir.idx(plan.topK));
    kc.offsets = scratch.offsets(ir, kc.tokens64).first;
    SmallVector<Value> buffers;
    for (auto [i, t] : llvm::enumerate(shared))
      buffers.push_back(memref::GetGlobalOp::create(b, t, globals[i]));
    body(kc, buffers);
    gpu::ReturnOp::create(b);
    names.push_back(name);
    return int64_t(names.size()) - 1;
  }

  std::vector<std::string> names;

private:
  ModuleOp container;
  const LayerPlan &plan;
  const PackedLayer &packed;
  const DeviceScratch &scratch;
  Attribute target;
};

MemRefType sharedBuffer(MLIRContext *ctx, ArrayRef<int64_t> shape,
                        Type element) {
  return MemRefType::get(
      shape, element, MemRefLayoutAttrInterface(),
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup));
}

/// The sum of `v` over the 32 lanes of a warp, in every lane.
Value warpSum(IR &ir, Value v, int64_t from = 16, int64_t to = 1) {
  for (int64_t offset = from; offset >= to; offset /= 2)
    v = ir.add(v, gpu::ShuffleOp::create(ir.b, v, int32_t(offset), 32,
                                         gpu::ShuffleMode::XOR)
                      .getShuffleResult());
  return v;
}

//===----------------------------------------------------------------------===//
// Input scaling
//===----------------------------------------------------------------------===//

/// scale_input (layers with a moe.scale_channels input): block t writes token
/// t times the per-channel scales, held as a constant global of the kernel's
/// module, into the workspace every later kernel reads as the input.
void scaleInput(KernelContext &kc) {
  IR &ir = kc.ir;
  int64_t H = kc.H();
  std::string name =
      "moe_layer_" + std::to_string(kc.plan.layerIndex) + "_input_scales";
  auto type = MemRefType::get({H}, ir.f32());
  {
    auto module = ir.b.getInsertionBlock()
                      ->getParentOp()
                      ->getParentOfType<gpu::GPUModuleOp>();
    OpBuilder ob(module.getBody(), module.getBody()->begin());
    memref::GlobalOp::create(
        ob, ir.b.getLoc(), name, ob.getStringAttr("private"), type,
        DenseElementsAttr::get(RankedTensorType::get({H}, ir.f32()),
                               ArrayRef<float>(kc.plan.inputScales)),
        /*constant=*/true, ob.getI64IntegerAttr(16));
  }
  Value scales = memref::GetGlobalOp::create(ir.b, type, name);
  Value t = kc.blockId();
  Value x = kc.tokenRows(kc.hidden);
  Value scaled = kc.scratchView(DeviceScratch::ScaledX, ir.f32(), H);
  ir.forLoop(kc.threadId(), ir.idx(H), ir.idx(128), {},
             [&](IR &ir, Value h, ValueRange) {
               ir.store(ir.mul(ir.load(x, {t, h}), ir.load(scales, {h})),
                        scaled, {t, h});
               return SmallVector<Value>();
             });
}

//===----------------------------------------------------------------------===//
// Routing and dispatch
//===----------------------------------------------------------------------===//

/// route_logits: warp w of the grid computes logit (t, e) for w = t*(E+g) + e,
/// where e == E is the shared expert's sigmoid gate when there is one.
void routeLogits(KernelContext &kc) {
  IR &ir = kc.ir;
  int64_t E = kc.E(), H = kc.H();
  bool gate = kc.packed.sigmoidGate != nullptr;
  int64_t columns = E + (gate ? 1 : 0);
  Value tid = kc.threadId(), bid = kc.blockId();
  // Block 0 clears the counters route_select increments.
  ir.ifThen(ir.cmpi(arith::CmpIPredicate::eq, bid, ir.idx(0)), [&](IR &ir) {
    Value counts = kc.meta(0);
    ir.forLoop(tid, ir.idx(E + 1), ir.idx(256), {},
               [&](IR &ir, Value e, ValueRange) {
                 ir.store(ir.i32(0), counts, {e});
                 return SmallVector<Value>();
               });
  });
  Value warp = ir.add(ir.mul(bid, ir.idx(8)),
                      arith::DivUIOp::create(ir.b, tid, ir.idx(32)));
  Value lane = arith::RemUIOp::create(ir.b, tid, ir.idx(32));
  Value t = arith::DivUIOp::create(ir.b, warp, ir.idx(columns));
  Value e = arith::RemUIOp::create(ir.b, warp, ir.idx(columns));
  ir.ifThen(ir.cmpi(arith::CmpIPredicate::ult, t, kc.T), [&](IR &ir) {
    Value x = kc.hiddenView();
    Value router = kc.weight(*kc.packed.router);
    auto dotWith = [&](IR &ir, Value w, Value row) {
      Value partial = ir.forLoop(
          lane, ir.idx(H), ir.idx(32), {ir.f(0.0)},
          [&](IR &ir, Value h, ValueRange acc) {
            Value xv = ir.load(x, {t, h});
            Value wv = row ? ir.load(w, {row, h}) : ir.load(w, {ir.idx(0), h});
            return SmallVector<Value>{ir.add(acc[0], ir.mul(xv, wv))};
          })[0];
      return warpSum(ir, partial);
    };
    Value isGate = ir.cmpi(arith::CmpIPredicate::eq, e, ir.idx(E));
    auto writeLogit = [&](IR &ir) {
      Value logit = dotWith(ir, router, e);
      if (kc.packed.routerBias)
        logit = ir.add(logit, ir.load(kc.weight(*kc.packed.routerBias), {e}));
      ir.ifThen(
          ir.cmpi(arith::CmpIPredicate::eq, lane, ir.idx(0)), [&](IR &ir) {
            Value logits = kc.scratchView(DeviceScratch::Logits, ir.f32(), E);
            ir.store(logit, logits, {t, e});
          });
    };
    if (!gate) {
      writeLogit(ir);
      return;
    }
    ir.ifElse(
        isGate, {},
        [&](IR &ir) -> SmallVector<Value> {
          Value g = ir.sigmoid(
              dotWith(ir, kc.weight(*kc.packed.sigmoidGate), Value()));
          ir.ifThen(
              ir.cmpi(arith::CmpIPredicate::eq, lane, ir.idx(0)), [&](IR &ir) {
                ir.store(g, kc.scratchView(DeviceScratch::GateValues, ir.f32()),
                         {t});
              });
          return {};
        },
        [&](IR &ir) -> SmallVector<Value> {
          writeLogit(ir);
          return {};
        });
  });
}

/// route_select: thread t routes token t; dropless layers also take each
/// slot's rank within its expert by an atomic increment of the expert's count
/// (the order of rows inside an expert does not change any result).
void routeSelect(KernelContext &kc) {
  IR &ir = kc.ir;
  int64_t E = kc.E(), k = kc.k();
  Value t = ir.add(ir.mul(kc.blockId(), ir.idx(128)), kc.threadId());
  ir.ifThen(ir.cmpi(arith::CmpIPredicate::ult, t, kc.T), [&](IR &ir) {
    Value rowBytes = toI64(ir, ir.mul(t, ir.idx(E * 4)));
    Value logits = viewOf(ir.b, kc.workspace, 0, {E}, ir.f32(), Value(),
                          ir.add(kc.offsets[DeviceScratch::Logits], rowBytes));
    Value correction = kc.packed.correctionBias
                           ? kc.weight(*kc.packed.correctionBias)
                           : Value();
    SmallVector<Value> chosen, chosenWeights;
    RoutingEmitter(ir, kc.plan.routing, E)
        .emit(logits, correction, chosen, chosenWeights);
    Value ids = kc.idsView(), weights = kc.topkWeightsView();
    Value rank = kc.scratchView(DeviceScratch::Rank, ir.b.getI32Type());
    Value counts = kc.meta(0);
    for (int64_t j = 0; j < k; ++j) {
      Value slot = ir.add(ir.mul(t, ir.idx(k)), ir.idx(j));
      ir.store(ir.toI32(chosen[j]), ids, {slot});
      ir.store(chosenWeights[j], weights, {slot});
      if (kc.plan.capacityFactor)
        continue; // dispatch_rank ranks in slot order
      Value used = ir.cmpi(arith::CmpIPredicate::sge, chosen[j], ir.idx(0));
      Value r = ir.ifElse(
          used, {ir.b.getI32Type()},
          [&](IR &ir) -> SmallVector<Value> {
            return {memref::AtomicRMWOp::create(
                ir.b, arith::AtomicRMWKind::addi, ir.i32(1), counts,
                ValueRange{chosen[j]})};
          },
          [&](IR &ir) -> SmallVector<Value> { return {ir.i32(-1)}; })[0];
      ir.store(r, rank, {slot});
    }
  });
}

/// dispatch_rank (capacity-limited layers): thread e walks the slots in order
/// and keeps the first `capacity` of expert e, as the reference does.
void dispatchRank(KernelContext &kc) {
  IR &ir = kc.ir;
  int64_t E = kc.E();
  Value slots64 = toI64(ir, kc.slots);
  // capacity = ceil(c * T * k / E), computed without a libdevice call.
  Value exact =
      ir.div(ir.mul(arith::ConstantFloatOp::create(
                        ir.b, ir.b.getF64Type(),
                        llvm::APFloat(*kc.plan.capacityFactor)),
                    arith::UIToFPOp::create(ir.b, ir.b.getF64Type(), slots64)),
             arith::ConstantFloatOp::create(ir.b, ir.b.getF64Type(),
                                            llvm::APFloat(double(E))));
  Value floor = arith::FPToSIOp::create(ir.b, ir.b.getI64Type(), exact);
  Value below =
      ir.cmpf(arith::CmpFPredicate::OLT,
              arith::SIToFPOp::create(ir.b, ir.b.getF64Type(), floor), exact);
  Value capacity = arith::TruncIOp::create(
      ir.b, ir.b.getI32Type(),
      ir.select(below, ir.add(floor, i64c(ir, 1)), floor));
  Value ids = kc.idsView();
  Value rank = kc.scratchView(DeviceScratch::Rank, ir.b.getI32Type());
  Value counts = kc.meta(0);
  ir.forLoop(kc.threadId(), ir.idx(E), ir.idx(256), {},
             [&](IR &ir, Value e, ValueRange) {
               Value e32 = ir.toI32(e);
               Value count = ir.forLoop(
                   ir.idx(0), kc.slots, ir.idx(1), {ir.i32(0)},
                   [&](IR &ir, Value s, ValueRange acc) {
                     Value mine = ir.cmpi(arith::CmpIPredicate::eq,
                                          ir.load(ids, {s}), e32);
                     Value keep = arith::AndIOp::create(
                         ir.b, mine,
                         ir.cmpi(arith::CmpIPredicate::slt, acc[0], capacity));
                     ir.ifThen(mine, [&](IR &ir) {
                       ir.store(ir.select(keep, acc[0], ir.i32(-1)), rank, {s});
                     });
                     return SmallVector<Value>{
                         ir.select(keep, ir.add(acc[0], ir.i32(1)), acc[0])};
                   })[0];
               ir.store(count, counts, {e});
               return SmallVector<Value>();
             });
  // Slots no expert claimed (top-p's unused ones) are not ranked above.
  ir.forLoop(kc.threadId(), kc.slots, ir.idx(256), {},
             [&](IR &ir, Value s, ValueRange) {
               ir.ifThen(ir.cmpi(arith::CmpIPredicate::slt, ir.load(ids, {s}),
                                 ir.i32(0)),
                         [&](IR &ir) { ir.store(ir.i32(-1), rank, {s}); });
               return SmallVector<Value>();
             });
}

/// dispatch_offsets: one thread turns the counts into row offsets and row-tile
/// offsets (E is at most a few hundred).
void dispatchOffsets(KernelContext &kc) {
  IR &ir = kc.ir;
  int64_t E = kc.E();
  ir.ifThen(
      ir.cmpi(arith::CmpIPredicate::eq, kc.threadId(), ir.idx(0)), [&](IR &ir) {
        Value counts = kc.meta(0), offsets = kc.meta(1), tiles = kc.meta(2);
        ir.store(ir.i32(0), offsets, {ir.idx(0)});
        ir.store(ir.i32(0), tiles, {ir.idx(0)});
        ir.forLoop(ir.idx(0), ir.idx(E), [&](IR &ir, Value e) {
          Value n = ir.load(counts, {e});
          Value next = ir.add(e, ir.idx(1));
          ir.store(ir.add(ir.load(offsets, {e}), n), offsets, {next});
          Value tileCount =
              arith::CeilDivUIOp::create(ir.b, n, ir.i32(kTileRows));
          ir.store(ir.add(ir.load(tiles, {e}), tileCount), tiles, {next});
        });
      });
}

/// Converts row `from` of f32 `x` [?, H] to bf16 row `to` of `dst` [?, Kx],
/// zero-filling columns H..Kx; the block's threads stride over columns.
void copyRowToBF16(KernelContext &kc, Value x, Value from, Value dst, Value to,
                   int64_t Kx) {
  IR &ir = kc.ir;
  int64_t H = kc.H();
  ir.forLoop(
      kc.threadId(), ir.idx(Kx), ir.idx(128), {},
      [&](IR &ir, Value h, ValueRange) {
        Value inside = ir.cmpi(arith::CmpIPredicate::ult, h, ir.idx(H));
        Value v = ir.ifElse(
            inside, {ir.f32()},
            [&](IR &ir) -> SmallVector<Value> {
              return {ir.load(x, {from, h})};
            },
            [&](IR &ir) -> SmallVector<Value> { return {ir.f(0.0)}; })[0];
        ir.store(arith::TruncFOp::create(ir.b, ir.b.getBF16Type(), v), dst,
                 {to, h});
        return SmallVector<Value>();
      });
}

/// dispatch_scatter: block s places slot s's token at its expert's row.
void dispatchScatter(KernelContext &kc) {
  IR &ir = kc.ir;
  int64_t k = kc.k();
  Value s = kc.blockId();
  Value t = arith::DivUIOp::create(ir.b, s, ir.idx(k));
  Value x = kc.hiddenView();
  Value ids = kc.idsView();
  Value rank = kc.scratchView(DeviceScratch::Rank, ir.b.getI32Type());
  Value rowOf = kc.scratchView(DeviceScratch::Row, ir.b.getI32Type());
  Value r = ir.load(rank, {s});
  Value used = ir.cmpi(arith::CmpIPredicate::sge, r, ir.i32(0));
  Value e = ir.toIndex(ir.select(used, ir.load(ids, {s}), ir.i32(0)));
  Value row32 =
      ir.select(used, ir.add(ir.load(kc.meta(1), {e}), r), ir.i32(-1));
  ir.ifThen(ir.cmpi(arith::CmpIPredicate::eq, kc.threadId(), ir.idx(0)),
            [&](IR &ir) {
              ir.store(row32, rowOf, {s});
              if (kc.plan.weightsScaleInput)
                ir.ifThen(used, [&](IR &ir) {
                  ir.store(ir.load(kc.topkWeightsView(), {s}),
                           kc.scratchView(DeviceScratch::RowScales, ir.f32()),
                           {ir.toIndex(row32)});
                });
            });
  int64_t Kx = kc.packed.experts.hiddenRows;
  ir.ifThen(used, [&](IR &ir) {
    Value permuted =
        kc.scratchView(DeviceScratch::Permuted, ir.b.getBF16Type(), Kx);
    copyRowToBF16(kc, x, t, permuted, ir.toIndex(row32), Kx);
  });
  if (kc.packed.shared) {
    // The first slot of each token also writes the token for the shared
    // expert.
    Value first =
        ir.cmpi(arith::CmpIPredicate::eq,
                arith::RemUIOp::create(ir.b, s, ir.idx(k)), ir.idx(0));
    int64_t sKx = kc.packed.shared->hiddenRows;
    ir.ifThen(first, [&](IR &ir) {
      copyRowToBF16(kc, x, t,
                    kc.scratchView(DeviceScratch::Xb, ir.b.getBF16Type(), sKx),
                    t, sKx);
    });
  }
}

//===----------------------------------------------------------------------===//
// Grouped projections
//===----------------------------------------------------------------------===//

/// Which projection a matmul kernel computes and where its rows come from.
struct Projection {
  const PackedFfn *ffn = nullptr;
  bool first = true;   // x.W1 (+ activation) -> h, else h.W2 -> y
  bool shared = false; // the shared expert: one group of all T tokens

  /// K: w1's padded input rows, or the padded intermediate width.
  int64_t depth() const { return first ? ffn->hiddenRows : ffn->widthPadded; }
  int64_t panels() const { return first ? ffn->panels1 : ffn->panels2; }
  const PackedTensor &weights() const { return first ? *ffn->w1 : *ffn->w2; }
  const PackedTensor *bias() const { return first ? ffn->b1 : ffn->b2; }
  /// The scratch rows it reads (bf16, depth() wide) and writes (h in bf16 or
  /// y in f32, outputColumns() wide).
  DeviceScratch::Buffer input() const {
    using S = DeviceScratch;
    return first ? (shared ? S::Xb : S::Permuted)
                 : (shared ? S::SharedH : S::H);
  }
  DeviceScratch::Buffer output() const {
    using S = DeviceScratch;
    return first ? (shared ? S::SharedH : S::H) : (shared ? S::SharedY : S::Y);
  }
  int64_t outputColumns() const {
    return first ? ffn->widthPadded : ffn->hiddenPadded;
  }
  /// The first projection of a gated expert pairs gate column c with up
  /// column c + 32 of the same panel in its epilogue.
  bool pairsGateUp() const { return first && ffn->gated; }
};

/// The rows [begin, end) of group `e` (an expert, or the shared expert's 0).
struct GroupRows {
  Value e, begin, end; // index
};

/// Experts of different widths (LayerPlan::expertWidths): expert `e`'s width
/// from a constant table, as an index, built with `ir` (where it is used).
Value expertWidth(IR &ir, KernelContext &kc, Value e) {
  ArrayRef<int64_t> widths = kc.plan.expertWidths;
  auto type = VectorType::get({int64_t(widths.size())}, ir.b.getI64Type());
  Value table =
      arith::ConstantOp::create(ir.b, DenseElementsAttr::get(type, widths));
  Value width =
      vector::ExtractOp::create(ir.b, table, ArrayRef<OpFoldResult>{e});
  return arith::IndexCastOp::create(ir.b, ir.b.getIndexType(), width);
}

/// How much of expert `e`'s intermediate h the projections of `p`'s
/// feed-forward compute and read: its width rounded up to 64 (a multiple of
/// every K tile and of the columns one panel writes), at least 64 and at most
/// the stored width, so the second projection's K tiles only read computed
/// columns; the first projection writes zeros past the width.
Value computedWidth(IR &ir, KernelContext &kc, const Projection &p, Value e) {
  Value rounded = ir.mul(
      arith::CeilDivUIOp::create(ir.b, expertWidth(ir, kc, e), ir.idx(64)),
      ir.idx(64));
  return arith::MinUIOp::create(
      ir.b, arith::MaxUIOp::create(ir.b, rounded, ir.idx(64)),
      ir.idx(p.ffn->widthPadded));
}

/// Whether the routed experts' projections are bounded by expert widths.
bool boundedByWidths(KernelContext &kc, const Projection &p) {
  return !p.shared && !kc.plan.expertWidths.empty();
}

struct ProjectionViews {
  Value a;         // memref<? x K x bf16>: the input rows
  Value w;         // memref<G x panels x K x 64 x bf16>
  Value bias;      // memref<G x panels*64 x f32> or null
  Value out;       // h (bf16) or y (f32) rows
  Value rowScales; // memref<? x f32> or null
  int64_t K = 0, panels = 0;
  /// First projections of experts of different widths: expert e's width
  /// (h columns past it are stored as zeros).
  std::function<Value(IR &, Value)> widthOf;
};

ProjectionViews viewProjection(KernelContext &kc, const Projection &p) {
  IR &ir = kc.ir;
  Type bf16 = ir.b.getBF16Type();
  ProjectionViews v;
  v.K = p.depth();
  v.panels = p.panels();
  v.a = kc.scratchView(p.input(), bf16, v.K);
  v.w = kc.weight(p.weights());
  v.bias = p.bias() ? kc.weight(*p.bias()) : Value();
  v.out =
      kc.scratchView(p.output(), p.first ? bf16 : ir.f32(), p.outputColumns());
  if (p.first && !p.shared && kc.plan.weightsScaleInput)
    v.rowScales = kc.scratchView(DeviceScratch::RowScales, ir.f32());
  if (p.first && boundedByWidths(kc, p))
    v.widthOf = [&kc](IR &ir, Value e) { return expertWidth(ir, kc, e); };
  return v;
}

/// Writes output column `c` (0..63 of panel `panel`) of row `row` from the
/// accumulated value(s): the first projection pairs gate column c with up
/// column c + 32 when gated, so it is called with c < 32 and both values.
void storeOutput(IR &ir, const Projection &p, const ProjectionViews &v, Value e,
                 Value panel, Value row, Value c, Value acc, Value upAcc) {
  const PackedFfn &f = *p.ffn;
  Value base = ir.mul(panel, ir.idx(kPanel));
  auto biasAt = [&](Value column) {
    return ir.load(v.bias, {e, ir.add(base, column)});
  };
  if (!p.first) {
    if (v.bias)
      acc = ir.add(acc, biasAt(c));
    ir.store(acc, v.out, {row, ir.add(base, c)});
    return;
  }
  if (v.rowScales) {
    Value scale = ir.load(v.rowScales, {row});
    acc = ir.mul(acc, scale);
    if (upAcc)
      upAcc = ir.mul(upAcc, scale);
  }
  Value h;
  int64_t columns = f.gated ? kPanel / 2 : kPanel;
  if (f.gated) {
    if (v.bias) {
      acc = ir.add(acc, biasAt(c));
      upAcc = ir.add(upAcc, biasAt(ir.add(c, ir.idx(kPanel / 2))));
    }
    h = activate(ir, f.ffn, acc, upAcc);
  } else {
    if (v.bias)
      acc = ir.add(acc, biasAt(c));
    h = activate(ir, f.ffn, Value(), acc);
  }
  Value column = ir.add(ir.mul(panel, ir.idx(columns)), c);
  if (v.widthOf)
    h = ir.select(ir.cmpi(arith::CmpIPredicate::ult, column, v.widthOf(ir, e)),
                  h, ir.f(0.0));
  ir.store(arith::TruncFOp::create(ir.b, ir.b.getBF16Type(), h), v.out,
           {row, column});
}

/// The rows of the tile this block computes in a prefill matmul; `body` runs
/// only for blocks that have one.
void forTileOfBlock(KernelContext &kc, const Projection &p,
                    function_ref<void(IR &, GroupRows, Value)> body) {
  IR &ir = kc.ir;
  Value bx = kc.blockId();
  if (p.shared) {
    Value begin = ir.mul(bx, ir.idx(kTileRows));
    body(ir, GroupRows{ir.idx(0), begin, kc.T}, begin);
    return;
  }
  int64_t E = kc.E();
  Value tiles = kc.meta(2), offsets = kc.meta(1);
  Value bx32 = ir.toI32(bx);
  Value total = ir.load(tiles, {ir.idx(E)});
  ir.ifThen(ir.cmpi(arith::CmpIPredicate::slt, bx32, total), [&](IR &ir) {
    // The expert: how many tile offsets past the first are <= bx.
    Value e = ir.forLoop(ir.idx(1), ir.idx(E), ir.idx(1), {ir.idx(0)},
                         [&](IR &ir, Value i, ValueRange acc) {
                           Value le = ir.cmpi(arith::CmpIPredicate::sle,
                                              ir.load(tiles, {i}), bx32);
                           return SmallVector<Value>{ir.select(
                               le, ir.add(acc[0], ir.idx(1)), acc[0])};
                         })[0];
    Value tileInExpert = ir.sub(bx32, ir.load(tiles, {e}));
    Value begin = ir.toIndex(
        ir.add(ir.load(offsets, {e}), ir.mul(tileInExpert, ir.i32(kTileRows))));
    Value end = ir.toIndex(ir.load(offsets, {ir.add(e, ir.idx(1))}));
    GroupRows rows{e, ir.toIndex(ir.load(offsets, {e})), end};
    if (!p.first || !boundedByWidths(kc, p))
      return body(ir, rows, begin);
    // A panel past the expert's computed width: the block returns at once.
    int64_t columns = p.pairsGateUp() ? kPanel / 2 : kPanel;
    Value firstColumn = ir.mul(kc.blockId(gpu::Dimension::y), ir.idx(columns));
    ir.ifThen(ir.cmpi(arith::CmpIPredicate::ult, firstColumn,
                      computedWidth(ir, kc, p, e)),
              [&](IR &ir) { body(ir, rows, begin); });
  });
}

/// A 64 x 64 output tile on tensor cores: rows [tileBegin, tileBegin + 64) of
/// group g (clamped to its end) times panel `panel` of its weights.
void mmaTile(KernelContext &kc, const Projection &p, const ProjectionViews &v,
             GroupRows g, Value tileBegin, Value panel, Value smemA,
             Value smemB) {
  IR &ir = kc.ir;
  MLIRContext *ctx = ir.b.getContext();
  Type bf16 = ir.b.getBF16Type(), i32 = ir.b.getI32Type(), f32 = ir.f32();
  Value tid = kc.threadId();
  Value warp = arith::DivUIOp::create(ir.b, tid, ir.idx(32));
  Value lane = arith::RemUIOp::create(ir.b, tid, ir.idx(32));
  Value lastRow = ir.sub(g.end, ir.idx(1));
  // The second projection of experts of different widths reads h only up to
  // the expert's computed width.
  Value KT = ir.idx(v.K / kTileK);
  if (!p.first && boundedByWidths(kc, p))
    KT = arith::DivUIOp::create(ir.b, computedWidth(ir, kc, p, g.e),
                                ir.idx(kTileK));
  auto tokenType = nvgpu::DeviceAsyncTokenType::get(ctx);

  // One stage: A [64 rows][32 k] and B [32 k][64 n], 16-byte chunks, two of
  // each per thread. Rows past the group's end read its last row (never
  // stored).
  auto loadStage = [&](IR &ir, Value stage, Value kt) {
    SmallVector<Value> tokens;
    Value k0 = ir.mul(kt, ir.idx(kTileK));
    for (int64_t q = 0; q < 2; ++q) {
      Value chunk = ir.add(tid, ir.idx(q * kMmaThreads));
      Value aRow = arith::DivUIOp::create(ir.b, chunk, ir.idx(4));
      Value aCol =
          ir.mul(arith::RemUIOp::create(ir.b, chunk, ir.idx(4)), ir.idx(8));
      Value src = minIndex(ir, ir.add(tileBegin, aRow), lastRow);
      tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
          ir.b, tokenType, smemA, ValueRange{stage, aRow, aCol}, v.a,
          ValueRange{src, ir.add(k0, aCol)}, ir.b.getIndexAttr(8), Value(),
          ir.b.getUnitAttr()));
      Value bRow = arith::DivUIOp::create(ir.b, chunk, ir.idx(8));
      Value bCol =
          ir.mul(arith::RemUIOp::create(ir.b, chunk, ir.idx(8)), ir.idx(8));
      tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
          ir.b, tokenType, smemB, ValueRange{stage, bRow, bCol}, v.w,
          ValueRange{g.e, panel, ir.add(k0, bRow), bCol}, ir.b.getIndexAttr(8),
          Value(), ir.b.getUnitAttr()));
    }
    return nvgpu::DeviceAsyncCreateGroupOp::create(ir.b, tokenType, tokens)
        .getResult();
  };

  Value first = loadStage(ir, ir.idx(0), ir.idx(0));
  SmallVector<Value> init(8 * 4, ir.f(0.0));
  auto fragType = VectorType::get({4, 2}, bf16);
  auto accType = LLVM::LLVMStructType::getLiteral(ctx, {f32, f32, f32, f32});
  auto regs = [&](IR &ir, Value fragment) {
    SmallVector<Value> r;
    for (int64_t i = 0; i < 4; ++i)
      r.push_back(LLVM::BitcastOp::create(
          ir.b, i32,
          vector::ExtractOp::create(ir.b, fragment, ArrayRef<int64_t>{i})));
    return r;
  };
  ValueRange acc = ir.forLoop(
      ir.idx(0), KT, ir.idx(1), init,
      [&](IR &ir, Value kt, ValueRange acc) {
        Value stage = arith::RemUIOp::create(ir.b, kt, ir.idx(2));
        Value next = ir.add(kt, ir.idx(1));
        // Start the next stage's copies before waiting for this one's.
        ir.ifElse(
            ir.cmpi(arith::CmpIPredicate::ult, next, KT), {},
            [&](IR &ir) -> SmallVector<Value> {
              Value group = loadStage(
                  ir, arith::RemUIOp::create(ir.b, next, ir.idx(2)), next);
              nvgpu::DeviceAsyncWaitOp::create(ir.b, group,
                                               ir.b.getI32IntegerAttr(1));
              return {};
            },
            [&](IR &ir) -> SmallVector<Value> {
              nvgpu::DeviceAsyncWaitOp::create(ir.b, first,
                                               ir.b.getI32IntegerAttr(0));
              return {};
            });
        gpu::BarrierOp::create(ir.b);
        SmallVector<Value> c(acc.begin(), acc.end());
        for (int64_t kk = 0; kk < kTileK; kk += 16) {
          // A: rows warp*16 + lane%16, columns kk + (lane/16)*8.
          Value aRow = ir.add(ir.mul(warp, ir.idx(16)),
                              arith::RemUIOp::create(ir.b, lane, ir.idx(16)));
          Value aCol = ir.add(
              ir.idx(kk), ir.mul(arith::DivUIOp::create(ir.b, lane, ir.idx(16)),
                                 ir.idx(8)));
          SmallVector<Value> a =
              regs(ir, nvgpu::LdMatrixOp::create(
                           ir.b, fragType, smemA, ValueRange{stage, aRow, aCol},
                           ir.b.getBoolAttr(false), ir.b.getI32IntegerAttr(4)));
          for (int64_t pair = 0; pair < 4; ++pair) {
            // B (k rows, n contiguous), transposed by ldmatrix: matrix
            // m = lane/8 is (n tile 2*pair + m/2, k half m%2).
            Value m = arith::DivUIOp::create(ir.b, lane, ir.idx(8));
            Value bRow =
                ir.add(ir.add(ir.idx(kk),
                              ir.mul(arith::RemUIOp::create(ir.b, m, ir.idx(2)),
                                     ir.idx(8))),
                       arith::RemUIOp::create(ir.b, lane, ir.idx(8)));
            Value bCol = ir.add(
                ir.idx(16 * pair),
                ir.mul(arith::DivUIOp::create(ir.b, m, ir.idx(2)), ir.idx(8)));
            SmallVector<Value> bfrag = regs(
                ir, nvgpu::LdMatrixOp::create(
                        ir.b, fragType, smemB, ValueRange{stage, bRow, bCol},
                        ir.b.getBoolAttr(true), ir.b.getI32IntegerAttr(4)));
            for (int64_t half = 0; half < 2; ++half) {
              int64_t tile = 2 * pair + half;
              SmallVector<Value> cIn(c.begin() + 4 * tile,
                                     c.begin() + 4 * tile + 4);
              Value d = NVVM::MmaOp::create(
                  ir.b, accType, a,
                  ValueRange{bfrag[2 * half], bfrag[2 * half + 1]}, cIn,
                  ArrayRef<int64_t>{16, 8, 16}, std::nullopt, std::nullopt,
                  std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16,
                                                NVVM::MMATypes::bf16},
                  std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                                 NVVM::MMALayout::col});
              for (int64_t i = 0; i < 4; ++i)
                c[4 * tile + i] =
                    LLVM::ExtractValueOp::create(ir.b, d, ArrayRef<int64_t>{i});
            }
          }
        }
        // The next iteration's copies overwrite this stage.
        gpu::BarrierOp::create(ir.b);
        return c;
      });

  // C fragment: value i of n tile j is row g (+8 for i >= 2), column
  // 8j + 2*(lane%4) + i%2.
  Value group = arith::DivUIOp::create(ir.b, lane, ir.idx(4));
  Value quad = arith::RemUIOp::create(ir.b, lane, ir.idx(4));
  bool pairs = p.pairsGateUp();
  for (int64_t half = 0; half < 2; ++half) {
    Value row = ir.add(ir.add(tileBegin, ir.mul(warp, ir.idx(16))),
                       ir.add(group, ir.idx(8 * half)));
    ir.ifThen(ir.cmpi(arith::CmpIPredicate::ult, row, g.end), [&](IR &ir) {
      for (int64_t j = 0; j < (pairs ? 4 : 8); ++j)
        for (int64_t odd = 0; odd < 2; ++odd) {
          int64_t i = 2 * half + odd;
          Value c = ir.add(ir.idx(8 * j + odd), ir.mul(quad, ir.idx(2)));
          storeOutput(ir, p, v, g.e, panel, row, c, acc[4 * j + i],
                      pairs ? acc[4 * (j + 4) + i] : Value());
        }
    });
  }
}

/// The same 64 x 64 output tile with Hopper's wgmma: thread 0 issues TMA loads
/// of the A rows (tensor map `mapA` over the input rows, coordinates (k, row))
/// and of the weight panel (tensor map `mapB` over w as [(g * panels + panel) *
/// K + k][64]); the warpgroup multiplies each 64-deep stage from shared memory;
/// the accumulator goes through shared memory to the epilogue. Rows past the
/// map's end arrive as zeros, rows of the next group are computed and not
/// stored.
void wgmmaTile(KernelContext &kc, const Projection &p, const ProjectionViews &v,
               GroupRows g, Value tileBegin, Value panel, Value smem,
               Value mapA, Value mapB) {
  IR &ir = kc.ir;
  MLIRContext *ctx = ir.b.getContext();
  Type bf16 = ir.b.getBF16Type();
  Attribute workgroup =
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  auto tileType =
      MemRefType::get({64, 64}, bf16, MemRefLayoutAttrInterface(), workgroup);
  auto accMemType = MemRefType::get({64, 64}, ir.f32(),
                                    MemRefLayoutAttrInterface(), workgroup);
  auto mapType = nvgpu::TensorMapDescriptorType::get(
      ctx, tileType, nvgpu::TensorMapSwizzleKind::SWIZZLE_128B,
      nvgpu::TensorMapL2PromoKind::L2PROMO_NONE,
      nvgpu::TensorMapOOBKind::OOB_ZERO,
      nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE);
  auto barrierType = nvgpu::MBarrierGroupType::get(ctx, workgroup, 2);
  auto descType = nvgpu::WarpgroupMatrixDescriptorType::get(ctx, tileType);
  auto accType = nvgpu::WarpgroupAccumulatorType::get(
      ctx, VectorType::get({64, 64}, ir.f32()));
  Value descA =
      UnrealizedConversionCastOp::create(ir.b, mapType, mapA).getResult(0);
  Value descB =
      UnrealizedConversionCastOp::create(ir.b, mapType, mapB).getResult(0);

  Value tid = kc.threadId();
  Value leader = ir.cmpi(arith::CmpIPredicate::eq, tid, ir.idx(0));
  Value barriers = nvgpu::MBarrierCreateOp::create(ir.b, barrierType);
  ir.ifThen(leader, [&](IR &ir) {
    for (int64_t stage = 0; stage < 2; ++stage)
      nvgpu::MBarrierInitOp::create(ir.b, barriers, ir.idx(1), ir.idx(stage),
                                    Value());
  });
  gpu::BarrierOp::create(ir.b);

  Value KT = ir.idx(v.K / kWgmmaK);
  if (!p.first && boundedByWidths(kc, p))
    KT = arith::DivUIOp::create(ir.b, computedWidth(ir, kc, p, g.e),
                                ir.idx(kWgmmaK));
  Value bRowBase =
      ir.mul(ir.add(ir.mul(g.e, ir.idx(v.panels)), panel), ir.idx(v.K));
  auto view = [&](IR &ir, Value byteOffset, MemRefType type) {
    return memref::ViewOp::create(ir.b, type, smem, byteOffset, ValueRange{})
        .getResult();
  };
  auto aView = [&](IR &ir, Value stage) {
    return view(ir, ir.mul(stage, ir.idx(kStageBytes)), tileType);
  };
  auto bView = [&](IR &ir, Value stage) {
    return view(
        ir, ir.add(ir.idx(2 * kStageBytes), ir.mul(stage, ir.idx(kStageBytes))),
        tileType);
  };
  auto issue = [&](IR &ir, Value stage, Value kt) {
    Value k0 = ir.mul(kt, ir.idx(kWgmmaK));
    nvgpu::MBarrierArriveExpectTxOp::create(
        ir.b, barriers, ir.idx(2 * kStageBytes), stage, Value());
    nvgpu::TmaAsyncLoadOp::create(ir.b, aView(ir, stage), barriers, descA,
                                  ValueRange{k0, tileBegin}, stage, Value(),
                                  Value());
    nvgpu::TmaAsyncLoadOp::create(ir.b, bView(ir, stage), barriers, descB,
                                  ValueRange{ir.idx(0), ir.add(bRowBase, k0)},
                                  stage, Value(), Value());
  };
  ir.ifThen(leader, [&](IR &ir) { issue(ir, ir.idx(0), ir.idx(0)); });
  Value init = nvgpu::WarpgroupMmaInitAccumulatorOp::create(ir.b, accType);
  Value acc = ir.forLoop(
      ir.idx(0), KT, ir.idx(1), {init},
      [&](IR &ir, Value kt, ValueRange acc) {
        Value stage = arith::RemUIOp::create(ir.b, kt, ir.idx(2));
        Value next = ir.add(kt, ir.idx(1));
        Value issueNext = arith::AndIOp::create(
            ir.b, leader, ir.cmpi(arith::CmpIPredicate::ult, next, KT));
        ir.ifThen(issueNext, [&](IR &ir) {
          issue(ir, arith::RemUIOp::create(ir.b, next, ir.idx(2)), next);
        });
        // Stage s is refilled every other step: its phase flips each time.
        Value parity = ir.cmpi(
            arith::CmpIPredicate::ne,
            arith::RemUIOp::create(
                ir.b, arith::DivUIOp::create(ir.b, kt, ir.idx(2)), ir.idx(2)),
            ir.idx(0));
        nvgpu::MBarrierTryWaitParityOp::create(ir.b, barriers, parity,
                                               ir.idx(10000000), stage);
        Value a = nvgpu::WarpgroupGenerateDescriptorOp::create(
            ir.b, descType, aView(ir, stage), descA);
        Value b = nvgpu::WarpgroupGenerateDescriptorOp::create(
            ir.b, descType, bView(ir, stage), descB);
        Value d = nvgpu::WarpgroupMmaOp::create(ir.b, accType, a, b,
                                                IntegerAttr(), UnitAttr(),
                                                ir.b.getUnitAttr(), acc[0]);
        // The stage is refilled next step: every warp's reads must be done.
        NVVM::WgmmaWaitGroupSyncOp::create(ir.b, ir.b.getLoc(),
                                           ir.b.getI64IntegerAttr(0));
        gpu::BarrierOp::create(ir.b);
        return SmallVector<Value>{d};
      })[0];
  // The accumulator through shared memory (over the drained stages).
  Value accMem = view(ir, ir.idx(0), accMemType);
  nvgpu::WarpgroupMmaStoreOp::create(ir.b, acc, accMem);
  gpu::BarrierOp::create(ir.b);
  bool pairs = p.pairsGateUp();
  int64_t perRow = pairs ? kPanel / 2 : kPanel;
  ir.forLoop(
      tid, ir.idx(64 * perRow), ir.idx(kMmaThreads), {},
      [&](IR &ir, Value o, ValueRange) {
        Value r = arith::DivUIOp::create(ir.b, o, ir.idx(perRow));
        Value c = arith::RemUIOp::create(ir.b, o, ir.idx(perRow));
        Value row = ir.add(tileBegin, r);
        ir.ifThen(ir.cmpi(arith::CmpIPredicate::ult, row, g.end), [&](IR &ir) {
          Value up = pairs ? ir.load(accMem, {r, ir.add(c, ir.idx(kPanel / 2))})
                           : Value();
          storeOutput(ir, p, v, g.e, panel, row, c, ir.load(accMem, {r, c}),
                      up);
        });
        return SmallVector<Value>();
      });
}

/// experts_up / experts_down / shared_*: prefill, on tensor cores.
void prefillProjection(KernelContext &kc, const Projection &p,
                       ValueRange smem) {
  ProjectionViews v = viewProjection(kc, p);
  Value panel = kc.blockId(gpu::Dimension::y);
  forTileOfBlock(kc, p, [&](IR &, GroupRows g, Value tileBegin) {
    mmaTile(kc, p, v, g, tileBegin, panel, smem[0], smem[1]);
  });
}

/// The sm_90a form of prefillProjection: its tensor maps are `maps` and
/// `maps + 1` of the workspace's map region.
void prefillProjectionWgmma(KernelContext &kc, const Projection &p,
                            int64_t maps, Value smem) {
  IR &ir = kc.ir;
  ProjectionViews v = viewProjection(kc, p);
  Value panel = kc.blockId(gpu::Dimension::y);
  auto mapAt = [&](int64_t index) -> Value {
    Value offset =
        ir.add(kc.offsets[DeviceScratch::Maps], i64c(ir, index * 128));
    return LLVM::GEPOp::create(ir.b, kc.workspace.getType(), ir.b.getI8Type(),
                               kc.workspace, ValueRange{offset});
  };
  Value mapA = mapAt(maps), mapB = mapAt(maps + 1);
  forTileOfBlock(kc, p, [&](IR &, GroupRows g, Value tileBegin) {
    wgmmaTile(kc, p, v, g, tileBegin, panel, smem, mapA, mapB);
  });
}

/// The decode form: block (g, panel) streams panel `panel` of group g's
/// weights once (16-byte loads, a warp reads 512 contiguous bytes) and applies
/// it to the group's rows, 8 at a time.
void decodeProjection(KernelContext &kc, const Projection &p, Value smem) {
  IR &ir = kc.ir;
  ProjectionViews v = viewProjection(kc, p);
  Value gIdx = kc.blockId(), panel = kc.blockId(gpu::Dimension::y);
  Value begin, end;
  if (p.shared) {
    begin = ir.idx(0);
    end = kc.T;
  } else {
    Value offsets = kc.meta(1);
    begin = ir.toIndex(ir.load(offsets, {gIdx}));
    end = ir.toIndex(ir.load(offsets, {ir.add(gIdx, ir.idx(1))}));
  }
  // Experts of different widths: a first-projection panel past the expert's
  // computed width has no rows to do; the second projection's K loop stops
  // at that width.
  Value depth = ir.idx(v.K);
  if (boundedByWidths(kc, p)) {
    if (p.first) {
      int64_t columns = p.pairsGateUp() ? kPanel / 2 : kPanel;
      Value needed =
          ir.cmpi(arith::CmpIPredicate::ult, ir.mul(panel, ir.idx(columns)),
                  computedWidth(ir, kc, p, gIdx));
      end = ir.select(needed, end, begin);
    } else {
      depth = computedWidth(ir, kc, p, gIdx);
    }
  }
  Value tid = kc.threadId();
  Value warp = arith::DivUIOp::create(ir.b, tid, ir.idx(32));
  Value lane = arith::RemUIOp::create(ir.b, tid, ir.idx(32));
  Value colGroup = arith::RemUIOp::create(ir.b, tid, ir.idx(8));
  Value kLane = arith::DivUIOp::create(ir.b, tid, ir.idx(8));
  Value lastRow = ir.sub(end, ir.idx(1));
  auto w8 = VectorType::get({8}, ir.b.getBF16Type());
  auto f8 = VectorType::get({8}, ir.f32());
  ir.forLoop(
      begin, end, ir.idx(kDecodeRows), {}, [&](IR &ir, Value r0, ValueRange) {
        SmallVector<Value> init(kDecodeRows, ir.vf(0.0, 8));
        ValueRange acc = ir.forLoop(
            kLane, depth, ir.idx(kDecodeThreads / 8), init,
            [&](IR &ir, Value k, ValueRange acc) {
              Value w = arith::ExtFOp::create(
                  ir.b, f8,
                  vector::LoadOp::create(
                      ir.b, ir.b.getLoc(), w8, v.w,
                      ValueRange{gIdx, panel, k, ir.mul(colGroup, ir.idx(8))},
                      false, llvm::MaybeAlign(16))
                      .getResult());
              SmallVector<Value> next;
              for (int64_t r = 0; r < kDecodeRows; ++r) {
                Value row = minIndex(ir, ir.add(r0, ir.idx(r)), lastRow);
                Value x = arith::ExtFOp::create(ir.b, ir.f32(),
                                                ir.load(v.a, {row, k}));
                next.push_back(
                    vector::FMAOp::create(ir.b, ir.splat(x, 8), w, acc[r]));
              }
              return next;
            });
        // Lanes l, l^8, l^16, l^24 hold the same columns: sum them, then sum
        // the 8 warps through shared memory [warp][row][64].
        for (int64_t r = 0; r < kDecodeRows; ++r) {
          for (int64_t c = 0; c < 8; ++c) {
            Value x =
                vector::ExtractOp::create(ir.b, acc[r], ArrayRef<int64_t>{c});
            Value sum = warpSum(ir, x, 16, 8);
            ir.ifThen(ir.cmpi(arith::CmpIPredicate::ult, lane, ir.idx(8)),
                      [&](IR &ir) {
                        ir.store(
                            sum, smem,
                            {warp, ir.idx(r),
                             ir.add(ir.mul(colGroup, ir.idx(8)), ir.idx(c))});
                      });
          }
        }
        gpu::BarrierOp::create(ir.b);
        auto total = [&](IR &ir, Value r, Value c) {
          Value s = ir.f(0.0);
          for (int64_t w = 0; w < kDecodeThreads / 32; ++w)
            s = ir.add(s, ir.load(smem, {ir.idx(w), r, c}));
          return s;
        };
        bool pairs = p.pairsGateUp();
        int64_t outputs = kDecodeRows * (pairs ? kPanel / 2 : kPanel);
        for (int64_t q = 0; q < outputs / kDecodeThreads; ++q) {
          Value o = ir.add(tid, ir.idx(q * kDecodeThreads));
          int64_t perRow = pairs ? kPanel / 2 : kPanel;
          Value r = arith::DivUIOp::create(ir.b, o, ir.idx(perRow));
          Value c = arith::RemUIOp::create(ir.b, o, ir.idx(perRow));
          Value row = ir.add(r0, r);
          ir.ifThen(ir.cmpi(arith::CmpIPredicate::ult, row, end), [&](IR &ir) {
            Value up =
                pairs ? total(ir, r, ir.add(c, ir.idx(kPanel / 2))) : Value();
            storeOutput(ir, p, v, gIdx, panel, row, c, total(ir, r, c), up);
          });
        }
        // The next chunk reuses the buffer.
        gpu::BarrierOp::create(ir.b);
        return SmallVector<Value>();
      });
}

/// combine: block t sums its routed rows (weighted unless the weights scaled
/// the input) and the gated shared expert.
void combine(KernelContext &kc) {
  IR &ir = kc.ir;
  int64_t k = kc.k(), H = kc.H();
  Value t = kc.blockId();
  Value out = kc.outputView(), w = kc.topkWeightsView();
  Value rowOf = kc.scratchView(DeviceScratch::Row, ir.b.getI32Type());
  Value y = kc.scratchView(DeviceScratch::Y, ir.f32(),
                           kc.packed.experts.hiddenPadded);
  Value sharedY = kc.packed.shared
                      ? kc.scratchView(DeviceScratch::SharedY, ir.f32(),
                                       kc.packed.shared->hiddenPadded)
                      : Value();
  Value gate =
      kc.packed.sigmoidGate
          ? ir.load(kc.scratchView(DeviceScratch::GateValues, ir.f32()), {t})
          : Value();
  SmallVector<Value> rows, scales;
  for (int64_t j = 0; j < k; ++j) {
    Value s = ir.add(ir.mul(t, ir.idx(k)), ir.idx(j));
    rows.push_back(ir.load(rowOf, {s}));
    scales.push_back(kc.plan.weightsScaleInput ? ir.f(1.0) : ir.load(w, {s}));
  }
  ir.forLoop(kc.threadId(), ir.idx(H), ir.idx(128), {},
             [&](IR &ir, Value h, ValueRange) {
               Value acc = ir.f(0.0);
               if (sharedY) {
                 acc = ir.load(sharedY, {t, h});
                 if (gate)
                   acc = ir.mul(acc, gate);
               }
               for (int64_t j = 0; j < k; ++j) {
                 Value used =
                     ir.cmpi(arith::CmpIPredicate::sge, rows[j], ir.i32(0));
                 acc = ir.ifElse(
                     used, {ir.f32()},
                     [&](IR &ir) -> SmallVector<Value> {
                       Value yv = ir.load(y, {ir.toIndex(rows[j]), h});
                       return {ir.add(acc, ir.mul(scales[j], yv))};
                     },
                     [&](IR &) -> SmallVector<Value> { return {acc}; })[0];
               }
               ir.store(acc, out, {t, h});
               return SmallVector<Value>();
             });
}

//===----------------------------------------------------------------------===//
// Host functions
//===----------------------------------------------------------------------===//

/// One launch record, as a function of T (i64 values).
struct Launch {
  int64_t kernel = 0;
  std::function<Value(IR &, Value)> gridX;
  int64_t gridY = 1;
  int64_t block = 128;
};

} // namespace

cpu::PackingOptions cuda::packingOptions() {
  cpu::PackingOptions options;
  options.panelWidth = kPanel;
  options.kRowMultiple = kTileK;
  options.tensorAlignment = 16;
  options.expertsAsBF16 = true;
  return options;
}

FailureOr<std::vector<std::string>>
cuda::emitLayerKernels(ModuleOp container, ModuleOp host, const LayerPlan &plan,
                       const PackedLayer &packed, Attribute target,
                       bool hopper) {
  MLIRContext *ctx = container.getContext();
  ctx->loadDialect<arith::ArithDialect, func::FuncDialect, gpu::GPUDialect,
                   LLVM::LLVMDialect, NVVM::NVVMDialect, math::MathDialect,
                   memref::MemRefDialect, nvgpu::NVGPUDialect, scf::SCFDialect,
                   vector::VectorDialect>();
  if (packed.experts.w1->dtype != MOE_DTYPE_BF16 ||
      packed.experts.w1->shape.back() != kPanel ||
      packed.experts.hiddenRows % kTileK != 0)
    return func::FuncOp(plan.function).emitOpError()
           << "weights were not packed for the CUDA kernels";
  DeviceScratch scratch(plan, packed);
  KernelFactory kernels(container, plan, packed, scratch, target);
  int64_t E = plan.numExperts, k = plan.topK;
  Type bf16 = Builder(ctx).getBF16Type(), f32 = Builder(ctx).getF32Type();
  auto mmaBuffers =
      SmallVector<MemRefType>{sharedBuffer(ctx, {2, kTileRows, kPitchA}, bf16),
                              sharedBuffer(ctx, {2, kTileK, kPitchB}, bf16)};
  auto decodeBuffer = SmallVector<MemRefType>{
      sharedBuffer(ctx, {kDecodeThreads / 32, kDecodeRows, kPanel}, f32)};

  int64_t scaleK = -1;
  if (!plan.inputScales.empty())
    scaleK = kernels.add("scale_input", {}, [&](KernelContext &kc, ValueRange) {
      scaleInput(kc);
    });
  int64_t logitsK =
      kernels.add("route_logits", {},
                  [&](KernelContext &kc, ValueRange) { routeLogits(kc); });
  int64_t selectK =
      kernels.add("route_select", {},
                  [&](KernelContext &kc, ValueRange) { routeSelect(kc); });
  int64_t rankK = -1;
  if (plan.capacityFactor)
    rankK =
        kernels.add("dispatch_rank", {},
                    [&](KernelContext &kc, ValueRange) { dispatchRank(kc); });
  int64_t offsetsK =
      kernels.add("dispatch_offsets", {},
                  [&](KernelContext &kc, ValueRange) { dispatchOffsets(kc); });
  int64_t scatterK =
      kernels.add("dispatch_scatter", {},
                  [&](KernelContext &kc, ValueRange) { dispatchScatter(kc); });
  struct Pair {
    int64_t prefill, decode;
    Projection projection;
    int64_t maps = -1; // its two tensor maps' index (sm_90a form), or -1
  };
  SmallVector<Pair> projections;
  auto wgmmaBuffer = SmallVector<MemRefType>{
      sharedBuffer(ctx, {4 * kStageBytes}, Builder(ctx).getI8Type())};
  auto addProjection = [&](StringRef name, Projection p) {
    int64_t K = p.depth();
    // The wgmma form steps K by 64 and cannot mask half a tile of weights.
    int64_t maps =
        hopper && K % kWgmmaK == 0 ? int64_t(projections.size()) * 2 : -1;
    int64_t prefill =
        maps >= 0 ? kernels.add(name, wgmmaBuffer,
                                [&](KernelContext &kc, ValueRange smem) {
                                  prefillProjectionWgmma(kc, p, maps, smem[0]);
                                })
                  : kernels.add(name, mmaBuffers,
                                [&](KernelContext &kc, ValueRange smem) {
                                  prefillProjection(kc, p, smem);
                                });
    int64_t decode = kernels.add((name + "_decode").str(), decodeBuffer,
                                 [&](KernelContext &kc, ValueRange smem) {
                                   decodeProjection(kc, p, smem[0]);
                                 });
    projections.push_back({prefill, decode, p, maps});
  };
  addProjection("experts_up", {&packed.experts, true, false});
  addProjection("experts_down", {&packed.experts, false, false});
  if (packed.shared) {
    addProjection("shared_up", {&*packed.shared, true, true});
    addProjection("shared_down", {&*packed.shared, false, true});
  }
  int64_t combineK = kernels.add(
      "combine", {}, [&](KernelContext &kc, ValueRange) { combine(kc); });

  // Host: workspace_bytes(T) and launches(T, records, capacity).
  std::string entry = "moe_layer_" + std::to_string(plan.layerIndex);
  Location loc = func::FuncOp(plan.function).getLoc();
  ImplicitLocOpBuilder b(loc, ctx);
  b.setInsertionPointToEnd(host.getBody());
  Type i64 = b.getI64Type(), i32 = b.getI32Type();
  auto ptr = LLVM::LLVMPointerType::get(ctx);
  {
    auto fn = func::FuncOp::create(b, entry + "_workspace_bytes",
                                   b.getFunctionType({i64}, {i64}));
    b.setInsertionPointToStart(fn.addEntryBlock());
    IR ir{b};
    func::ReturnOp::create(b, scratch.offsets(ir, fn.getArgument(0)).second);
    b.setInsertionPointToEnd(host.getBody());
  }
  auto fn = func::FuncOp::create(b, entry + "_launches",
                                 b.getFunctionType({i64, ptr, i32}, {i32}));
  b.setInsertionPointToStart(fn.addEntryBlock());
  IR ir{b};
  Value T = fn.getArgument(0), records = fn.getArgument(1),
        capacity = fn.getArgument(2);
  Value decode =
      ir.cmpi(arith::CmpIPredicate::sle, T, i64c(ir, cuda::kDecodeTokens));
  auto constant = [&](IR &ir, int64_t v) { return i64c(ir, v); };
  auto ceilBy = [&](int64_t perBlock) {
    return [perBlock](IR &ir, Value rows) {
      return ceilDiv(ir, rows, i64c(ir, perBlock));
    };
  };
  int64_t logitColumns = E + (packed.sigmoidGate ? 1 : 0);
  SmallVector<std::pair<Launch, std::optional<Launch>>> plan_;
  if (scaleK >= 0)
    plan_.push_back(
        {{scaleK, [](IR &ir, Value t) { return t; }, 1, 128}, std::nullopt});
  plan_.push_back({{logitsK,
                    [=](IR &ir, Value t) {
                      return ceilDiv(ir, ir.mul(t, i64c(ir, logitColumns)),
                                     i64c(ir, 8));
                    },
                    1, 256},
                   std::nullopt});
  plan_.push_back({{selectK, ceilBy(128), 1, 128}, std::nullopt});
  if (rankK >= 0)
    plan_.push_back(
        {{rankK, [&](IR &ir, Value) { return constant(ir, 1); }, 1, 256},
         std::nullopt});
  plan_.push_back(
      {{offsetsK, [&](IR &ir, Value) { return constant(ir, 1); }, 1, 32},
       std::nullopt});
  plan_.push_back(
      {{scatterK, [=](IR &ir, Value t) { return ir.mul(t, i64c(ir, k)); }, 1,
        128},
       std::nullopt});
  for (const Pair &pair : projections) {
    const Projection &p = pair.projection;
    int64_t panels = p.panels();
    Launch prefill{pair.prefill,
                   [=](IR &ir, Value t) {
                     if (p.shared)
                       return ceilDiv(ir, t, i64c(ir, kTileRows));
                     // At most ceil(T*k / 64) + E tiles; blocks past the
                     // last tile return at once.
                     return ir.add(ceilDiv(ir, ir.mul(t, i64c(ir, k)),
                                           i64c(ir, kTileRows)),
                                   i64c(ir, E));
                   },
                   panels, kMmaThreads};
    Launch decodeLaunch{
        pair.decode, [=](IR &ir, Value) { return i64c(ir, p.shared ? 1 : E); },
        panels, kDecodeThreads};
    plan_.push_back({prefill, decodeLaunch});
  }
  plan_.push_back(
      {{combineK, [](IR &ir, Value t) { return t; }, 1, 128}, std::nullopt});

  int64_t count = plan_.size();
  for (auto [i, launch] : llvm::enumerate(plan_)) {
    auto &[prefill, decodeForm] = launch;
    auto pick = [&](Value ifDecode, Value otherwise) {
      return decodeForm ? ir.select(decode, ifDecode, otherwise) : otherwise;
    };
    auto trunc = [&](Value v) { return arith::TruncIOp::create(b, i32, v); };
    SmallVector<Value> fields;
    fields.push_back(pick(ir.i32(decodeForm ? decodeForm->kernel : 0),
                          ir.i32(prefill.kernel)));
    fields.push_back(trunc(pick(decodeForm ? decodeForm->gridX(ir, T) : Value(),
                                prefill.gridX(ir, T))));
    fields.push_back(ir.i32(prefill.gridY));
    fields.push_back(ir.i32(1));
    fields.push_back(pick(ir.i32(decodeForm ? decodeForm->block : 0),
                          ir.i32(prefill.block)));
    fields.push_back(ir.i32(1));
    fields.push_back(ir.i32(1));
    fields.push_back(ir.i32(0)); // static shared memory only
    ir.ifThen(ir.cmpi(arith::CmpIPredicate::slt, ir.i32(int64_t(i)), capacity),
              [&](IR &ir) {
                for (auto [f, value] : llvm::enumerate(fields)) {
                  Value at = LLVM::GEPOp::create(
                      ir.b, ptr, ir.b.getI8Type(), records,
                      ValueRange{i64c(ir, int64_t(i) * 32 + int64_t(f) * 4)});
                  LLVM::StoreOp::create(ir.b, value, at);
                }
              });
  }
  func::ReturnOp::create(b, ValueRange{ir.i32(count)});

  // int32_t moe_layer_L_tensor_maps(int64_t tokens, moe_cuda_tensor_map *maps,
  //                                 int32_t capacity): runtime/FORMAT.md.
  if (llvm::none_of(projections, [](const Pair &p) { return p.maps >= 0; }))
    return kernels.names;
  b.setInsertionPointToEnd(host.getBody());
  auto mapsFn = func::FuncOp::create(b, entry + "_tensor_maps",
                                     b.getFunctionType({i64, ptr, i32}, {i32}));
  b.setInsertionPointToStart(mapsFn.addEntryBlock());
  T = mapsFn.getArgument(0);
  Value out = mapsFn.getArgument(1), room = mapsFn.getArgument(2);
  SmallVector<Value> offsets = scratch.offsets(ir, T).first;
  Value slots = ir.mul(T, i64c(ir, k));
  struct Field {
    int64_t byteOffset;
    Value value;
  };
  int64_t written = 0;
  auto record = [&](int64_t index, int64_t base, Value offset, int64_t inner,
                    Value rows) {
    SmallVector<Field> fields = {
        {0, ir.i32(base)},
        {4, ir.i32(2)},
        {8, offset},
        {16, i64c(ir, inner)},
        {24, rows},
        {32, i64c(ir, 1)},
        {40, i64c(ir, inner * 2)},
        {48, i64c(ir, 0)},
        {56, ir.i32(64)},
        {60, ir.i32(64)},
        {64, ir.i32(1)},
        {68, ir.i32(3)}, // CU_TENSOR_MAP_SWIZZLE_128B
        {72, ir.add(offsets[DeviceScratch::Maps], i64c(ir, index * 128))}};
    ir.ifThen(ir.cmpi(arith::CmpIPredicate::slt, ir.i32(written), room),
              [&](IR &ir) {
                for (const Field &field : fields) {
                  Value at = LLVM::GEPOp::create(
                      ir.b, ptr, ir.b.getI8Type(), out,
                      ValueRange{i64c(ir, written * 80 + field.byteOffset)});
                  LLVM::StoreOp::create(ir.b, field.value, at);
                }
              });
    ++written;
  };
  for (const Pair &pair : projections) {
    if (pair.maps < 0)
      continue;
    const Projection &p = pair.projection;
    int64_t K = p.depth();
    // A: the input rows [rows, K] in the workspace.
    record(pair.maps, 1, offsets[p.input()], K, p.shared ? T : slots);
    // B: the weight panels as [(g * panels + panel) * K + k][64].
    record(pair.maps + 1, 0, i64c(ir, int64_t(p.weights().offset)), kPanel,
           i64c(ir, p.ffn->numExperts * p.panels() * K));
  }
  func::ReturnOp::create(b, ValueRange{ir.i32(written)});
  return kernels.names;
}
