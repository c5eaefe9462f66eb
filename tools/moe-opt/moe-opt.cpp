//===- moe-opt.cpp - moec's optimizer driver ------------------------------===//
//
// mlir-opt with the moe dialect and passes. Every upstream dialect, extension
// and pass is registered too, so a moe pipeline can be tried end to end on one
// command line.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoEDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registry.insert<mlir::moe::MoEDialect>();

  mlir::registerAllPasses();
  mlir::moe::registerMoEPasses();
  mlir::moe::registerMoEPipelines();

  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "moec optimizer driver\n", registry));
}
