//===- QuantizeExperts.cpp - group-wise integer expert weights ------------===//

#include "passes/Passes.h"

#include "llvm/ADT/TypeSwitch.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEQUANTIZEEXPERTS
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The expert weight operands (gate, up, down; routed and shared) of `op`.
SmallVector<OpOperand *> expertWeights(Operation *op) {
  SmallVector<OpOperand *> weights;
  auto addOptional = [&](MutableOperandRange range) {
    for (OpOperand &operand : range)
      weights.push_back(&operand);
  };
  llvm::TypeSwitch<Operation *>(op)
      .Case<ExpertsOp, SharedExpertOp>([&](auto ffn) {
        addOptional(ffn.getGateProjMutable());
        weights.push_back(&ffn.getUpProjMutable());
        weights.push_back(&ffn.getDownProjMutable());
      })
      .Case([&](LayerOp layer) {
        addOptional(layer.getGateProjMutable());
        weights.push_back(&layer.getUpProjMutable());
        weights.push_back(&layer.getDownProjMutable());
        addOptional(layer.getSharedGateProjMutable());
        addOptional(layer.getSharedUpProjMutable());
        addOptional(layer.getSharedDownProjMutable());
      });
  return weights;
}

struct QuantizeExpertsPass
    : mlir::moe::impl::MoEQuantizeExpertsBase<QuantizeExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    if (bits != 8 && bits != 4) {
      getOperation()->emitError()
          << "moe-quantize-experts: bits must be 8 or 4, got " << int64_t(bits);
      return signalPassFailure();
    }
    if (groupSize < 1) {
      getOperation()->emitError()
          << "moe-quantize-experts: group-size must be positive, got "
          << int64_t(groupSize);
      return signalPassFailure();
    }
    MLIRContext *ctx = &getContext();
    auto encoding = IntGroupEncodingAttr::get(ctx, bits, groupSize, symmetric);
    // One quantization per weight value, shared by every op that reads it.
    DenseMap<Value, Value> quantized;
    WalkResult result = getOperation()->walk([&](Operation *op) {
      for (OpOperand *operand : expertWeights(op)) {
        Value weight = operand->get();
        if (weight.getDefiningOp<DequantizeOp>())
          continue; // already stored quantized
        auto it = quantized.find(weight);
        if (it == quantized.end()) {
          FailureOr<Value> replacement = quantize(op, weight, encoding);
          if (failed(replacement))
            return WalkResult::interrupt();
          it = quantized.insert({weight, *replacement}).first;
        }
        operand->set(it->second);
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }

  /// moe.dequantize(moe.quantize(weight)), built before its first user (so
  /// the IR reads gate, up, down in order).
  FailureOr<Value> quantize(Operation *user, Value weight,
                            IntGroupEncodingAttr encoding) {
    auto type = cast<RankedTensorType>(weight.getType());
    int64_t rank = type.getRank();
    int64_t rows = type.getDimSize(rank - 2), cols = type.getDimSize(rank - 1);
    if (cols % groupSize != 0)
      return user->emitError()
             << "moe-quantize-experts: group-size " << int64_t(groupSize)
             << " does not divide the input dimension " << cols
             << " of a weight of type " << type;
    if (bits == 4 && cols % 2 != 0)
      return user->emitError() << "moe-quantize-experts: 4-bit weights pack "
                                  "two values per byte and need an even "
                                  "input dimension, got "
                               << cols;
    SmallVector<int64_t> batch(type.getShape().drop_back(2));
    auto shape = [&](int64_t last) {
      SmallVector<int64_t> s(batch);
      s.push_back(rows);
      s.push_back(last);
      return s;
    };
    OpBuilder b(&getContext());
    b.setInsertionPoint(user);
    Location loc = weight.getLoc();
    SmallVector<Type> storage{
        RankedTensorType::get(shape(bits == 4 ? cols / 2 : cols),
                              b.getIntegerType(8)),
        RankedTensorType::get(shape(cols / groupSize), b.getF32Type())};
    if (!symmetric)
      storage.push_back(storage[1]);
    auto quant = QuantizeOp::create(b, loc, storage, weight, encoding);
    return DequantizeOp::create(b, loc, type, quant.getStorage(), encoding)
        .getResult();
  }
};

} // namespace
