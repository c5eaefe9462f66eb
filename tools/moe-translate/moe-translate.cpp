//===- moe-translate.cpp - moec's translation driver ----------------------===//
//
// mlir-translate with moec's translations beside upstream's:
//   --import-hf DIR         Hugging Face checkpoint folder -> moe dialect
//   --moe-list-weights      the external tensors a module reads, as JSON
//
//===----------------------------------------------------------------------===//

#include "lib/Export/Translations.h"
#include "lib/Import/HFImporter.h"

#include "mlir/InitAllTranslations.h"
#include "mlir/Tools/mlir-translate/MlirTranslateMain.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <string>
#include <vector>

/// mlir-translate reads its input as a file; a checkpoint is a folder. For
/// --import-hf, a folder argument is replaced by the config.json inside it,
/// which the import translation maps back to its folder.
static std::vector<std::string> pointFoldersAtConfig(int argc, char **argv) {
  std::vector<std::string> args(argv, argv + argc);
  bool importing = false;
  for (const std::string &arg : args)
    importing |= arg == "--import-hf" || arg == "-import-hf";
  if (!importing)
    return args;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "-o") {
      ++i; // the output file, not the input
      continue;
    }
    if (!args[i].empty() && args[i][0] != '-' &&
        llvm::sys::fs::is_directory(args[i])) {
      llvm::SmallString<256> config(args[i]);
      llvm::sys::path::append(config, "config.json");
      args[i] = std::string(config);
    }
  }
  return args;
}

int main(int argc, char **argv) {
  mlir::registerAllTranslations();
  mlir::moe::registerMoETranslations();
  mlir::moe::registerImportHFTranslation();

  std::vector<std::string> args = pointFoldersAtConfig(argc, argv);
  std::vector<char *> pointers;
  for (std::string &arg : args)
    pointers.push_back(arg.data());
  return mlir::failed(mlir::mlirTranslateMain(static_cast<int>(pointers.size()),
                                              pointers.data(),
                                              "moec translation driver\n"));
}
