//===- LatentFactorize.cpp - MoLE latent experts --------------------------===//
//
// The routed experts' chosen projections become moe.latent_product of
// moe.factorize: per group of experts, one basis B shared by the group and a
// small factor per expert (lib/Compress/LatentFactorization.h has the
// numerics). The factorization is recorded in the IR and executed where
// weights are materialized; the pass computes it here only to report its
// error, and only when the weights are reachable.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "lib/Compress/Calibration.h"
#include "lib/Compress/LatentFactorization.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <cmath>

namespace mlir::moe {
#define GEN_PASS_DEF_MOELATENTFACTORIZE
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

constexpr llvm::StringLiteral kPassName = "moe-latent-factorize";

enum class Projection { Gate, Up, Down };

/// What one layer's factorization saves and costs, summed over its
/// factorized projections.
struct LayerReport {
  int64_t paramsBefore = 0, paramsAfter = 0;
  int64_t flopsBefore = 0, flopsAfter = 0;
  /// Over all factorized stacks S: ||S - A B||^2, ||S||^2, and in the
  /// (whitened) space the SVD ran in, the residual, discarded and total
  /// energies.
  double errorSq = 0, normSq = 0;
  double whitenedErrorSq = 0, discarded = 0, total = 0;
  bool measured = false;
};

StringRef projectionName(Projection projection) {
  switch (projection) {
  case Projection::Gate:
    return "gate";
  case Projection::Up:
    return "up";
  case Projection::Down:
    return "down";
  }
  return "";
}

/// The routed experts' weight operands of `op` for `projection` (null when
/// the op has none, e.g. a gate fused into up).
OpOperand *projectionOperand(Operation *op, Projection projection) {
  auto pick = [&](auto ffn) -> OpOperand * {
    switch (projection) {
    case Projection::Gate:
      return ffn.getGateProj() ? &ffn.getGateProjMutable()[0] : nullptr;
    case Projection::Up:
      return &ffn.getUpProjMutable();
    case Projection::Down:
      return &ffn.getDownProjMutable();
    }
    return nullptr;
  };
  if (auto layer = dyn_cast<LayerOp>(op))
    return pick(layer);
  if (auto experts = dyn_cast<ExpertsOp>(op))
    return pick(experts);
  return nullptr;
}

/// The routing's k for a moe.layer, or for a moe.experts fed by a
/// moe.dispatch; 1 otherwise (then FLOPs are per routed row).
int64_t routedPerToken(Operation *op) {
  if (auto layer = dyn_cast<LayerOp>(op))
    return layer.getRouting().getK();
  if (auto experts = dyn_cast<ExpertsOp>(op))
    if (auto dispatch = experts.getInput().getDefiningOp<DispatchOp>())
      return cast<RankedTensorType>(dispatch.getTopkIds().getType())
          .getDimSize(1);
  return 1;
}

/// Whether `weight` was quantized by a pass (moe.dequantize of a
/// moe.quantize, or slices and concatenations holding one), as opposed to
/// quantized storage a checkpoint ships (an FP8 checkpoint's moe.weight
/// values and scales), which is factorized from its dequantized values.
bool quantizedByPass(Value weight) {
  Operation *op = weight.getDefiningOp();
  if (!op)
    return false;
  if (auto dequant = dyn_cast<DequantizeOp>(op))
    return llvm::any_of(dequant.getStorage(), [](Value stored) {
      return bool(stored.getDefiningOp<QuantizeOp>());
    });
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(op))
    return quantizedByPass(slice.getSource());
  if (auto select = dyn_cast<SelectChannelsOp>(op))
    return quantizedByPass(select.getInput());
  if (auto concat = dyn_cast<tensor::ConcatOp>(op))
    return llvm::any_of(concat.getInputs(), quantizedByPass);
  return false;
}

struct LatentFactorizePass
    : mlir::moe::impl::MoELatentFactorizeBase<LatentFactorizePass> {
  using Base::Base;

  void runOnOperation() override {
    Operation *root = getOperation();
    // Option and structural errors first: they need neither weights nor
    // calibration.
    if (rank < 1) {
      root->emitError() << kPassName
                        << ": rank must be a positive integer, got "
                        << int64_t(rank);
      return signalPassFailure();
    }
    if (group < 0) {
      root->emitError() << kPassName
                        << ": group must be positive (or 0: all experts), got "
                        << int64_t(group);
      return signalPassFailure();
    }
    SmallVector<Projection> chosen;
    for (const std::string &name :
         projections.empty() ? std::vector<std::string>{"gate", "up"}
                             : std::vector<std::string>(projections)) {
      std::optional<Projection> projection =
          llvm::StringSwitch<std::optional<Projection>>(name)
              .Case("gate", Projection::Gate)
              .Case("up", Projection::Up)
              .Case("down", Projection::Down)
              .Default(std::nullopt);
      if (!projection) {
        root->emitError() << kPassName << ": unknown projection '" << name
                          << "' (expected gate, up or down)";
        return signalPassFailure();
      }
      if (!llvm::is_contained(chosen, *projection))
        chosen.push_back(*projection);
    }
    if (whiten && llvm::is_contained(chosen, Projection::Down)) {
      root->emitError() << kPassName
                        << ": whiten applies to gate and up only: down's "
                           "input is the expert's intermediate, which the "
                           "calibration states do not hold";
      return signalPassFailure();
    }
    // A pass instance may run again: nothing carries over.
    calibrationPath.clear();
    calibrationFile.reset();
    statesByFunction.clear();
    factorizations.clear();
    if (whiten) {
      calibrationPath = compress::optionOrModuleAttr(
          root, calibration, compress::kCalibrationAttr);
      if (calibrationPath.empty()) {
        root->emitError() << kPassName
                          << ": whiten needs calibration hidden states: give "
                             "the `calibration` option (a safetensors file) or "
                             "run it from moe-compile --calibration";
        return signalPassFailure();
      }
      SmallString<256> absolute(calibrationPath);
      if (std::error_code ec = llvm::sys::fs::make_absolute(absolute)) {
        root->emitError() << kPassName << ": " << calibrationPath << ": "
                          << ec.message();
        return signalPassFailure();
      }
      calibrationPath = std::string(absolute);
      auto file = ::moe::SafetensorsFile::open(calibrationPath);
      if (!file) {
        root->emitError() << kPassName << ": "
                          << llvm::toString(file.takeError());
        return signalPassFailure();
      }
      calibrationFile = std::move(*file);
    }

    SmallVector<Operation *> users;
    root->walk([&](Operation *op) {
      if (isa<LayerOp, ExpertsOp>(op))
        users.push_back(op);
    });
    llvm::MapVector<Operation *, LayerReport> reports;
    for (Operation *user : users) {
      LayerReport &report = reports[user];
      for (Projection projection : chosen)
        if (failed(factorize(user, projection, report)))
          return signalPassFailure();
    }

    // The errors, when the weights are reachable: the report is useful
    // without them (parameters and FLOPs), so their absence is no error.
    if (!compress::optionOrModuleAttr(root, weights, compress::kWeightsDirAttr)
             .empty()) {
      FailureOr<std::unique_ptr<compress::PassData>> data =
          compress::PassData::open(root, kPassName, weights, calibration,
                                   /*needCalibration=*/false);
      if (failed(data))
        return signalPassFailure();
      for (auto &[user, report] : reports)
        if (failed(measure(user, (*data)->getWeights(), report)))
          return signalPassFailure();
    }
    recordReports(reports);
  }

  /// Replaces `user`'s `projection` weight w by
  /// moe.latent_product(moe.factorize(w)) and adds its counts to `report`.
  LogicalResult factorize(Operation *user, Projection projection,
                          LayerReport &report) {
    OpOperand *operand = projectionOperand(user, projection);
    if (!operand)
      return success(); // a gate fused into up is factorized with up
    Value weight = operand->get();
    if (weight.getDefiningOp<LatentProductOp>())
      return success(); // already factorized
    // The SVD of a quantized grid keeps none of the quantization's savings
    // (the factors are f32) and adds the truncation's error to its rounding.
    if (quantizedByPass(weight))
      return user->emitError()
             << kPassName << ": the " << projectionName(projection)
             << " weight is already quantized; factorize first, then quantize "
                "(run moe-latent-factorize before moe-quantize-experts, "
                "which then quantizes the factors)";
    auto type = cast<RankedTensorType>(weight.getType());
    if (type.getRank() != 3 || !type.hasStaticShape())
      return user->emitError()
             << kPassName
             << ": routed expert weights must be static [experts, out, in], "
                "got "
             << type;
    int64_t experts = type.getDimSize(0), rows = type.getDimSize(1),
            columns = type.getDimSize(2);
    int64_t perGroup = group == 0 ? experts : int64_t(group);
    int64_t latentRank = rank;
    if (experts % perGroup != 0)
      return user->emitError()
             << kPassName << ": group " << perGroup
             << " does not divide the number of experts " << experts;
    int64_t maxRank = std::min(perGroup * rows, columns);
    if (latentRank > maxRank)
      return user->emitError() << kPassName << ": rank " << latentRank
                               << " exceeds min(group * out, in) = " << maxRank
                               << " of a weight of type " << type;

    OpBuilder b(user);
    Location loc = weight.getLoc();
    Value whitening;
    if (whiten) {
      FailureOr<Value> states = calibrationStates(user, columns);
      if (failed(states))
        return failure();
      whitening = *states;
    }
    int64_t groups = experts / perGroup;
    Type f32 = b.getF32Type();
    auto factorized = FactorizeOp::create(
        b, loc, RankedTensorType::get({experts, rows, latentRank}, f32),
        RankedTensorType::get({groups, latentRank, columns}, f32), weight,
        whitening, latentRank, perGroup);
    // Gate and up run in the latent space (x B^T, then A_e): the product is
    // never formed, let alone rounded to the checkpoint's type, so it is typed
    // like its f32 factors and the IR states what the compiled code computes.
    // Down's input is per expert: it keeps a materialized product of the
    // weight's type.
    Type productType = projection == Projection::Down
                           ? Type(type)
                           : RankedTensorType::get(type.getShape(), f32);
    operand->set(LatentProductOp::create(
        b, loc, productType, factorized.getFactors(), factorized.getBasis()));
    factorizations[user].push_back(factorized);

    int64_t k = routedPerToken(user);
    report.paramsBefore += experts * rows * columns;
    report.paramsAfter +=
        experts * rows * latentRank + groups * latentRank * columns;
    report.flopsBefore += 2 * k * rows * columns;
    // Gate and up read the token itself: x B^T once per group the token's
    // experts fall in. Down reads each expert's own intermediate.
    int64_t projectionsOfBasis =
        projection == Projection::Down ? k : std::min(k, groups);
    report.flopsAfter +=
        2 * (projectionsOfBasis * latentRank * columns + k * rows * latentRank);
    return success();
  }

  /// A moe.weight reading the calibration states of `user`'s layer from the
  /// calibration file by absolute path (one per function).
  FailureOr<Value> calibrationStates(Operation *user, int64_t hidden) {
    auto function = user->getParentOfType<func::FuncOp>();
    auto it = statesByFunction.find(function);
    if (it != statesByFunction.end())
      return it->second;
    int64_t layer = compress::layerIndexOf(user);
    std::string name = "layer" + std::to_string(layer) + ".hidden_states";
    const ::moe::TensorInfo *tensor = calibrationFile->find(name);
    if (!tensor) {
      name = "hidden_states";
      tensor = calibrationFile->find(name);
    }
    if (!tensor)
      return user->emitError()
             << kPassName << ": " << calibrationPath << " has no 'layer"
             << layer << ".hidden_states' and no 'hidden_states' tensor";
    OpBuilder b(user);
    Type element = tensor->dtype == MOE_DTYPE_F32    ? b.getF32Type()
                   : tensor->dtype == MOE_DTYPE_BF16 ? b.getBF16Type()
                                                     : Type();
    if (!element || tensor->shape.size() != 2 || tensor->shape[1] != hidden ||
        tensor->shape[0] < 1)
      return user->emitError()
             << kPassName << ": calibration tensor '" << name << "' of "
             << calibrationPath << " must be F32 or BF16 [T >= 1, " << hidden
             << "]";
    if (function)
      b.setInsertionPointToStart(&function.getBody().front());
    Value states =
        WeightOp::create(
            b, user->getLoc(), RankedTensorType::get(tensor->shape, element),
            b.getStringAttr(name), b.getStringAttr(calibrationPath),
            /*experts=*/nullptr, /*permutation=*/nullptr)
            .getResult();
    statesByFunction[function] = states;
    return states;
  }

  /// Adds the errors of `user`'s factorizations, computed from the weights.
  LogicalResult measure(Operation *user,
                        reference::WeightMaterializer &materializer,
                        LayerReport &report) {
    for (FactorizeOp op : factorizations[user]) {
      RankedTensorType type = op.getInput().getType();
      int64_t rows = type.getDimSize(1), columns = type.getDimSize(2);
      int64_t perGroup = op.getGroup();
      std::optional<compress::Whitening> whitening;
      if (Value states = op.getWhitening()) {
        FailureOr<reference::RefTensor> x = materializer.get(states);
        if (failed(x))
          return failure();
        whitening = compress::whiteningFromRows(
            Eigen::Map<const compress::LatentMatrix>(x->data.data(), x->dim(0),
                                                     columns));
      }
      const compress::Whitening *w = whitening ? &*whitening : nullptr;
      compress::LatentMatrix stack(perGroup * rows, columns);
      for (int64_t first = 0; first < type.getDimSize(0); first += perGroup) {
        for (int64_t i = 0; i < perGroup; ++i) {
          FailureOr<reference::RefTensor> matrix =
              materializer.get(op.getInput(), first + i);
          if (failed(matrix))
            return failure();
          std::copy_n(matrix->data.data(), rows * columns,
                      stack.data() + i * rows * columns);
        }
        compress::LatentFactors factors =
            compress::factorizeStack(stack, op.getRank(), w);
        report.errorSq += compress::squaredError(stack, factors);
        report.normSq += stack.squaredNorm();
        report.whitenedErrorSq += compress::squaredError(stack, factors, w);
        report.discarded += factors.discardedEnergy;
        report.total += factors.totalEnergy;
      }
    }
    report.measured = true;
    return success();
  }

  void recordReports(const llvm::MapVector<Operation *, LayerReport> &reports) {
    // Layers sharing a function (rare) share its report: counts add up.
    llvm::MapVector<func::FuncOp, LayerReport> byFunction;
    for (const auto &[user, report] : reports) {
      auto function = user->getParentOfType<func::FuncOp>();
      if (!function)
        continue;
      LayerReport &sum = byFunction[function];
      sum.paramsBefore += report.paramsBefore;
      sum.paramsAfter += report.paramsAfter;
      sum.flopsBefore += report.flopsBefore;
      sum.flopsAfter += report.flopsAfter;
      sum.errorSq += report.errorSq;
      sum.normSq += report.normSq;
      sum.whitenedErrorSq += report.whitenedErrorSq;
      sum.discarded += report.discarded;
      sum.total += report.total;
      sum.measured |= report.measured;
    }
    Builder b(&getContext());
    for (auto &[function, report] : byFunction) {
      SmallVector<NamedAttribute> entries{
          b.getNamedAttr("rank", b.getI64IntegerAttr(int64_t(rank))),
          b.getNamedAttr("group", b.getI64IntegerAttr(int64_t(group))),
          b.getNamedAttr("params_before",
                         b.getI64IntegerAttr(report.paramsBefore)),
          b.getNamedAttr("params_after",
                         b.getI64IntegerAttr(report.paramsAfter)),
          b.getNamedAttr("flops_per_token_before",
                         b.getI64IntegerAttr(report.flopsBefore)),
          b.getNamedAttr("flops_per_token_after",
                         b.getI64IntegerAttr(report.flopsAfter))};
      if (report.measured) {
        auto ratio = [](double num, double den) {
          return den > 0 ? num / den : 0.0;
        };
        entries.push_back(b.getNamedAttr(
            "relative_error", b.getF64FloatAttr(std::sqrt(
                                  ratio(report.errorSq, report.normSq)))));
        entries.push_back(b.getNamedAttr(
            "discarded_energy_fraction",
            b.getF64FloatAttr(ratio(report.discarded, report.total))));
        if (whiten)
          entries.push_back(b.getNamedAttr(
              "whitened_relative_error",
              b.getF64FloatAttr(
                  std::sqrt(ratio(report.whitenedErrorSq, report.total)))));
      }
      function->setAttr(compress::reportName(kPassName),
                        b.getDictionaryAttr(entries));
    }
  }

  std::string calibrationPath;
  // Shared, so the pass stays copyable (pass managers clone passes).
  std::shared_ptr<::moe::SafetensorsFile> calibrationFile;
  DenseMap<func::FuncOp, Value> statesByFunction;
  DenseMap<Operation *, SmallVector<FactorizeOp>> factorizations;
};

} // namespace
