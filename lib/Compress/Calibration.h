//===- Calibration.h - what data-driven passes measure on a layer -*- C++
//-*-===//
//
// Compression passes that decide from data (pruning scores, GPTQ Hessians,
// smoothing scales, mixed-precision losses, super experts) need the layer's
// weights and calibration hidden states. PassData opens both, from the pass's
// options or, when those are empty, from the module attributes moe-compile
// sets (`moe.weights_dir`, `moe.calibration`). observeLayer runs a moe.layer
// on the states in float64 once and keeps what the passes score with.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_COMPRESS_CALIBRATION_H
#define MOEC_LIB_COMPRESS_CALIBRATION_H

#include "dialects/moe/MoEOps.h"
#include "lib/Reference/Kernels.h"
#include "lib/Reference/WeightMaterializer.h"
#include "lib/Weights/Safetensors.h"

#include <memory>
#include <vector>

namespace mlir::moe::compress {

/// The module attribute naming the checkpoint folder a module's moe.weight
/// ops read (set by moe-compile before user passes run).
inline constexpr llvm::StringLiteral kWeightsDirAttr = "moe.weights_dir";
/// The module attribute naming the calibration states file.
inline constexpr llvm::StringLiteral kCalibrationAttr = "moe.calibration";
/// The module attribute naming a folder where passes write data they derive
/// (safetensors files their IR references by absolute path).
inline constexpr llvm::StringLiteral kPassDataDirAttr = "moe.pass_data_dir";

/// The module attribute a pass records its per-layer numbers in, on the
/// layer's function (moe-compile copies every such attribute into
/// report.json): "moe.report.<pass>".
inline constexpr llvm::StringLiteral kReportPrefix = "moe.report.";
inline std::string reportName(llvm::StringRef pass) {
  return (kReportPrefix + pass).str();
}

/// `option`, else the string attribute `attr` of the module holding (or
/// being) `root`, else "".
std::string optionOrModuleAttr(Operation *root, llvm::StringRef option,
                               llvm::StringRef attr);

/// `value` as printf's %g writes it (3.5, not 3.500000e+00), for options
/// echoed in diagnostics.
std::string shortNumber(double value);

class PassData {
public:
  /// Opens the checkpoint (`weightsDir`, else the module's moe.weights_dir)
  /// and, when `needCalibration`, the calibration file (`calibration`, else
  /// the module's moe.calibration). Errors at `root` name `pass` and the
  /// missing option or the unreadable file.
  static FailureOr<std::unique_ptr<PassData>>
  open(Operation *root, llvm::StringRef pass, llvm::StringRef weightsDir,
       llvm::StringRef calibration, bool needCalibration);

  reference::WeightMaterializer &getWeights() { return *materializer; }
  const ::moe::Checkpoint &getCheckpoint() const { return *checkpoint; }
  bool hasCalibration() const { return calibration != nullptr; }

  /// The calibration states [T, H] of the layer `op` belongs to
  /// (`layer<N>.hidden_states` for the function's moe.layer_index N, else
  /// `hidden_states`); errors at `op`.
  FailureOr<reference::RefTensor> statesFor(Operation *op, int64_t hidden);

private:
  std::unique_ptr<::moe::Checkpoint> checkpoint;
  std::unique_ptr<reference::WeightMaterializer> materializer;
  std::unique_ptr<::moe::SafetensorsFile> calibration;
  std::string calibrationPath;
};

/// Data-driven passes measure on [T, H] states: an error at `layer` (naming
/// `pass`) unless its hidden size is static.
LogicalResult requireStaticHidden(LayerOp layer, llvm::StringRef pass);

/// The driver of a data-driven pass: every moe.layer under `root` is checked
/// (a static hidden size, then `check`: errors that need no data come before
/// a missing checkpoint), then the
/// data is opened once and each layer transformed. No layer: success, nothing
/// opened.
LogicalResult
transformLayers(Operation *root, llvm::StringRef pass,
                llvm::StringRef weightsDir, llvm::StringRef calibration,
                bool needCalibration,
                function_ref<LogicalResult(LayerOp)> check,
                function_ref<LogicalResult(LayerOp, PassData &)> transform);

/// The calibration states [T, H] of layer `layer` in `file` (read from
/// `path`): `layer<N>.hidden_states`, else `hidden_states`; `hidden` is
/// checked. Errors at `loc`.
FailureOr<reference::RefTensor>
calibrationStates(const ::moe::SafetensorsFile &file, llvm::StringRef path,
                  int64_t layer, int64_t hidden, Location loc);

/// The layer index of the function holding (or being) `op`: its
/// moe.layer_index, else N of a function named layer_N, else -1.
int64_t layerIndexOf(Operation *op);

/// The routed and shared feed-forwards of a moe.layer as weight values.
reference::FfnValues routedExperts(LayerOp layer);
std::optional<reference::FfnValues> sharedExpert(LayerOp layer);

/// A moe.layer run once on calibration states, in float64.
struct LayerObservation {
  reference::RefTensor input; // [T, H]
  reference::Routing routing; // ids and weights [T, k]
  int64_t numExperts = 0;
  /// For each expert, the (token, slot) pairs routed to it, in token order
  /// (routing.weights[token * k + slot] is the routing weight).
  std::vector<std::vector<std::pair<int64_t, int64_t>>> assignments;

  /// Rows of `input` routed to `expert`, [n, H].
  reference::RefTensor routedRows(int64_t expert) const;
  /// Their routing weights, [n].
  std::vector<double> routedWeights(int64_t expert) const;
};

/// Routes `input` through `layer`'s router (dispatch capacity is ignored:
/// every selected (token, expert) pair is listed).
FailureOr<LayerObservation> observeLayer(LayerOp layer,
                                         reference::WeightMaterializer &weights,
                                         reference::RefTensor input);

/// One expert on rows [n, H]: the down projection's input (the activated
/// intermediate, [n, I]) into `intermediate` when non-null, and the output
/// [n, H] (with the down bias) returned.
reference::RefTensor
expertForward(FfnAttr ffn, const reference::ExpertMatrices &expert,
              const reference::RefTensor &rows,
              reference::RefTensor *intermediate = nullptr);

} // namespace mlir::moe::compress

#endif // MOEC_LIB_COMPRESS_CALIBRATION_H
