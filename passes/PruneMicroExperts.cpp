//===- PruneMicroExperts.cpp - CAMERA-P / HEAPr channel pruning -----------===//
//
// A micro-expert is one intermediate channel of a routed expert: a gate row, an
// up row and a down column. Each is scored on the calibration tokens routed to
// its expert (CAMERA-P, or HEAPr's second-order estimate when output gradients
// are given), and the lowest-scoring fraction of the layer's channels is
// removed. The ranking is global over the layer, so experts keep different
// numbers of channels: the stacked weights keep the widest expert's width,
// each expert's kept channels first and zeros after them, and `expert_widths`
// tells code generation how much of each expert to compute.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "lib/Compress/ExpertScores.h"
#include "lib/Reference/Evaluator.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>
#include <numeric>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPRUNEMICROEXPERTS
#include "passes/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;
using reference::RefTensor;

namespace {

constexpr llvm::StringLiteral kPassName = "moe-prune-micro-experts";

/// Marks a position of a rewritten weight that holds zeros (padding).
constexpr int64_t kZero = -1;

/// `value` ([E, ...]) with expert e's slice along dimension `dim` rebuilt from
/// `sources[e]`: position j holds the source's index sources[e][j] along `dim`,
/// or zeros for kZero. One moe.select_channels, however many runs of channels
/// an expert keeps.
Value gatherChannels(OpBuilder &b, Location loc, Value value, int64_t dim,
                     ArrayRef<SmallVector<int64_t>> sources) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape(type.getShape()), channels;
  shape[dim] = sources.empty() ? 0 : int64_t(sources.front().size());
  for (const SmallVector<int64_t> &indices : sources)
    channels.append(indices.begin(), indices.end());
  return SelectChannelsOp::create(
      b, loc, RankedTensorType::get(shape, type.getElementType()), value,
      b.getI64IntegerAttr(dim), b.getDenseI64ArrayAttr(channels));
}

struct PruneMicroExpertsPass
    : mlir::moe::impl::MoEPruneMicroExpertsBase<PruneMicroExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    Operation *root = getOperation();
    if (!(fraction >= 0.0 && fraction < 1.0)) {
      root->emitError() << kPassName
                        << ": fraction must be in [0, 1) (the share of a "
                           "layer's channels to remove), got "
                        << double(fraction);
      return signalPassFailure();
    }
    if (!(beta >= 0.0 && beta <= 1.0)) {
      root->emitError() << kPassName << ": beta must be in [0, 1], got "
                        << double(beta);
      return signalPassFailure();
    }
    if (widthMultiple < 1) {
      root->emitError() << kPassName
                        << ": width-multiple must be at least 1, got "
                        << int64_t(widthMultiple);
      return signalPassFailure();
    }
    WalkResult decomposed = root->walk([&](ExpertsOp experts) {
      experts.emitOpError() << kPassName
                            << " prunes moe.layer ops; run it before "
                               "moe-decompose";
      return WalkResult::interrupt();
    });
    if (decomposed.wasInterrupted())
      return signalPassFailure();
    if (!gradients.empty()) {
      auto file = ::moe::SafetensorsFile::open(gradients);
      if (!file) {
        root->emitError() << kPassName << ": "
                          << llvm::toString(file.takeError());
        return signalPassFailure();
      }
      gradientFile = std::move(*file);
    }
    if (failed(compress::transformLayers(
            root, kPassName, weights, calibration, /*needCalibration=*/true,
            [&](LayerOp layer) { return checkLayer(layer); },
            [&](LayerOp layer, compress::PassData &data) {
              return pruneLayer(layer, data);
            })))
      return signalPassFailure();
  }

  LogicalResult checkLayer(LayerOp layer) {
    auto down = cast<RankedTensorType>(layer.getDownProj().getType());
    if (!down.hasStaticShape())
      return layer.emitOpError()
             << kPassName << " needs static expert weights, got " << down;
    int64_t experts = down.getDimSize(0);
    for (int64_t e : compress::superExpertsOf(layer))
      if (e < 0 || e >= experts)
        return layer.emitOpError()
               << kPassName << ": " << compress::kSuperExpertsAttr
               << " names expert " << e << " of a layer with " << experts
               << " experts";
    return success();
  }

  /// The output gradients [T, H] of the layer `layer` belongs to.
  FailureOr<RefTensor> gradientsFor(LayerOp layer, int64_t tokens,
                                    int64_t hidden) {
    std::string name = "layer" + std::to_string(compress::layerIndexOf(layer)) +
                       ".grad_output";
    if (!gradientFile->find(name))
      name = "grad_output";
    if (!gradientFile->find(name))
      return layer.emitOpError()
                 << kPassName << ": " << gradients << " has no 'layer"
                 << compress::layerIndexOf(layer)
                 << ".grad_output' and no 'grad_output' tensor",
             failure();
    auto read = reference::readHiddenStates(*gradientFile, gradients, name);
    if (!read)
      return layer.emitOpError()
                 << kPassName << ": " << llvm::toString(read.takeError()),
             failure();
    if (read->dim(0) != tokens || read->dim(1) != hidden)
      return layer.emitOpError()
                 << kPassName << ": " << gradients << ": '" << name
                 << "' must be [" << tokens << ", " << hidden
                 << "] (one gradient per calibration token), got ["
                 << read->dim(0) << ", " << read->dim(1) << "]",
             failure();
    return std::move(*read);
  }

  /// The score of each of expert `e`'s first `width` channels.
  FailureOr<std::vector<double>>
  scoreExpert(LayerOp layer, const compress::LayerObservation &observed,
              reference::WeightMaterializer &materializer,
              const reference::FfnValues &routed, int64_t e, int64_t width,
              const RefTensor *outputGradients) {
    std::vector<double> scores(width, 0.0);
    const auto &pairs = observed.assignments[e];
    if (pairs.empty() || width == 0)
      return scores; // no token measures this expert: nothing speaks for it
    FailureOr<reference::ExpertMatrices> matrices =
        reference::loadExpertMatrices(materializer, routed, e,
                                      reference::ExpertPart::All);
    if (failed(matrices))
      return failure();
    RefTensor h;
    compress::expertForward(layer.getFfn(), *matrices,
                            compress::expertInputRows(layer, observed, e), &h);
    // The routing weight multiplies the expert's output unless the layer
    // applied it to the input (then h already carries it).
    std::vector<double> outputWeights = observed.routedWeights(e);
    if (layer.getWeightsScaleInput())
      std::fill(outputWeights.begin(), outputWeights.end(), 1.0);
    const RefTensor &down = matrices->down; // [H, I]
    int64_t n = int64_t(pairs.size()), hidden = down.dim(0),
            columns = down.dim(1);
    auto downColumn = [&](int64_t j, int64_t c) {
      return down.data[j * columns + c];
    };

    if (!outputGradients) {
      for (int64_t c = 0; c < width; ++c) {
        double norm = 0.0;
        for (int64_t j = 0; j < hidden; ++j)
          norm += downColumn(j, c) * downColumn(j, c);
        double sum = 0.0, max = 0.0;
        for (int64_t r = 0; r < n; ++r) {
          double phi = outputWeights[r] * h.row(r)[c];
          sum += phi * phi;
          max = std::max(max, phi * phi);
        }
        scores[c] = norm * ((1.0 - beta) * sum + beta * max);
      }
      return scores;
    }

    // HEAPr: w_c^T M_e w_c = mean_t ((w_t g_t) . w_c)^2 without forming M_e.
    for (int64_t c = 0; c < width; ++c) {
      double curvature = 0.0, activation = 0.0;
      for (int64_t r = 0; r < n; ++r) {
        const double *g = outputGradients->row(pairs[r].first);
        double projected = 0.0;
        for (int64_t j = 0; j < hidden; ++j)
          projected += g[j] * downColumn(j, c);
        projected *= outputWeights[r];
        curvature += projected * projected;
        activation += h.row(r)[c] * h.row(r)[c];
      }
      scores[c] = (activation / double(n)) * (curvature / double(n));
    }
    return scores;
  }

  LogicalResult pruneLayer(LayerOp layer, compress::PassData &data) {
    auto input = cast<RankedTensorType>(layer.getInput().getType());
    int64_t hidden = input.getDimSize(1);
    FailureOr<RefTensor> states = data.statesFor(layer, hidden);
    if (failed(states))
      return failure();
    int64_t tokens = states->dim(0);
    std::optional<RefTensor> outputGradients;
    if (gradientFile) {
      FailureOr<RefTensor> read = gradientsFor(layer, tokens, hidden);
      if (failed(read))
        return failure();
      outputGradients = std::move(*read);
    }
    reference::WeightMaterializer &materializer = data.getWeights();
    FailureOr<compress::LayerObservation> observed =
        compress::observeLayer(layer, materializer, std::move(*states));
    if (failed(observed))
      return failure();

    reference::FfnValues routed = compress::routedExperts(layer);
    int64_t experts = routed.numExperts, stored = routed.width;
    // Channels a previous pruning removed are not candidates again.
    SmallVector<int64_t> widthsBefore(experts, stored);
    if (DenseI64ArrayAttr previous = layer.getExpertWidthsAttr())
      widthsBefore.assign(previous.asArrayRef().begin(),
                          previous.asArrayRef().end());

    SmallVector<int64_t> super = compress::superExpertsOf(layer);
    struct Candidate {
      double score;
      int64_t expert, channel;
    };
    std::vector<Candidate> candidates;
    std::vector<std::vector<double>> scores(experts);
    for (int64_t e = 0; e < experts; ++e) {
      FailureOr<std::vector<double>> expertScores = scoreExpert(
          layer, *observed, materializer, routed, e, widthsBefore[e],
          outputGradients ? &*outputGradients : nullptr);
      if (failed(expertScores))
        return failure();
      scores[e] = std::move(*expertScores);
      if (llvm::is_contained(super, e))
        continue;
      for (int64_t c = 0; c < widthsBefore[e]; ++c)
        candidates.push_back({scores[e][c], e, c});
    }
    int64_t channelsBefore =
        std::accumulate(widthsBefore.begin(), widthsBefore.end(), int64_t(0));
    int64_t removeCount = std::min<int64_t>(
        std::llround(fraction * double(channelsBefore)), candidates.size());
    llvm::stable_sort(candidates, [](const Candidate &a, const Candidate &b) {
      return a.score < b.score;
    });

    std::vector<std::vector<bool>> removed(experts);
    for (int64_t e = 0; e < experts; ++e)
      removed[e].assign(widthsBefore[e], false);
    for (int64_t i = 0; i < removeCount; ++i)
      removed[candidates[i].expert][candidates[i].channel] = true;
    SmallVector<SmallVector<int64_t>> kept(experts);
    SmallVector<int64_t> widths(experts);
    for (int64_t e = 0; e < experts; ++e) {
      for (int64_t c = 0; c < widthsBefore[e]; ++c)
        if (!removed[e][c])
          kept[e].push_back(c);
      widths[e] = kept[e].size();
    }
    // The stacked weights keep one width; at least one channel so no tensor
    // is empty (an expert of width 0 reads only zeros), rounded up so that a
    // later quantization's groups divide it.
    int64_t width = llvm::alignTo(
        std::max<int64_t>(1, *llvm::max_element(widths)), widthMultiple);
    rewriteWeights(layer, routed, kept, width);
    layer.setExpertWidthsAttr(OpBuilder(layer).getDenseI64ArrayAttr(widths));
    recordReport(layer, channelsBefore, width, widths, hidden, routed);
    return success();
  }

  /// Rewrites every routed weight and bias with an intermediate dimension to
  /// `width` channels per expert: kept ones first, then zeros.
  void rewriteWeights(LayerOp layer, const reference::FfnValues &routed,
                      ArrayRef<SmallVector<int64_t>> kept, int64_t width) {
    int64_t stored = routed.width;
    GluLayout glu = layer.getFfn().getGlu();
    // Source positions along the channel dimension for each expert, for a
    // plain [.., I, ..] operand and for a fused gate/up one [.., 2I, ..].
    SmallVector<SmallVector<int64_t>> plain, fused;
    for (ArrayRef<int64_t> channels : kept) {
      SmallVector<int64_t> padded(channels);
      padded.resize(width, kZero);
      SmallVector<int64_t> both;
      if (glu == GluLayout::Halves) {
        both = padded;
        for (int64_t c : padded)
          both.push_back(c == kZero ? kZero : stored + c);
      } else {
        for (int64_t c : padded) {
          both.push_back(c == kZero ? kZero : 2 * c);
          both.push_back(c == kZero ? kZero : 2 * c + 1);
        }
      }
      plain.push_back(std::move(padded));
      fused.push_back(std::move(both));
    }
    bool isFused = layer.getFfn().isFused();
    OpBuilder b(layer);
    DenseMap<std::pair<Value, int64_t>, Value> rewritten;
    auto rewrite = [&](OpOperand &operand, int64_t dim,
                       ArrayRef<SmallVector<int64_t>> sources) {
      Value value = operand.get();
      auto [it, inserted] = rewritten.insert({{value, dim}, Value()});
      if (inserted)
        it->second = gatherChannels(b, value.getLoc(), value, dim, sources);
      operand.set(it->second);
    };
    ArrayRef<SmallVector<int64_t>> first = isFused ? fused : plain;
    for (OpOperand &operand : layer.getGateProjMutable())
      rewrite(operand, 1, plain);
    rewrite(layer.getUpProjMutable(), 1, first);
    for (OpOperand &operand : layer.getGateBiasMutable())
      rewrite(operand, 1, plain);
    for (OpOperand &operand : layer.getUpBiasMutable())
      rewrite(operand, 1, first);
    rewrite(layer.getDownProjMutable(), 2, plain);
  }

  void recordReport(LayerOp layer, int64_t channelsBefore, int64_t width,
                    ArrayRef<int64_t> widths, int64_t hidden,
                    const reference::FfnValues &routed) {
    auto function = layer->getParentOfType<func::FuncOp>();
    if (!function)
      return;
    // Every channel carries the same entries: a down column and one (ungated)
    // or two first-projection rows, plus their biases.
    bool gated = layer.getFfn().isGated();
    int64_t perChannel = (gated ? 2 : 1) * hidden + hidden;
    if (routed.upBias)
      perChannel += gated ? 2 : 1;
    int64_t channelsAfter =
        std::accumulate(widths.begin(), widths.end(), int64_t(0));
    double reduction = channelsBefore == 0
                           ? 0.0
                           : 1.0 - double(channelsAfter * perChannel) /
                                       double(channelsBefore * perChannel);
    Builder b(&getContext());
    function->setAttr(
        compress::reportName(kPassName),
        b.getDictionaryAttr(
            {b.getNamedAttr("channels_after",
                            b.getI64IntegerAttr(channelsAfter)),
             b.getNamedAttr("channels_before",
                            b.getI64IntegerAttr(channelsBefore)),
             b.getNamedAttr("parameter_reduction",
                            b.getF64FloatAttr(reduction)),
             b.getNamedAttr(
                 "score", b.getStringAttr(gradientFile ? "heapr" : "camera-p")),
             b.getNamedAttr("width", b.getI64IntegerAttr(width)),
             b.getNamedAttr("widths", b.getDenseI64ArrayAttr(widths))}));
  }

  // Shared so the pass stays copyable (pass managers clone passes).
  std::shared_ptr<::moe::SafetensorsFile> gradientFile;
};

} // namespace
