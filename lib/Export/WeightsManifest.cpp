//===- WeightsManifest.cpp - list the tensors a module reads --------------===//
//
// `moe-translate --moe-list-weights` answers "which tensors, of which files,
// does this module need?" without touching any file: weights stay references
// until a later stage streams them.
//
//===----------------------------------------------------------------------===//

#include "lib/Export/Translations.h"

#include "dialects/moe/MoEOps.h"
#include "lib/Support/DType.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/InitAllDialects.h"
#include "mlir/Tools/mlir-translate/Translation.h"

#include <map>
#include <nlohmann/json.hpp>

using namespace mlir;
using namespace mlir::moe;

LogicalResult mlir::moe::exportWeightsManifest(Operation *root,
                                               llvm::raw_ostream &os) {
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  // One entry per (file, name); the first reference is the one later ones must
  // agree with.
  std::map<std::pair<std::string, std::string>, WeightOp> seen;
  uint64_t totalBytes = 0;

  WalkResult walk = root->walk([&](WeightOp weight) -> WalkResult {
    std::string file =
        weight.getFile() ? weight.getFile()->str() : std::string();
    auto [it, inserted] =
        seen.try_emplace({file, weight.getName().str()}, weight);
    if (!inserted) {
      WeightOp first = it->second;
      if (first.getResult().getType() == weight.getResult().getType() &&
          first.getExperts() == weight.getExperts() &&
          first.getPermutation() == weight.getPermutation())
        return WalkResult::advance();
      InFlightDiagnostic diag =
          weight.emitError()
          << "tensor '" << weight.getName()
          << "' is referenced with a different type or layout than before";
      diag.attachNote(first.getLoc()) << "first referenced here";
      return WalkResult::interrupt();
    }

    RankedTensorType type = weight.getResult().getType();
    moe_dtype dtype = *getStorageDType(type.getElementType());
    SmallVector<int64_t> stored = weight.getStoredShape();
    std::optional<uint64_t> bytes =
        ::moe::getTensorByteSize(dtype, type.getShape());
    if (!bytes || *bytes > UINT64_MAX - totalBytes)
      return weight.emitError()
             << "tensor '" << weight.getName()
             << "' is too large: its byte size overflows 64 bits";
    totalBytes += *bytes;

    nlohmann::ordered_json entry;
    entry["name"] = weight.getName().str();
    if (!file.empty())
      entry["file"] = file;
    entry["dtype"] = ::moe::getSafetensorsName(dtype).str();
    entry["shape"] =
        std::vector<int64_t>(type.getShape().begin(), type.getShape().end());
    entry["stored_shape"] = std::vector<int64_t>(stored.begin(), stored.end());
    if (std::optional<int64_t> experts = weight.getExperts())
      entry["experts"] = *experts;
    if (std::optional<ArrayRef<int64_t>> perm = weight.getPermutation())
      entry["permutation"] = std::vector<int64_t>(perm->begin(), perm->end());
    entry["bytes"] = *bytes;
    tensors.push_back(std::move(entry));
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();

  nlohmann::ordered_json manifest;
  manifest["tensors"] = std::move(tensors);
  manifest["total_bytes"] = totalBytes;
  os << manifest.dump(2) << "\n";
  return success();
}

void mlir::moe::registerMoETranslations() {
  static TranslateFromMLIRRegistration listWeights(
      "moe-list-weights",
      "list the external tensors a module references, as JSON",
      exportWeightsManifest, [](DialectRegistry &registry) {
        registerAllDialects(registry);
        registry.insert<MoEDialect>();
      });
}
