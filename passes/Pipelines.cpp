//===- Pipelines.cpp - named moe pass pipelines ---------------------------===//

#include "passes/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mlir::moe::registerMoEPipelines() {
  PassPipelineRegistration<>("moe-explicit",
                             "canonicalize moe.layer ops, decompose them into "
                             "route / dispatch / experts / combine, "
                             "and clean up (canonicalize, cse)",
                             [](OpPassManager &pm) {
                               pm.addPass(createCanonicalizerPass());
                               pm.addPass(moe::createMoEDecompose());
                               pm.addPass(createCanonicalizerPass());
                               pm.addPass(createCSEPass());
                             });
}
