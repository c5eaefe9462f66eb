//===- moe-translate.cpp - moec's translation driver ----------------------===//
//
// mlir-translate with moec's translations (see lib/Export) beside upstream's.
//
//===----------------------------------------------------------------------===//

#include "lib/Export/Translations.h"

#include "mlir/InitAllTranslations.h"
#include "mlir/Tools/mlir-translate/MlirTranslateMain.h"

int main(int argc, char **argv) {
  mlir::registerAllTranslations();
  mlir::moe::registerMoETranslations();
  return mlir::failed(mlir::mlirTranslateMain(argc, argv, "moec translation driver\n"));
}
