//===- MixedPrecision.cpp - MC#-style per-expert bit widths ---------------===//
//
// Experts differ in how often they run, how much their output weighs and how
// badly quantization hurts them, so a uniform width wastes bits. Each expert's
// quantization loss is measured at every candidate width on the calibration
// tokens routed to it, weighted by its routing frequency and mean routing
// weight (MC#), and the widths are chosen by an exact knapsack under a
// mean-bits budget. The choice is recorded as moe.quantize/moe.dequantize on
// slices of the stacked weights; the weight writer and the evaluator execute
// it.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "lib/Compress/BitAllocation.h"
#include "lib/Compress/ExpertScores.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>
#include <cstdio>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEMIXEDPRECISION
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;
using reference::RefTensor;

namespace {

constexpr llvm::StringLiteral kPassName = "moe-mixed-precision";

/// The routed experts' stacked weights [E, out, in] of `layer`, with names
/// for diagnostics.
SmallVector<std::pair<OpOperand *, StringRef>> routedWeights(LayerOp layer) {
  SmallVector<std::pair<OpOperand *, StringRef>> weights;
  for (OpOperand &operand : layer.getGateProjMutable())
    weights.push_back({&operand, "gate_proj"});
  weights.push_back({&layer.getUpProjMutable(), "up_proj"});
  weights.push_back({&layer.getDownProjMutable(), "down_proj"});
  return weights;
}

/// The moe.dequantize in the expression computing `weight`, if any.
DequantizeOp findDequantize(Value weight) {
  SmallVector<Value> worklist{weight};
  while (!worklist.empty()) {
    Operation *op = worklist.pop_back_val().getDefiningOp();
    if (!op)
      continue;
    if (auto dequant = dyn_cast<DequantizeOp>(op))
      return dequant;
    llvm::append_range(worklist, op->getOperands());
  }
  return {};
}

/// The storage types of int_group `encoding` for a weight of `shape`
/// ([..., N, K]): values (packed two per byte at 4 bits) and f32 scales.
SmallVector<Type> storageTypes(MLIRContext *ctx, ArrayRef<int64_t> shape,
                               IntGroupEncodingAttr encoding) {
  int64_t cols = shape.back();
  SmallVector<int64_t> values(shape), scales(shape);
  values.back() = encoding.getBits() == 4 ? cols / 2 : cols;
  scales.back() = cols / encoding.getGroupSize();
  return {RankedTensorType::get(values, IntegerType::get(ctx, 8)),
          RankedTensorType::get(scales, Float32Type::get(ctx))};
}

/// Bytes one expert's matrix [N, K] takes stored under `encoding`.
int64_t storedBytes(int64_t rows, int64_t cols, IntGroupEncodingAttr encoding) {
  return rows * cols * encoding.getBits() / 8 +
         rows * (cols / encoding.getGroupSize()) * 4;
}

struct MixedPrecisionPass
    : mlir::moe::impl::MoEMixedPrecisionBase<MixedPrecisionPass> {
  using Base::Base;

  /// Candidate widths, widest first.
  SmallVector<int64_t> widths;

  void runOnOperation() override {
    Operation *root = getOperation();
    widths.assign(choices.begin(), choices.end());
    if (widths.empty())
      widths = {8, 4};
    llvm::sort(widths, std::greater<int64_t>());
    for (auto [i, w] : llvm::enumerate(widths)) {
      if (w != 8 && w != 4) {
        root->emitError() << kPassName
                          << ": choices must be 8 and/or 4 (int_group "
                             "widths), got "
                          << w;
        return signalPassFailure();
      }
      if (i > 0 && widths[i - 1] == w) {
        root->emitError() << kPassName << ": choices lists " << w << " twice";
        return signalPassFailure();
      }
    }
    if (groupSize < 1) {
      root->emitError() << kPassName << ": group-size must be positive, got "
                        << int64_t(groupSize);
      return signalPassFailure();
    }
    if (!(budgetBits >= double(widths.back()))) {
      root->emitError() << kPassName
                        << ": budget-bits=" << compress::shortNumber(budgetBits)
                        << " is below the narrowest choice, " << widths.back()
                        << " bits";
      return signalPassFailure();
    }
    if (failed(compress::transformLayers(
            root, kPassName, weights, calibration, /*needCalibration=*/true,
            [&](LayerOp layer) { return checkLayer(layer); },
            [&](LayerOp layer, compress::PassData &data) {
              return allocateLayer(layer, data);
            })))
      return signalPassFailure();
  }

  IntGroupEncodingAttr encodingFor(int64_t bits) {
    return IntGroupEncodingAttr::get(&getContext(), bits, groupSize,
                                     /*symmetric=*/true);
  }

  LogicalResult checkLayer(LayerOp layer) {
    for (auto [operand, name] : routedWeights(layer)) {
      if (DequantizeOp dequant = findDequantize(operand->get())) {
        InFlightDiagnostic diag =
            layer.emitOpError()
            << kPassName << ": the " << name << " is already quantized ("
            << dequant->getName() << " " << dequant.getEncoding()
            << "); mixed precision chooses widths for unquantized weights";
        diag.attachNote(dequant.getLoc()) << "quantized here";
        return diag;
      }
      auto type = cast<RankedTensorType>(operand->get().getType());
      int64_t cols = type.getDimSize(type.getRank() - 1);
      if (cols % groupSize != 0)
        return layer.emitOpError()
               << kPassName << ": group-size " << int64_t(groupSize)
               << " does not divide the input dimension " << cols << " of the "
               << name << " (" << type << ")";
      if (cols % 2 != 0 && llvm::is_contained(widths, 4))
        return layer.emitOpError()
               << kPassName << ": 4-bit weights pack two values per byte and "
               << "need an even input dimension; the " << name << " has "
               << cols;
    }
    int64_t experts =
        cast<RankedTensorType>(layer.getUpProj().getType()).getDimSize(0);
    for (int64_t e : compress::superExpertsOf(layer))
      if (e < 0 || e >= experts)
        return layer.emitOpError()
               << kPassName << ": " << compress::kSuperExpertsAttr
               << " names expert " << e << " of a layer with " << experts
               << " experts";
    return success();
  }

  /// `m` quantized and dequantized at `bits`, as the evaluator would read
  /// it (rounded to `element`).
  FailureOr<RefTensor> roundTrip(LayerOp layer, const RefTensor &m,
                                 int64_t bits, Type element) {
    IntGroupEncodingAttr encoding = encodingFor(bits);
    auto emitError = [&] { return layer.emitOpError() << kPassName << ": "; };
    FailureOr<SmallVector<RefTensor>> storage = reference::quantize(
        emitError, encoding, m, storageTypes(&getContext(), m.shape, encoding));
    if (failed(storage))
      return failure();
    SmallVector<const RefTensor *> parts;
    for (RefTensor &part : *storage)
      parts.push_back(&part);
    return reference::dequantize(emitError, encoding, parts,
                                 RankedTensorType::get(m.shape, element));
  }

  /// L_{e,b}: the relative error of expert e's output on its routed rows
  /// with its gate, up and down at each width.
  FailureOr<std::vector<double>>
  measureLosses(LayerOp layer, const reference::FfnValues &routed,
                const reference::ExpertMatrices &matrices,
                const RefTensor &rows) {
    Type element = cast<RankedTensorType>(routed.up.getType()).getElementType();
    RefTensor exact = compress::expertForward(routed.ffn, matrices, rows);
    double exactNorm = 0.0;
    for (double v : exact.data)
      exactNorm += v * v;
    exactNorm = std::sqrt(exactNorm);
    std::vector<double> losses;
    for (int64_t bits : widths) {
      reference::ExpertMatrices quantized = matrices;
      if (matrices.gate) {
        FailureOr<RefTensor> gate =
            roundTrip(layer, *matrices.gate, bits, element);
        if (failed(gate))
          return failure();
        quantized.gate = std::move(*gate);
      }
      FailureOr<RefTensor> up = roundTrip(layer, matrices.up, bits, element);
      FailureOr<RefTensor> down =
          roundTrip(layer, matrices.down, bits, element);
      if (failed(up) || failed(down))
        return failure();
      quantized.up = std::move(*up);
      quantized.down = std::move(*down);
      RefTensor approx = compress::expertForward(routed.ffn, quantized, rows);
      double error = 0.0;
      for (auto [a, b] : llvm::zip(exact.data, approx.data))
        error += (a - b) * (a - b);
      error = std::sqrt(error);
      losses.push_back(exactNorm > 0.0 ? error / exactNorm : error);
    }
    return losses;
  }

  LogicalResult allocateLayer(LayerOp layer, compress::PassData &data) {
    auto input = cast<RankedTensorType>(layer.getInput().getType());
    FailureOr<RefTensor> states = data.statesFor(layer, input.getDimSize(1));
    if (failed(states))
      return failure();
    reference::WeightMaterializer &materializer = data.getWeights();
    FailureOr<compress::LayerObservation> observed =
        compress::observeLayer(layer, materializer, std::move(*states));
    if (failed(observed))
      return failure();
    reference::FfnValues routed = compress::routedExperts(layer);
    int64_t experts = routed.numExperts;
    int64_t tokens = observed->input.dim(0);

    // Parameters of one expert: its slice of every routed weight.
    int64_t params = 0;
    for (auto [operand, name] : routedWeights(layer)) {
      auto type = cast<RankedTensorType>(operand->get().getType());
      params += type.getNumElements() / experts;
    }

    // cost[e][i] = f_e * mean_weight_e^1.5 * L_{e, widths[i]}; an expert no
    // token reaches costs nothing at any width.
    std::vector<std::vector<double>> cost(
        experts, std::vector<double>(widths.size(), 0.0));
    for (int64_t e = 0; e < experts; ++e) {
      if (observed->assignments[e].empty())
        continue;
      FailureOr<reference::ExpertMatrices> matrices =
          reference::loadExpertMatrices(materializer, routed, e,
                                        reference::ExpertPart::All);
      if (failed(matrices))
        return failure();
      FailureOr<std::vector<double>> losses =
          measureLosses(layer, routed, *matrices,
                        compress::expertInputRows(layer, *observed, e));
      if (failed(losses))
        return failure();
      std::vector<double> gates = observed->routedWeights(e);
      double frequency = double(gates.size()) / double(tokens);
      double meanWeight = 0.0;
      for (double g : gates)
        meanWeight += g;
      meanWeight = std::max(0.0, meanWeight / double(gates.size()));
      for (size_t i = 0; i < widths.size(); ++i)
        cost[e][i] = frequency * std::pow(meanWeight, 1.5) * (*losses)[i];
    }

    // Super experts take the widest choice; the rest share what remains.
    SmallVector<int64_t> super = compress::superExpertsOf(layer);
    int64_t budget = int64_t(std::floor(budgetBits * double(params * experts)));
    std::vector<int64_t> chosen(experts, widths.front());
    BitAllocationProblem problem;
    problem.widths.assign(widths.begin(), widths.end());
    SmallVector<int64_t> free;
    for (int64_t e = 0; e < experts; ++e) {
      if (llvm::is_contained(super, e)) {
        budget -= params * widths.front();
        continue;
      }
      free.push_back(e);
      problem.params.push_back(params);
      problem.cost.push_back(cost[e]);
    }
    problem.budgetBits = budget;
    if (!free.empty()) {
      llvm::Expected<BitAllocation> solution = solveBitAllocation(problem);
      if (!solution)
        return layer.emitOpError()
               << kPassName << ": " << llvm::toString(solution.takeError())
               << " (budget-bits=" << compress::shortNumber(budgetBits) << ", "
               << super.size() << " super experts pinned at " << widths.front()
               << " bits)";
      for (auto [i, e] : llvm::enumerate(free))
        chosen[e] = solution->width[i];
    } else if (budget < 0) {
      return layer.emitOpError()
             << kPassName
             << ": budget-bits=" << compress::shortNumber(budgetBits)
             << " cannot hold the layer's super experts at " << widths.front()
             << " bits";
    }
    double objective = 0.0;
    for (int64_t e = 0; e < experts; ++e)
      objective += cost[e][llvm::find(widths, chosen[e]) - widths.begin()];

    std::pair<int64_t, int64_t> bytes = weightBytes(layer, chosen);
    rewriteWeights(layer, chosen);
    recordReport(layer, chosen, objective, bytes);
    return success();
  }

  /// Each stacked weight becomes the concat, over runs of experts sharing a
  /// width, of dequantize(quantize(slice)) at that width.
  void rewriteWeights(LayerOp layer, ArrayRef<int64_t> chosen) {
    SmallVector<compress::ExpertRun> runs;
    SmallVector<int64_t> runWidths;
    for (auto [e, bits] : llvm::enumerate(chosen)) {
      if (!runs.empty() && runWidths.back() == bits) {
        ++runs.back().end;
        continue;
      }
      runs.push_back({int64_t(e), int64_t(e) + 1});
      runWidths.push_back(bits);
    }
    OpBuilder b(layer);
    DenseMap<Value, Value> rewritten;
    for (auto [operand, name] : routedWeights(layer)) {
      Value weight = operand->get();
      auto it = rewritten.find(weight);
      if (it == rewritten.end()) {
        Location loc = weight.getLoc();
        auto quantize = [&](Value slice, size_t run) -> Value {
          IntGroupEncodingAttr encoding = encodingFor(runWidths[run]);
          auto type = cast<RankedTensorType>(slice.getType());
          auto quant = QuantizeOp::create(
              b, loc, storageTypes(&getContext(), type.getShape(), encoding),
              slice, encoding, /*calibration=*/Value(), /*clip=*/FloatAttr());
          return DequantizeOp::create(
              b, loc, DequantizeOp::getResultTypeFor(type, encoding),
              quant.getStorage(), encoding);
        };
        it = rewritten
                 .insert({weight, compress::concatExpertRuns(b, loc, weight,
                                                             runs, quantize)})
                 .first;
      }
      operand->set(it->second);
    }
  }

  /// Bytes of the routed expert weights as the layer stores them now (before
  /// rewriteWeights) and as `chosen` widths will store them.
  std::pair<int64_t, int64_t> weightBytes(LayerOp layer,
                                          ArrayRef<int64_t> chosen) {
    int64_t experts = chosen.size();
    int64_t before = 0, after = 0;
    DenseSet<Value> counted;
    for (auto [operand, name] : routedWeights(layer)) {
      Value weight = operand->get();
      if (!counted.insert(weight).second)
        continue;
      auto type = cast<RankedTensorType>(weight.getType());
      int64_t rows = type.getDimSize(1), cols = type.getDimSize(2);
      before +=
          type.getNumElements() * int64_t(type.getElementTypeBitWidth()) / 8;
      for (int64_t e = 0; e < experts; ++e)
        after += storedBytes(rows, cols, encodingFor(chosen[e]));
    }
    return {before, after};
  }

  void recordReport(LayerOp layer, ArrayRef<int64_t> chosen, double objective,
                    std::pair<int64_t, int64_t> bytes) {
    auto function = layer->getParentOfType<func::FuncOp>();
    if (!function)
      return;
    auto [before, after] = bytes;
    Builder b(&getContext());
    function->setAttr(
        compress::reportName(kPassName),
        b.getDictionaryAttr(
            {b.getNamedAttr("bits", b.getDenseI64ArrayAttr(chosen)),
             b.getNamedAttr("budget_bits", b.getF64FloatAttr(budgetBits)),
             b.getNamedAttr("bytes_after", b.getI64IntegerAttr(after)),
             b.getNamedAttr("bytes_before", b.getI64IntegerAttr(before)),
             b.getNamedAttr("objective", b.getF64FloatAttr(objective))}));
  }
};

} // namespace
