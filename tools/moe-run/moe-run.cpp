//===- moe-run.cpp - run an MoE layer -------------------------------------===//
//
//   moe-run MODULE.mlir --weights-dir DIR --layer N --input in.safetensors
//           --output out.safetensors
//   moe-run OUT --layer N --input in.safetensors --output out.safetensors
//           [--device cpu|cuda:N] [--check [--weights-dir DIR]] [--bench ITERS]
//
// On a .mlir module: evaluates layer N with the float64 reference evaluator (no
// code generation). On a folder compiled by moe-compile: runs the generated
// code through the runtime (include/moe/runtime.h), on the device --device
// names (default: the folder's own target); --check also evaluates the
// folder's final.mlir with the reference evaluator on the same input and prints
// the relative error, --bench times the layer. Input: `hidden_states` [T, H],
// F32 or BF16. Output: `hidden_states` [T, H] F32, `topk_ids` [T, k] I32 and
// `topk_weights` [T, k] F32. Any error leaves no output file.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoEDialect.h"
#include "lib/Reference/Evaluator.h"
#include "lib/Support/DType.h"
#include "lib/Support/FloatFormats.h"
#include "lib/Weights/Safetensors.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllDialects.h"
#include "mlir/Parser/Parser.h"

#include "moe/runtime.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/WithColor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

using namespace mlir;
using namespace mlir::moe;
namespace cl = llvm::cl;

static cl::opt<std::string>
    modulePath(cl::Positional, cl::desc("<module.mlir | compiled folder>"),
               cl::Required);
static cl::opt<std::string>
    weightsDir("weights-dir",
               cl::desc("checkpoint folder the module's weights "
                        "refer to (for a compiled folder: the one "
                        "--check reads, default: its source)"),
               cl::value_desc("dir"));
static cl::opt<std::string>
    device("device",
           cl::desc("where a compiled folder runs: cpu or cuda:N (GPU N); "
                    "default: the target it was compiled for"),
           cl::value_desc("cpu|cuda:N"));
static cl::opt<bool>
    check("check", cl::desc("also run the float64 reference evaluator and "
                            "print the relative error"));
static cl::opt<double> tolerance(
    "tolerance",
    cl::desc("with --check: the largest relative error accepted (default 1e-5 "
             "on the cpu; 1e-2 for a cuda folder, whose GPU kernels compute in "
             "bf16 with f32 accumulation)"),
    cl::init(1e-5));
static cl::opt<unsigned>
    benchIterations("bench", cl::desc("time ITERS runs and print one line"),
                    cl::value_desc("ITERS"), cl::init(0));
static cl::opt<int64_t>
    layerIndex("layer",
               cl::desc("decoder-layer index, as in the checkpoint's "
                        "tensor names"),
               cl::value_desc("N"), cl::init(-1));
static cl::opt<std::string>
    inputPath("input", cl::desc("safetensors file with hidden_states"),
              cl::value_desc("file"));
static cl::opt<unsigned> calibrationTokens(
    "calibration-tokens",
    cl::desc("on a checkpoint folder: write calibration hidden states, the "
             "token embeddings of N token ids drawn uniformly (--seed), to "
             "--output (for moe-compile --calibration)"),
    cl::value_desc("N"), cl::init(0));
static cl::opt<unsigned> seed("seed",
                              cl::desc("with --calibration-tokens: the "
                                       "random seed of the token ids"),
                              cl::init(0));
static cl::opt<std::string> outputPath("output",
                                       cl::desc("safetensors file to write"),
                                       cl::value_desc("file"), cl::Required);

static int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "moe-run") << message << "\n";
  return 1;
}

/// The function computing decoder layer `layer`: tagged moe.layer_index (as the
/// importer writes), or else named @layer_<layer>.
static func::FuncOp findLayer(ModuleOp module, int64_t layer,
                              std::string &available) {
  func::FuncOp byName;
  for (auto function : module.getOps<func::FuncOp>()) {
    if (auto index = function->getAttrOfType<IntegerAttr>("moe.layer_index")) {
      available +=
          (available.empty() ? "" : ", ") + std::to_string(index.getInt());
      if (index.getInt() == layer)
        return function;
    } else if (function.getName() == "layer_" + std::to_string(layer)) {
      byName = function;
    }
  }
  return byName;
}

/// hidden_states [T, H] of the input file, as doubles.
static llvm::Expected<reference::RefTensor> readInput(llvm::StringRef path) {
  auto file = ::moe::SafetensorsFile::open(path);
  if (!file)
    return file.takeError();
  return reference::readHiddenStates(**file, path, "hidden_states");
}

/// The bytes of a vector, as the safetensors writer takes them.
template <typename T>
static llvm::ArrayRef<uint8_t> bytesOf(const std::vector<T> &values) {
  return llvm::ArrayRef<uint8_t>(
      reinterpret_cast<const uint8_t *>(values.data()),
      values.size() * sizeof(T));
}

static llvm::Error writeOutput(llvm::StringRef path,
                               const reference::Evaluation &result) {
  auto toF32 = [](const reference::RefTensor &t) {
    std::vector<float> values(t.data.begin(), t.data.end());
    return values;
  };
  std::vector<float> hidden = toF32(result.output), weights;
  std::vector<int32_t> ids;
  std::vector<::moe::SafetensorsWriter::Tensor> tensors = {
      {"hidden_states", MOE_DTYPE_F32,
       std::vector<int64_t>(result.output.shape.begin(),
                            result.output.shape.end()),
       bytesOf(hidden)}};
  if (result.routing) {
    weights = toF32(result.routing->weights);
    ids.assign(result.routing->ids.data.begin(),
               result.routing->ids.data.end());
    std::vector<int64_t> shape(result.routing->ids.shape.begin(),
                               result.routing->ids.shape.end());
    tensors.push_back({"topk_ids", MOE_DTYPE_I32, shape, bytesOf(ids)});
    tensors.push_back({"topk_weights", MOE_DTYPE_F32, shape, bytesOf(weights)});
  }
  return ::moe::SafetensorsWriter::writeFile(path, tensors);
}

/// Parses the module at `path` and evaluates its layer `layerIndex` on `input`
/// with the float64 reference evaluator, weights from `checkpointDir`. Errors
/// are printed.
static FailureOr<reference::Evaluation>
evaluateModule(llvm::StringRef path, llvm::StringRef checkpointDir,
               const reference::RefTensor &input) {
  DialectRegistry registry;
  registerAllDialects(registry);
  registry.insert<MoEDialect>();
  MLIRContext context(registry);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  OwningOpRef<ModuleOp> module =
      parseSourceFile<ModuleOp>(path, sourceMgr, &context);
  if (!module)
    return failure();
  std::string available;
  func::FuncOp function = findLayer(*module, layerIndex, available);
  if (!function)
    return fail(path + ": no function for layer " + std::to_string(layerIndex) +
                (available.empty() ? "" : " (layers: " + available + ")")),
           failure();
  auto checkpoint = ::moe::Checkpoint::open(checkpointDir);
  if (!checkpoint)
    return fail(llvm::toString(checkpoint.takeError())), failure();
  reference::WeightLoader weights(**checkpoint);
  return reference::evaluate(function, input, weights);
}

/// The FLOPs and weight bytes of one call, from the manifest's accounting
/// fields and the routing the call produced.
struct CallCost {
  double flops = 0, bytes = 0;
  int64_t expertsHit = 0;
};

static CallCost callCost(const nlohmann::json &layer, int64_t tokens,
                         llvm::ArrayRef<int32_t> ids) {
  CallCost cost;
  double H = layer.value("hidden_size", 0), E = layer.value("num_experts", 0);
  double I = layer.value("expert_width", 0),
         Is = layer.value("shared_width", 0);
  bool gated = layer.value("gated", true);
  double firstWidth = gated ? 2 * I : I;
  std::set<int32_t> hit;
  int64_t assignments = 0;
  for (int32_t id : ids)
    if (id >= 0) {
      hit.insert(id);
      ++assignments;
    }
  cost.expertsHit = static_cast<int64_t>(hit.size());
  cost.flops =
      2.0 * tokens * E * H +                               // router
      assignments * (2.0 * H * firstWidth + 2.0 * I * H) + // routed experts
      tokens * (2.0 * H * 2 * Is + 2.0 * Is * H);          // shared expert
  cost.bytes =
      double(layer.value("always_bytes", uint64_t(0))) +
      double(hit.size()) * double(layer.value("expert_bytes", uint64_t(0)));
  return cost;
}

/// --check: the float64 reference evaluator on the folder's final.mlir.
static int checkAgainstReference(llvm::StringRef folder,
                                 const nlohmann::json &manifest,
                                 const reference::RefTensor &input,
                                 llvm::ArrayRef<float> output,
                                 llvm::ArrayRef<int32_t> ids, int64_t k) {
  std::string irPath =
      (folder + "/" + manifest.value("ir", "final.mlir")).str();
  std::string source = weightsDir.empty()
                           ? manifest.value("source_checkpoint", "")
                           : std::string(weightsDir);
  FailureOr<reference::Evaluation> expected =
      evaluateModule(irPath, source, input);
  if (failed(expected))
    return 1;
  double error = reference::relativeError(
      expected->output, [&](int64_t i) { return double(output[i]); });
  int64_t tokens = input.dim(0);
  int64_t agree = reference::tokensWithSameExperts(
      expected->routing->ids,
      [&](int64_t t, int64_t j) { return int64_t(ids[t * k + j]); });
  // GPU kernels round activations to bf16 (accumulating in f32), so a cuda
  // folder is held to a looser bound unless the user set one.
  bool gpu = manifest.is_object() && manifest.value("target", "") == "cuda";
  double limit = tolerance.getNumOccurrences() || !gpu ? tolerance : 1e-2;
  bool ok = error <= limit && agree == tokens;
  llvm::outs() << "check: rel_err=" << llvm::format("%.3e", error)
               << " tolerance=" << llvm::format("%.1e", limit)
               << " routing_agreement=" << agree << "/" << tokens << " "
               << (ok ? "ok" : "FAILED") << "\n";
  return ok ? 0 : 1;
}

static int runCompiled() {
  // Without --device the runtime picks the folder's own target (cpu or
  // cuda:0); with it, the runtime checks the name and that the folder can run
  // there.
  moe_model *model = nullptr;
  moe_status opened =
      device.getNumOccurrences()
          ? moe_model_open_device(modulePath.c_str(), device.c_str(), &model)
          : moe_model_open(modulePath.c_str(), &model);
  if (opened != MOE_OK)
    return fail(moe_last_error());
  llvm::scope_exit close([&] { moe_model_close(model); });
  int32_t count = 0;
  moe_model_num_layers(model, &count);
  std::optional<moe_layer_info> info;
  std::string available;
  for (int32_t i = 0; i < count; ++i) {
    moe_layer_info candidate;
    if (moe_model_layer_info(model, i, &candidate) != MOE_OK)
      return fail(moe_last_error());
    available +=
        (available.empty() ? "" : ", ") + std::to_string(candidate.layer);
    if (candidate.layer == layerIndex)
      info = candidate;
  }
  if (!info)
    return fail(modulePath + ": no compiled layer " +
                std::to_string(layerIndex) + " (layers: " + available + ")");
  auto input = readInput(inputPath);
  if (!input)
    return fail(llvm::toString(input.takeError()));
  int64_t tokens = input->dim(0), hidden = input->dim(1), k = info->top_k;
  std::vector<float> x(input->data.begin(), input->data.end());
  std::vector<float> output(tokens * hidden);
  std::vector<int32_t> ids(tokens * k);
  std::vector<float> weights(tokens * k);
  auto run = [&] {
    return moe_layer_run(model, layerIndex, x.data(), MOE_DTYPE_F32, tokens,
                         hidden, output.data(), ids.data(), weights.data());
  };
  if (run() != MOE_OK)
    return fail(moe_last_error());

  reference::Evaluation result;
  result.output = reference::RefTensor({tokens, hidden});
  result.output.data.assign(output.begin(), output.end());
  result.routing = reference::Routing{reference::RefTensor({tokens, k}),
                                      reference::RefTensor({tokens, k})};
  result.routing->ids.data.assign(ids.begin(), ids.end());
  result.routing->weights.data.assign(weights.begin(), weights.end());
  if (llvm::Error error = writeOutput(outputPath, result))
    return fail(llvm::toString(std::move(error)));

  auto manifestBuffer =
      llvm::MemoryBuffer::getFile(modulePath + "/manifest.json");
  nlohmann::json manifest =
      manifestBuffer
          ? nlohmann::json::parse((*manifestBuffer)->getBuffer().begin(),
                                  (*manifestBuffer)->getBuffer().end(), nullptr,
                                  /*allow_exceptions=*/false)
          : nlohmann::json();
  nlohmann::json layer;
  if (manifest.is_object() && manifest["layers"].is_array())
    for (const nlohmann::json &entry : manifest["layers"])
      if (entry.value("layer", -1) == layerIndex)
        layer = entry;

  if (check) {
    if (int status =
            checkAgainstReference(modulePath, manifest, *input, output, ids, k))
      return status;
  }
  if (benchIterations) {
    run(); // warm up
    std::vector<double> times;
    for (unsigned i = 0; i < benchIterations; ++i) {
      auto start = std::chrono::steady_clock::now();
      run();
      times.push_back(std::chrono::duration<double>(
                          std::chrono::steady_clock::now() - start)
                          .count());
    }
    std::sort(times.begin(), times.end());
    double median = times[times.size() / 2];
    CallCost cost =
        layer.is_object() ? callCost(layer, tokens, ids) : CallCost();
    llvm::outs() << "layer=" << layerIndex << " tokens=" << tokens
                 << " median_us=" << llvm::format("%.1f", median * 1e6)
                 << " tokens_per_s=" << llvm::format("%.0f", tokens / median)
                 << " gflops="
                 << llvm::format("%.2f", cost.flops / median / 1e9)
                 << " weights_gbps="
                 << llvm::format("%.2f", cost.bytes / median / 1e9)
                 << " experts_hit=" << cost.expertsHit
                 << " iterations=" << benchIterations << "\n";
  }
  return 0;
}

/// --calibration-tokens N: the embeddings of N random token ids of the
/// checkpoint at modulePath, as hidden_states [N, H] F32 (and the ids as
/// token_ids [N] I32), for measuring transformations (moe-compile
/// --calibration) without any other tool.
static int writeCalibration() {
  if (!llvm::sys::fs::is_directory(modulePath) ||
      !llvm::sys::fs::exists(modulePath + "/config.json"))
    return fail("--calibration-tokens needs a checkpoint folder (with "
                "config.json); " +
                modulePath + " is not one");
  auto checkpoint = ::moe::Checkpoint::open(modulePath);
  if (!checkpoint)
    return fail(llvm::toString(checkpoint.takeError()));
  // The token embedding: model.embed_tokens.weight, or a multimodal model's
  // language_model... variant (the shortest name wins).
  std::string name;
  for (const std::string &candidate : (*checkpoint)->getTensorNames())
    if (llvm::StringRef(candidate).ends_with("embed_tokens.weight") &&
        (name.empty() || candidate.size() < name.size()))
      name = candidate;
  if (name.empty())
    return fail(modulePath + ": no token embedding (a tensor named "
                             "'...embed_tokens.weight')");
  auto entry = (*checkpoint)->get(name);
  if (!entry)
    return fail(llvm::toString(entry.takeError()));
  const ::moe::TensorInfo &tensor = *entry->tensor;
  if (tensor.shape.size() != 2 || tensor.shape[0] < 1 ||
      (tensor.dtype != MOE_DTYPE_F32 && tensor.dtype != MOE_DTYPE_BF16 &&
       tensor.dtype != MOE_DTYPE_F16))
    return fail(modulePath + ": " + name +
                " must be a 2-D [vocab, hidden] F32, BF16 or F16 tensor");
  int64_t vocab = tensor.shape[0], hidden = tensor.shape[1];
  int64_t tokens = calibrationTokens;
  llvm::ArrayRef<uint8_t> bytes = entry->file->getData(tensor);
  std::mt19937_64 random(seed);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  std::vector<int32_t> ids(tokens);
  std::vector<float> states(tokens * hidden);
  for (int64_t t = 0; t < tokens; ++t) {
    ids[t] = int32_t(pick(random));
    for (int64_t h = 0; h < hidden; ++h)
      states[t * hidden + h] = float(
          ::moe::loadElement(tensor.dtype, bytes.data(), ids[t] * hidden + h));
  }
  std::vector<::moe::SafetensorsWriter::Tensor> out = {
      {"hidden_states", MOE_DTYPE_F32, {tokens, hidden}, bytesOf(states)},
      {"token_ids", MOE_DTYPE_I32, {tokens}, bytesOf(ids)}};
  if (llvm::Error error = ::moe::SafetensorsWriter::writeFile(outputPath, out))
    return fail(llvm::toString(std::move(error)));
  llvm::outs() << "wrote " << tokens << " calibration tokens (" << name
               << ") -> " << outputPath << "\n";
  return 0;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(
      argc, argv,
      "moe-run: run an MoE layer of a compiled folder (moe-compile) or "
      "evaluate one of a moe dialect module with the float64 reference "
      "evaluator\n");

  if (calibrationTokens)
    return writeCalibration();
  if (layerIndex < 0)
    return fail("--layer N is required (the decoder layer to run)");
  if (inputPath.empty())
    return fail("--input is required (a safetensors file with hidden_states)");
  if (llvm::sys::fs::is_directory(modulePath))
    return runCompiled();
  if (weightsDir.empty())
    return fail(
        "a .mlir module needs --weights-dir (the checkpoint its weights name)");
  if (check || benchIterations)
    return fail(
        "--check and --bench run a compiled folder (moe-compile -o OUT); " +
        modulePath +
        " is a module, which moe-run evaluates with the reference "
        "evaluator itself");
  if (device.getNumOccurrences())
    return fail("--device applies to compiled folders");
  auto input = readInput(inputPath);
  if (!input)
    return fail(llvm::toString(input.takeError()));
  FailureOr<reference::Evaluation> result =
      evaluateModule(modulePath, weightsDir, *input);
  if (failed(result))
    return 1;
  if (llvm::Error error = writeOutput(outputPath, *result))
    return fail(llvm::toString(std::move(error)));
  return 0;
}
