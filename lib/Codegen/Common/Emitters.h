//===- Emitters.h - IR pieces both code generators emit --------*- C++ -*-===//
//
// What the CPU and the GPU code generators write the same way: memref views of
// raw pointers, the expert activation and one token's routing decision (scf,
// memref, arith and math only, so the code runs in a CPU loop or a GPU thread).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_CODEGEN_COMMON_EMITTERS_H
#define MOEC_LIB_CODEGEN_COMMON_EMITTERS_H

#include "dialects/moe/MoEAttrs.h"
#include "lib/Codegen/Common/LoopBuilder.h"

namespace mlir::moe::codegen {

/// A memref<shape x element> over `base + byteOffset` (an !llvm.ptr): the
/// descriptor is built in the LLVM dialect and cast to the memref type, a cast
/// the memref lowering folds away. Only the leading dimension may be dynamic
/// (its size is `leading`, an i64); `dynamicOffset` (i64 bytes) replaces
/// `byteOffset` when given.
Value viewOf(ImplicitLocOpBuilder &b, Value base, int64_t byteOffset,
             ArrayRef<int64_t> shape, Type element, Value leading = {},
             Value dynamicOffset = {});

/// The activation of the first projection on f32 scalars or vectors:
/// act(gate) * up, or act(up) when the expert is ungated (gate null).
Value activate(IR &ir, FfnAttr ffn, Value gate, Value up);

/// Emits one token's routing from its logits.
class RoutingEmitter {
public:
  RoutingEmitter(IR &ir, RoutingAttr routing, int64_t experts)
      : ir(ir), routing(routing), E(experts), k(routing.getK()) {}

  /// Fills ids[k] (index, -1 for unused slots) and weights[k] (f32) from
  /// `logits` (memref<E x f32>), with `correction` (memref<E x f32>, or null)
  /// added to the scores only to choose.
  void emit(Value logits, Value correction, SmallVector<Value> &ids,
            SmallVector<Value> &weights);

private:
  Value stackArray(int64_t n, Type type);
  void clear(Value flags);
  std::pair<Value, Value> pickBest(Value values, Value taken);
  void scoreThenSelect(Value logits, Value correction, Value taken,
                       SmallVector<Value> &ids, SmallVector<Value> &weights);
  void maskGroups(Value choice);
  void sparsemixer(Value logits, Value taken, SmallVector<Value> &ids,
                   SmallVector<Value> &weights);

  IR &ir;
  RoutingAttr routing;
  int64_t E, k;
};

} // namespace mlir::moe::codegen

#endif // MOEC_LIB_CODEGEN_COMMON_EMITTERS_H
