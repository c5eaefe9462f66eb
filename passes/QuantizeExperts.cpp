//===- QuantizeExperts.cpp - quantized expert weights ---------------------===//
//
// Records the quantization of every expert weight as moe.quantize +
// moe.dequantize: group-wise integers chosen by round to nearest or by GPTQ
// (MoEQuant's router-weighted Hessian), FP8 e4m3 with 128x128 block scales, or
// MXFP4. The weight writer executes it; GPTQ's calibration inputs reach it as
// a safetensors file the pass writes and the IR references.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "lib/Compress/Calibration.h"
#include "lib/Compress/ExpertScores.h"
#include "lib/Weights/Safetensors.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <cmath>

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

/// Whether `operand` (one of expertWeights(op)) is a down projection.
bool isDownProjection(Operation *op, OpOperand *operand) {
  return llvm::TypeSwitch<Operation *, bool>(op)
      .Case<ExpertsOp, SharedExpertOp>(
          [&](auto ffn) { return operand == &ffn.getDownProjMutable(); })
      .Case([&](LayerOp layer) {
        return operand == &layer.getDownProjMutable() ||
               llvm::any_of(
                   layer.getSharedDownProjMutable(),
                   [&](OpOperand &shared) { return &shared == operand; });
      })
      .Default(false);
}

/// The latent product a gate or up weight is (moe-latent-factorize), whose
/// factors this pass quantizes instead of the product; null otherwise. A
/// latent down projection is read as a materialized product by the CPU code,
/// so it is quantized as a dense weight.
LatentProductOp latentFirstProjection(Operation *op, OpOperand *operand) {
  if (isDownProjection(op, operand))
    return {};
  return operand->get().getDefiningOp<LatentProductOp>();
}

constexpr llvm::StringLiteral kPassName = "moe-quantize-experts";

/// Whether `weight` is already stored quantized: a moe.dequantize, or slices
/// and concatenations of such (moe-prune-experts after quantization,
/// moe-mixed-precision's runs of widths). Quantizing those again would
/// silently quantize twice.
bool storedQuantized(Value weight) {
  Operation *op = weight.getDefiningOp();
  if (!op)
    return false;
  if (isa<DequantizeOp>(op))
    return true;
  // A latent product whose factors are quantized (this pass, run before).
  if (auto product = dyn_cast<LatentProductOp>(op))
    return storedQuantized(product.getFactors());
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(op))
    return storedQuantized(slice.getSource());
  if (auto select = dyn_cast<SelectChannelsOp>(op))
    return storedQuantized(select.getInput());
  if (auto concat = dyn_cast<tensor::ConcatOp>(op))
    return !concat.getInputs().empty() &&
           llvm::all_of(concat.getInputs(), storedQuantized);
  return false;
}

/// GPTQ's inputs for one layer: per quantized weight, the rows it sees.
struct LayerCalibration {
  /// Routed experts: gate/up inputs [E, n_max, H], down inputs [E, n_max, I].
  std::vector<float> routedFirst, routedDown;
  int64_t maxRows = 1;
  /// Shared expert: [T, H] and [T, I] (empty without one).
  std::vector<float> sharedFirst, sharedDown;
  int64_t tokens = 0;
  int64_t minRows = 0;
};

/// Copies row `row` of `values` times `factor` into `out` at row `at`.
void copyScaled(const reference::RefTensor &values, int64_t row, double factor,
                std::vector<float> &out, int64_t at) {
  int64_t width = values.dim(1);
  for (int64_t c = 0; c < width; ++c)
    out[at * width + c] = float(factor * values.row(row)[c]);
}

struct QuantizeExpertsPass
    : mlir::moe::impl::MoEQuantizeExpertsBase<QuantizeExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    if (failed(checkOptions()))
      return signalPassFailure();
    if (method == "gptq") {
      if (failed(runGptq()))
        signalPassFailure();
      return;
    }
    WeightEncodingAttrInterface encoding = chooseEncoding();
    // One quantization per weight value, shared by every op that reads it.
    DenseMap<Value, Value> quantized;
    // Weights quantized per layer function, for its report.
    llvm::MapVector<Operation *, int64_t> perFunction;
    WalkResult result = getOperation()->walk([&](Operation *op) {
      for (OpOperand *operand : expertWeights(op)) {
        Value weight = operand->get();
        if (storedQuantized(weight))
          continue; // already stored quantized
        auto it = quantized.find(weight);
        if (it == quantized.end()) {
          LatentProductOp latent = latentFirstProjection(op, operand);
          FailureOr<Value> replacement =
              latent ? quantizeLatent(op, latent, encoding)
                     : quantizeKeepingSuperExperts(op, weight, encoding);
          if (failed(replacement))
            return WalkResult::interrupt();
          it = quantized.insert({weight, *replacement}).first;
          if (auto function = op->getParentOfType<func::FuncOp>())
            ++perFunction[function];
        }
        operand->set(it->second);
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      return signalPassFailure();
    // Latent products whose factors were quantized are replaced by new
    // products; the old ones are left without users.
    for (auto [weight, replacement] : quantized)
      if (auto product = weight.getDefiningOp<LatentProductOp>())
        if (product->use_empty())
          product->erase();
    // moe.report.moe-quantize-experts: what was chosen and how many weights
    // (gate, up, down; routed and shared) it applied to.
    Builder b(&getContext());
    for (auto [function, count] : perFunction) {
      SmallVector<NamedAttribute> entries{
          b.getNamedAttr("method", b.getStringAttr("rtn")),
          b.getNamedAttr("format", b.getStringAttr(format)),
          b.getNamedAttr("weights_quantized", b.getI64IntegerAttr(count))};
      if (int64_t kept = superExpertsKept.lookup(function))
        entries.push_back(b.getNamedAttr("super_experts_at_8_bits",
                                         b.getI64IntegerAttr(kept)));
      if (format == "int") {
        entries.push_back(b.getNamedAttr("bits", b.getI64IntegerAttr(bits)));
        entries.push_back(
            b.getNamedAttr("group_size", b.getI64IntegerAttr(groupSize)));
        entries.push_back(
            b.getNamedAttr("symmetric", b.getBoolAttr(symmetric)));
      }
      function->setAttr(compress::reportName(kPassName),
                        b.getDictionaryAttr(entries));
    }
  }

  LogicalResult checkOptions() {
    Operation *root = getOperation();
    if (format != "int" && format != "fp8" && format != "mxfp4")
      return root->emitError()
             << kPassName << ": format must be int, fp8 or mxfp4, got '"
             << format << "'";
    if (method != "rtn" && method != "gptq")
      return root->emitError()
             << kPassName << ": method must be rtn or gptq, got '" << method
             << "'";
    if (method == "gptq" && format != "int")
      return root->emitError()
             << kPassName << ": method=gptq chooses integer levels; it does "
             << "not apply to format=" << format;
    if (latentBasis != "keep" && latentBasis != "quantize")
      return root->emitError()
             << kPassName << ": latent-basis must be keep or quantize, got '"
             << latentBasis << "'";
    if (format != "int")
      return success();
    if (bits != 8 && bits != 4)
      return root->emitError()
             << kPassName << ": bits must be 8 or 4, got " << int64_t(bits);
    if (groupSize < 1)
      return root->emitError()
             << kPassName << ": group-size must be positive, got "
             << int64_t(groupSize);
    return success();
  }

  WeightEncodingAttrInterface chooseEncoding() {
    MLIRContext *ctx = &getContext();
    if (format == "fp8")
      return Fp8BlockEncodingAttr::get(ctx, kFp8Block, kFp8Block);
    if (format == "mxfp4")
      return Mxfp4EncodingAttr::get(ctx);
    return IntGroupEncodingAttr::get(ctx, bits, groupSize, symmetric);
  }

  /// GPTQ: per moe.layer, the calibration rows of each expert weight, written
  /// to a file and referenced by the moe.quantize ops.
  LogicalResult runGptq() {
    Operation *root = getOperation();
    SmallVector<LayerOp> layers;
    Operation *unsupported = nullptr;
    root->walk([&](Operation *op) {
      if (auto layer = dyn_cast<LayerOp>(op))
        layers.push_back(layer);
      else if (isa<ExpertsOp, SharedExpertOp>(op) && !unsupported)
        unsupported = op;
    });
    if (unsupported)
      return unsupported->emitError()
             << kPassName
             << ": method=gptq needs the routing of a moe.layer to weight its "
                "calibration inputs; run it before moe-decompose";
    if (layers.empty())
      return success();
    // GPTQ's calibration rows are the product's inputs; the factors' inputs
    // (x B^T for A) are not observed, so latent gate/up are not quantized here.
    for (LayerOp layer : layers)
      for (OpOperand *operand : expertWeights(layer))
        if (latentFirstProjection(layer, operand) &&
            !storedQuantized(operand->get()))
          return layer.emitError()
                 << kPassName
                 << ": method=gptq does not quantize latent factors (a gate or "
                    "up weight is a moe.latent_product); use method=rtn, which "
                    "quantizes the factors";
    std::string directory =
        compress::optionOrModuleAttr(root, dataDir, compress::kPassDataDirAttr);
    if (directory.empty())
      return root->emitError()
             << kPassName
             << ": method=gptq writes the calibration inputs the weight writer "
                "reads: give the `data-dir` option (a folder) or run it from "
                "moe-compile";
    SmallString<256> absolute(directory);
    if (std::error_code error = llvm::sys::fs::make_absolute(absolute))
      return root->emitError()
             << kPassName << ": " << directory << ": " << error.message();
    if (std::error_code error = llvm::sys::fs::create_directories(absolute))
      return root->emitError() << kPassName << ": cannot create " << absolute
                               << ": " << error.message();
    FailureOr<std::unique_ptr<compress::PassData>> data =
        compress::PassData::open(root, kPassName, weights, calibration,
                                 /*needCalibration=*/true);
    if (failed(data))
      return failure();
    DenseMap<Operation *, int64_t> layersPerFunction;
    DenseMap<Value, Value> quantized;
    for (LayerOp layer : layers) {
      auto function = layer->getParentOfType<func::FuncOp>();
      int64_t index = layersPerFunction[function]++;
      std::string stem = (function ? function.getSymName().str() : "module") +
                         ".layer" + std::to_string(index);
      if (failed(quantizeLayerGptq(layer, **data, absolute, stem, quantized)))
        return failure();
    }
    return success();
  }

  /// The calibration rows of `layer`'s experts, computed with the weights as
  /// they are before this pass (the down projections' inputs are the
  /// intermediates of the unquantized gate/up).
  FailureOr<LayerCalibration> observe(LayerOp layer, compress::PassData &data) {
    reference::WeightMaterializer &materializer = data.getWeights();
    int64_t hidden =
        cast<RankedTensorType>(layer.getRouterWeight().getType()).getDimSize(1);
    FailureOr<reference::RefTensor> states = data.statesFor(layer, hidden);
    if (failed(states))
      return failure();
    FailureOr<compress::LayerObservation> observation =
        compress::observeLayer(layer, materializer, std::move(*states));
    if (failed(observation))
      return failure();
    bool scaleInput = layer.getWeightsScaleInput();
    reference::FfnValues routed = compress::routedExperts(layer);
    int64_t experts = routed.numExperts, width = routed.width;
    LayerCalibration result;
    result.minRows = observation->input.dim(0);
    for (int64_t e = 0; e < experts; ++e) {
      int64_t n = observation->assignments[e].size();
      result.maxRows = std::max(result.maxRows, n);
      result.minRows = std::min(result.minRows, n);
    }
    int64_t rows = result.maxRows;
    result.routedFirst.assign(experts * rows * hidden, 0.0f);
    result.routedDown.assign(experts * rows * width, 0.0f);
    for (int64_t e = 0; e < experts; ++e) {
      if (observation->assignments[e].empty())
        continue;
      reference::RefTensor inputs = observation->routedRows(e);
      std::vector<double> gates = observation->routedWeights(e);
      // Llama-4 scales the expert's input by the routing weight and combines
      // unweighted: the input is what the expert sees, weighted 1.
      if (scaleInput) {
        for (int64_t r = 0; r < inputs.dim(0); ++r)
          for (int64_t c = 0; c < hidden; ++c)
            inputs.row(r)[c] *= gates[r];
        std::fill(gates.begin(), gates.end(), 1.0);
      }
      if (!routerWeighted)
        std::fill(gates.begin(), gates.end(), 1.0);
      FailureOr<reference::ExpertMatrices> matrices =
          reference::loadExpertMatrices(materializer, routed, e,
                                        reference::ExpertPart::All);
      if (failed(matrices))
        return failure();
      reference::RefTensor intermediate;
      compress::expertForward(routed.ffn, *matrices, inputs, &intermediate);
      for (int64_t r = 0; r < inputs.dim(0); ++r) {
        double factor = std::sqrt(std::max(gates[r], 0.0));
        copyScaled(inputs, r, factor, result.routedFirst, e * rows + r);
        copyScaled(intermediate, r, factor, result.routedDown, e * rows + r);
      }
    }
    std::optional<reference::FfnValues> shared = compress::sharedExpert(layer);
    if (!shared)
      return result;
    const reference::RefTensor &inputs = observation->input;
    int64_t tokens = inputs.dim(0);
    result.tokens = tokens;
    std::vector<double> gates(tokens, 1.0);
    if (Value sigmoidGate = layer.getSharedSigmoidGate();
        sigmoidGate && routerWeighted) {
      FailureOr<reference::RefTensor> gate = materializer.get(sigmoidGate);
      if (failed(gate))
        return failure();
      for (int64_t t = 0; t < tokens; ++t) {
        double logit = 0.0;
        for (int64_t c = 0; c < hidden; ++c)
          logit += inputs.row(t)[c] * gate->data[c];
        gates[t] = 1.0 / (1.0 + std::exp(-logit));
      }
    }
    FailureOr<reference::ExpertMatrices> matrices =
        reference::loadExpertMatrices(materializer, *shared, 0,
                                      reference::ExpertPart::All);
    if (failed(matrices))
      return failure();
    reference::RefTensor intermediate;
    compress::expertForward(shared->ffn, *matrices, inputs, &intermediate);
    result.sharedFirst.assign(tokens * hidden, 0.0f);
    result.sharedDown.assign(tokens * shared->width, 0.0f);
    for (int64_t t = 0; t < tokens; ++t) {
      double factor = std::sqrt(gates[t]);
      copyScaled(inputs, t, factor, result.sharedFirst, t);
      copyScaled(intermediate, t, factor, result.sharedDown, t);
    }
    return result;
  }

  LogicalResult quantizeLayerGptq(LayerOp layer, compress::PassData &data,
                                  StringRef directory, StringRef stem,
                                  DenseMap<Value, Value> &quantized) {
    // Nothing to do when every expert weight is already stored quantized.
    if (llvm::all_of(expertWeights(layer), [](OpOperand *operand) {
          return storedQuantized(operand->get());
        }))
      return success();
    FailureOr<LayerCalibration> rows = observe(layer, data);
    if (failed(rows))
      return failure();
    reference::FfnValues routed = compress::routedExperts(layer);
    std::optional<reference::FfnValues> shared = compress::sharedExpert(layer);
    int64_t experts = routed.numExperts, width = routed.width;
    int64_t hidden =
        cast<RankedTensorType>(layer.getRouterWeight().getType()).getDimSize(1);

    SmallString<256> path(directory);
    llvm::sys::path::append(path, stem + ".gptq.safetensors");
    auto bytes = [](const std::vector<float> &values) {
      return llvm::ArrayRef<uint8_t>(
          reinterpret_cast<const uint8_t *>(values.data()),
          values.size() * sizeof(float));
    };
    std::vector<::moe::SafetensorsWriter::Tensor> tensors{
        {"routed.first",
         MOE_DTYPE_F32,
         {experts, rows->maxRows, hidden},
         bytes(rows->routedFirst)},
        {"routed.down",
         MOE_DTYPE_F32,
         {experts, rows->maxRows, width},
         bytes(rows->routedDown)}};
    if (shared) {
      tensors.push_back({"shared.first",
                         MOE_DTYPE_F32,
                         {rows->tokens, hidden},
                         bytes(rows->sharedFirst)});
      tensors.push_back({"shared.down",
                         MOE_DTYPE_F32,
                         {rows->tokens, shared->width},
                         bytes(rows->sharedDown)});
    }
    if (llvm::Error error =
            ::moe::SafetensorsWriter::writeFile(path.str(), tensors))
      return layer.emitError()
             << kPassName << ": " << llvm::toString(std::move(error));

    OpBuilder b(layer);
    auto reference = [&](const ::moe::SafetensorsWriter::Tensor &tensor) {
      return WeightOp::create(
                 b, layer.getLoc(),
                 RankedTensorType::get(tensor.shape, b.getF32Type()),
                 b.getStringAttr(tensor.name), b.getStringAttr(path.str()),
                 IntegerAttr(), DenseI64ArrayAttr())
          .getResult();
    };
    Value routedFirst = reference(tensors[0]),
          routedDown = reference(tensors[1]);
    Value sharedFirst = shared ? reference(tensors[2]) : Value();
    Value sharedDown = shared ? reference(tensors[3]) : Value();
    auto encoding =
        IntGroupEncodingAttr::get(&getContext(), bits, groupSize, symmetric);
    auto quantizeOperand = [&](MutableOperandRange range,
                               Value rowsValue) -> LogicalResult {
      for (OpOperand &operand : range) {
        Value weight = operand.get();
        if (storedQuantized(weight))
          continue;
        auto it = quantized.find(weight);
        if (it == quantized.end()) {
          FailureOr<Value> replacement =
              quantizeKeepingSuperExperts(layer, weight, encoding, rowsValue);
          if (failed(replacement))
            return failure();
          it = quantized.insert({weight, *replacement}).first;
        }
        operand.set(it->second);
      }
      return success();
    };
    if (failed(quantizeOperand(layer.getGateProjMutable(), routedFirst)) ||
        failed(quantizeOperand(layer.getUpProjMutable(), routedFirst)) ||
        failed(quantizeOperand(layer.getDownProjMutable(), routedDown)) ||
        failed(
            quantizeOperand(layer.getSharedGateProjMutable(), sharedFirst)) ||
        failed(quantizeOperand(layer.getSharedUpProjMutable(), sharedFirst)) ||
        failed(quantizeOperand(layer.getSharedDownProjMutable(), sharedDown)))
      return failure();
    recordReport(layer, *rows);
    return success();
  }

  /// The calibration rows the experts saw (fewest, most), over every layer
  /// of the function.
  void recordReport(LayerOp layer, const LayerCalibration &rows) {
    auto function = layer->getParentOfType<func::FuncOp>();
    if (!function)
      return;
    std::string name = compress::reportName(kPassName);
    int64_t fewest = rows.minRows, most = rows.maxRows;
    if (auto previous = function->getAttrOfType<DictionaryAttr>(name)) {
      if (auto v = previous.getAs<IntegerAttr>("expert_rows_min"))
        fewest = std::min(fewest, v.getInt());
      if (auto v = previous.getAs<IntegerAttr>("expert_rows_max"))
        most = std::max(most, v.getInt());
    }
    Builder b(&getContext());
    function->setAttr(
        name,
        b.getDictionaryAttr(
            {b.getNamedAttr("method", b.getStringAttr("gptq")),
             b.getNamedAttr("router_weighted", b.getBoolAttr(routerWeighted)),
             b.getNamedAttr("bits", b.getI64IntegerAttr(bits)),
             b.getNamedAttr("expert_rows_min", b.getI64IntegerAttr(fewest)),
             b.getNamedAttr("expert_rows_max", b.getI64IntegerAttr(most))}));
    if (int64_t kept = superExpertsKept.lookup(function)) {
      NamedAttrList entries(function->getAttrOfType<DictionaryAttr>(name));
      entries.set("super_experts_at_8_bits", b.getI64IntegerAttr(kept));
      function->setAttr(name, entries.getDictionary(&getContext()));
    }
  }

  /// Super experts (a moe.layer's moe.super_experts) never go below 8 bits:
  /// a routed weight becomes the concatenation of its runs of experts, super
  /// runs quantized at 8 bits and the others at the chosen width (with GPTQ,
  /// each run with its experts' calibration `rows`). Everything else is
  /// quantize().
  FailureOr<Value>
  quantizeKeepingSuperExperts(Operation *user, Value weight,
                              WeightEncodingAttrInterface encoding,
                              Value rows = Value()) {
    auto layer = dyn_cast<LayerOp>(user);
    auto narrow = dyn_cast<IntGroupEncodingAttr>(encoding);
    auto type = cast<RankedTensorType>(weight.getType());
    SmallVector<int64_t> super;
    if (layer && narrow && narrow.getBits() < 8 && type.getRank() == 3)
      super = compress::superExpertsOf(layer);
    if (super.empty())
      return quantize(user, weight, encoding, rows);
    SmallVector<compress::ExpertRun> runs;
    SmallVector<bool> runIsSuper;
    for (int64_t e = 0, E = type.getDimSize(0); e < E; ++e) {
      bool isSuper = llvm::is_contained(super, e);
      if (runs.empty() || runIsSuper.back() != isSuper) {
        runs.push_back({e, e + 1});
        runIsSuper.push_back(isSuper);
      } else {
        runs.back().end = e + 1;
      }
    }
    auto wide = IntGroupEncodingAttr::get(
        &getContext(), 8, narrow.getGroupSize(), narrow.getSymmetric());
    bool failedRun = false;
    OpBuilder b(user);
    Value result = compress::concatExpertRuns(
        b, weight.getLoc(), weight, runs, [&](Value slice, size_t run) {
          // GPTQ's calibration rows [E, n, K] are cut into the same runs.
          Value runRows;
          if (rows) {
            auto type = cast<RankedTensorType>(rows.getType());
            SmallVector<int64_t> offsets(type.getRank(), 0),
                strides(type.getRank(), 1), sizes(type.getShape());
            offsets[0] = runs[run].begin;
            sizes[0] = runs[run].end - runs[run].begin;
            runRows = tensor::ExtractSliceOp::create(
                b, weight.getLoc(),
                RankedTensorType::get(sizes, type.getElementType()), rows,
                ValueRange(), ValueRange(), ValueRange(),
                b.getDenseI64ArrayAttr(offsets), b.getDenseI64ArrayAttr(sizes),
                b.getDenseI64ArrayAttr(strides));
          }
          FailureOr<Value> q =
              quantize(user, slice, runIsSuper[run] ? wide : narrow, runRows);
          failedRun |= failed(q);
          return failed(q) ? slice : *q;
        });
    if (failedRun)
      return failure();
    if (auto function = user->getParentOfType<func::FuncOp>())
      superExpertsKept[function] = int64_t(super.size());
    return result;
  }

  /// A latent gate or up weight A B keeps its factorization: the factors A
  /// [E, N, R] are quantized in groups along the rank R (their input
  /// dimension), and with latent-basis=quantize the basis B [groups, R, K]
  /// along K. Quantizing the product instead would store a dense matrix and
  /// lose what the factorization saved.
  FailureOr<Value> quantizeLatent(Operation *user, LatentProductOp product,
                                  WeightEncodingAttrInterface encoding) {
    if (!isa<IntGroupEncodingAttr>(encoding))
      return user->emitError()
             << kPassName << ": format=" << format
             << " does not quantize latent factors (a gate or up weight is a "
                "moe.latent_product); use format=int";
    RankedTensorType factorsType = product.getFactors().getType();
    int64_t rank = factorsType.getDimSize(2);
    if (rank % groupSize != 0)
      return user->emitError()
             << kPassName << ": group-size " << int64_t(groupSize)
             << " does not divide the latent rank " << rank
             << " of the factors " << factorsType
             << "; latent factors are quantized in groups along the rank";
    FailureOr<Value> factors =
        quantizeKeepingSuperExperts(user, product.getFactors(), encoding);
    if (failed(factors))
      return failure();
    Value basis = product.getBasis();
    if (latentBasis == "quantize" && !storedQuantized(basis)) {
      FailureOr<Value> quantizedBasis = quantize(user, basis, encoding, {});
      if (failed(quantizedBasis))
        return failure();
      basis = *quantizedBasis;
    }
    OpBuilder b(user);
    return LatentProductOp::create(b, product.getLoc(),
                                   product.getResult().getType(), *factors,
                                   basis)
        .getResult();
  }

  /// Super experts kept at 8 bits, per layer function (for the report).
  DenseMap<Operation *, int64_t> superExpertsKept;

  /// moe.dequantize(moe.quantize(weight)), built before its first user (so
  /// the IR reads gate, up, down in order); `rows` are GPTQ's calibration
  /// inputs (null: round to nearest).
  FailureOr<Value> quantize(Operation *user, Value weight,
                            WeightEncodingAttrInterface encoding, Value rows) {
    auto type = cast<RankedTensorType>(weight.getType());
    int64_t rank = type.getRank();
    int64_t outputs = type.getDimSize(rank - 2),
            cols = type.getDimSize(rank - 1);
    SmallVector<int64_t> batch(type.getShape().drop_back(2));
    auto shape = [&](ArrayRef<int64_t> last) {
      SmallVector<int64_t> s(batch);
      s.append(last.begin(), last.end());
      return s;
    };
    OpBuilder b(&getContext());
    b.setInsertionPoint(user);
    Location loc = weight.getLoc();
    SmallVector<Type> storage;
    if (isa<Fp8BlockEncodingAttr>(encoding)) {
      storage = {
          RankedTensorType::get(type.getShape(), b.getType<Float8E4M3FNType>()),
          RankedTensorType::get(
              shape({int64_t(llvm::divideCeil(outputs, kFp8Block)),
                     int64_t(llvm::divideCeil(cols, kFp8Block))}),
              b.getF32Type())};
    } else if (isa<Mxfp4EncodingAttr>(encoding)) {
      if (cols % kMxfp4Block != 0)
        return user->emitError()
               << kPassName << ": mxfp4 shares one exponent among 32 inputs "
               << "and needs an input dimension divisible by 32, got " << cols
               << " in a weight of type " << type;
      Type byte = b.getIntegerType(8, /*isSigned=*/false);
      storage = {
          RankedTensorType::get(
              shape({outputs, cols / kMxfp4Block, kMxfp4Block / 2}), byte),
          RankedTensorType::get(shape({outputs, cols / kMxfp4Block}), byte)};
    } else {
      // The encoding's own width: super experts may be quantized wider than
      // the pass's `bits`.
      auto intGroup = cast<IntGroupEncodingAttr>(encoding);
      int64_t width = intGroup.getBits();
      if (cols % groupSize != 0) {
        InFlightDiagnostic diag = user->emitError()
                                  << kPassName << ": group-size "
                                  << int64_t(groupSize)
                                  << " does not divide the input dimension "
                                  << cols << " of a weight of type " << type;
        // A micro-pruned layer's width can be stored rounded up.
        if (auto layer = dyn_cast<LayerOp>(user);
            layer && layer.getExpertWidthsAttr())
          diag << " (moe-prune-micro-experts' width-multiple="
               << int64_t(groupSize) << " stores a width it divides)";
        return diag;
      }
      if (width == 4 && cols % 2 != 0)
        return user->emitError() << kPassName
                                 << ": 4-bit weights pack two values per byte "
                                    "and need an even input dimension, got "
                                 << cols;
      storage = {
          RankedTensorType::get(shape({outputs, width == 4 ? cols / 2 : cols}),
                                b.getIntegerType(8)),
          RankedTensorType::get(shape({outputs, cols / groupSize}),
                                b.getF32Type())};
      if (!intGroup.getSymmetric())
        storage.push_back(storage[1]);
    }
    auto quant = QuantizeOp::create(b, loc, storage, weight, encoding, rows,
                                    FloatAttr());
    return DequantizeOp::create(b, loc,
                                DequantizeOp::getResultTypeFor(type, encoding),
                                quant.getStorage(), encoding)
        .getResult();
  }

  /// DeepSeek-V3's FP8 block (rows and columns) and MXFP4's block (columns).
  static constexpr int64_t kFp8Block = 128;
  static constexpr int64_t kMxfp4Block = 32;
};

} // namespace
