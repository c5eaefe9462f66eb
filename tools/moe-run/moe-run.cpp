//===- moe-run.cpp - run an MoE layer -------------------------------------===//
//
//   moe-run MODULE.mlir --weights-dir DIR --layer N --input in.safetensors
//           --output out.safetensors
//
// Evaluates layer N of a moe dialect module with the float64 reference evaluator (no code
// generation), on hidden states read from `in.safetensors` (`hidden_states` [T, H], F32 or
// BF16). Writes `hidden_states` [T, H] F32 and, when the layer routes, `topk_ids` [T, k] I32
// and `topk_weights` [T, k] F32. Any error leaves no output file behind.
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

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/WithColor.h"

using namespace mlir;
using namespace mlir::moe;
namespace cl = llvm::cl;

static cl::opt<std::string> modulePath(cl::Positional, cl::desc("<module.mlir>"),
                                       cl::Required);
static cl::opt<std::string> weightsDir("weights-dir",
                                       cl::desc("checkpoint folder the module's weights "
                                                "refer to"),
                                       cl::value_desc("dir"), cl::Required);
static cl::opt<int64_t> layerIndex("layer",
                                   cl::desc("decoder-layer index, as in the checkpoint's "
                                            "tensor names"),
                                   cl::value_desc("N"), cl::Required);
static cl::opt<std::string> inputPath("input", cl::desc("safetensors file with hidden_states"),
                                      cl::value_desc("file"), cl::Required);
static cl::opt<std::string> outputPath("output", cl::desc("safetensors file to write"),
                                       cl::value_desc("file"), cl::Required);

static int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "moe-run") << message << "\n";
  return 1;
}

/// The function computing decoder layer `layer`: tagged moe.layer_index (as the importer
/// writes), or else named @layer_<layer>.
static func::FuncOp findLayer(ModuleOp module, int64_t layer, std::string &available) {
  func::FuncOp byName;
  for (auto function : module.getOps<func::FuncOp>()) {
    if (auto index = function->getAttrOfType<IntegerAttr>("moe.layer_index")) {
      available += (available.empty() ? "" : ", ") + std::to_string(index.getInt());
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
  const ::moe::TensorInfo *tensor = (*file)->find("hidden_states");
  if (!tensor)
    return llvm::createStringError("%s: no tensor named 'hidden_states'", path.str().c_str());
  if (tensor->shape.size() != 2)
    return llvm::createStringError("%s: tensor 'hidden_states' must be 2-D [tokens, hidden]",
                                   path.str().c_str());
  if (tensor->dtype != MOE_DTYPE_F32 && tensor->dtype != MOE_DTYPE_BF16)
    return llvm::createStringError("%s: tensor 'hidden_states' must be F32 or BF16, not %s",
                                   path.str().c_str(),
                                   ::moe::getSafetensorsName(tensor->dtype).str().c_str());
  if (tensor->shape[0] == 0)
    return llvm::createStringError("%s: tensor 'hidden_states' has no tokens",
                                   path.str().c_str());
  reference::RefTensor result({tensor->shape[0], tensor->shape[1]});
  llvm::ArrayRef<uint8_t> bytes = (*file)->getData(*tensor);
  for (int64_t i = 0; i < result.numel(); ++i)
    result.data[i] = ::moe::loadElement(tensor->dtype, bytes.data(), i);
  return result;
}

static llvm::Error writeOutput(llvm::StringRef path, const reference::Evaluation &result) {
  auto toF32 = [](const reference::RefTensor &t) {
    std::vector<float> values(t.data.begin(), t.data.end());
    return values;
  };
  auto bytesOf = [](const auto &values) {
    return llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(values.data()),
                                   values.size() * sizeof(values[0]));
  };
  std::vector<float> hidden = toF32(result.output), weights;
  std::vector<int32_t> ids;
  std::vector<::moe::SafetensorsWriter::Tensor> tensors = {
      {"hidden_states", MOE_DTYPE_F32,
       std::vector<int64_t>(result.output.shape.begin(), result.output.shape.end()),
       bytesOf(hidden)}};
  if (result.routing) {
    weights = toF32(result.routing->weights);
    ids.assign(result.routing->ids.data.begin(), result.routing->ids.data.end());
    std::vector<int64_t> shape(result.routing->ids.shape.begin(),
                               result.routing->ids.shape.end());
    tensors.push_back({"topk_ids", MOE_DTYPE_I32, shape, bytesOf(ids)});
    tensors.push_back({"topk_weights", MOE_DTYPE_F32, shape, bytesOf(weights)});
  }
  return ::moe::SafetensorsWriter::writeFile(path, tensors);
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(argc, argv,
                              "moe-run: evaluate an MoE layer of a moe dialect module with "
                              "the float64 reference evaluator\n");

  if (llvm::sys::fs::is_directory(modulePath))
    return fail(modulePath + " is a folder; moe-run evaluates a .mlir module here");

  DialectRegistry registry;
  registerAllDialects(registry);
  registry.insert<MoEDialect>();
  MLIRContext context(registry);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);

  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(modulePath, sourceMgr, &context);
  if (!module)
    return 1;
  std::string available;
  func::FuncOp function = findLayer(*module, layerIndex, available);
  if (!function)
    return fail(modulePath + ": no function for layer " + std::to_string(layerIndex) +
                (available.empty() ? "" : " (layers: " + available + ")"));

  auto checkpoint = ::moe::Checkpoint::open(weightsDir);
  if (!checkpoint)
    return fail(llvm::toString(checkpoint.takeError()));
  auto input = readInput(inputPath);
  if (!input)
    return fail(llvm::toString(input.takeError()));

  reference::WeightLoader weights(**checkpoint);
  FailureOr<reference::Evaluation> result = reference::evaluate(function, *input, weights);
  if (failed(result))
    return 1;
  if (llvm::Error error = writeOutput(outputPath, *result))
    return fail(llvm::toString(std::move(error)));
  return 0;
}
