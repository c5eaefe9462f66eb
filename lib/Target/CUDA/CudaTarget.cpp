//===- CudaTarget.cpp - gpu.modules to PTX, cubins and host globals -------===//

#include "lib/Target/CUDA/CudaTarget.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::moe;

static llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

llvm::Expected<CudaTarget> mlir::moe::parseCudaTarget(llvm::StringRef spec) {
  CudaTarget target;
  if (spec == "cuda")
    return target;
  if (!spec.consume_front("cuda:"))
    return makeError("unknown target '" + spec +
                     "'; expected cuda or cuda:<sm_80|sm_90|sm_90a>");
  if (spec != "sm_80" && spec != "sm_90" && spec != "sm_90a")
    return makeError("unknown CUDA architecture '" + spec +
                     "'; expected sm_80, sm_90 or sm_90a");
  target.chip = spec.str();
  return target;
}

Attribute mlir::moe::getNVVMTargetAttr(MLIRContext *context,
                                       const CudaTarget &target) {
  context->loadDialect<NVVM::NVVMDialect>();
  return NVVM::NVVMTargetAttr::get(context, /*optLevel=*/3,
                                   "nvptx64-nvidia-cuda", target.chip,
                                   target.features);
}

llvm::Expected<std::vector<KernelImage>>
mlir::moe::lowerKernelsToPTX(ModuleOp container) {
  MLIRContext *context = container.getContext();
  // The NVPTX backend and the translations gpu-module-to-binary needs.
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTarget();
  LLVMInitializeNVPTXTargetMC();
  LLVMInitializeNVPTXAsmPrinter();
  DialectRegistry registry;
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  context->appendDialectRegistry(registry);

  // exp/tanh/erf would otherwise become libdevice calls (__nv_expf, ...), which
  // need libdevice at compile time; the polynomial forms are plain arithmetic.
  {
    RewritePatternSet patterns(context);
    populateMathPolynomialApproximationPatterns(
        patterns, MathPolynomialApproximationOptions());
    if (failed(applyPatternsGreedily(container, std::move(patterns))))
      return makeError("cannot expand the math functions of the kernels");
  }
  const char *pipeline =
      "gpu.module(convert-nvgpu-to-nvvm, convert-vector-to-scf, "
      "convert-scf-to-cf, convert-nvvm-to-llvm, expand-strided-metadata, "
      "lower-affine, convert-gpu-to-nvvm{index-bitwidth=64}, canonicalize, "
      "cse, reconcile-unrealized-casts), gpu-module-to-binary{format=isa}";
  PassManager pm(context);
  if (failed(parsePassPipeline(pipeline, pm)))
    return makeError("cannot build the GPU lowering pipeline");
  if (failed(pm.run(container)))
    return makeError("lowering the kernels to PTX failed");

  std::vector<KernelImage> images;
  for (auto binary : container.getOps<gpu::BinaryOp>()) {
    for (Attribute object : binary.getObjects()) {
      auto objectAttr = cast<gpu::ObjectAttr>(object);
      images.push_back({binary.getName().str(),
                        objectAttr.getObject().getValue().str(), ""});
    }
  }
  return images;
}

std::string mlir::moe::findPtxas() {
  llvm::SmallVector<std::string> candidates;
  for (const char *variable : {"CUDA_HOME", "CUDA_PATH"})
    if (const char *root = std::getenv(variable))
      candidates.push_back(std::string(root) + "/bin/ptxas");
  candidates.push_back("/usr/local/cuda/bin/ptxas");
  for (const std::string &candidate : candidates)
    if (llvm::sys::fs::can_execute(candidate))
      return candidate;
  if (llvm::ErrorOr<std::string> onPath = llvm::sys::findProgramByName("ptxas"))
    return *onPath;
  return "";
}

llvm::Error mlir::moe::assembleCubin(KernelImage &image,
                                     const CudaTarget &target,
                                     llvm::StringRef ptxas,
                                     llvm::StringRef workDir) {
  auto path = [&](llvm::StringRef suffix) {
    llvm::SmallString<256> p(workDir);
    llvm::sys::path::append(p, image.name + suffix.str());
    return std::string(p);
  };
  std::string ptxPath = path(".ptx"), cubinPath = path(".cubin"),
              logPath = path(".ptxas.log");
  auto cleanUp = [&] {
    for (const std::string &p : {ptxPath, cubinPath, logPath})
      llvm::sys::fs::remove(p);
  };
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(ptxPath, ec);
    if (ec)
      return makeError("cannot write " + ptxPath + ": " + ec.message());
    os << image.ptx;
  }
  std::string arch = "-arch=" + target.chip;
  llvm::SmallVector<llvm::StringRef> args{ptxas,   arch, "-O3",
                                          ptxPath, "-o", cubinPath};
  std::optional<llvm::StringRef> redirects[] = {
      std::nullopt, llvm::StringRef(logPath), llvm::StringRef(logPath)};
  std::string message;
  int status = llvm::sys::ExecuteAndWait(ptxas, args, std::nullopt, redirects,
                                         0, 0, &message);
  if (status != 0) {
    std::string log;
    if (auto buffer = llvm::MemoryBuffer::getFile(logPath))
      log = (*buffer)->getBuffer().str();
    cleanUp();
    return makeError("ptxas " + arch + " rejected kernel " + image.name +
                     (message.empty() ? "" : ": " + message) + "\n" + log);
  }
  auto buffer = llvm::MemoryBuffer::getFile(cubinPath, /*IsText=*/false);
  if (!buffer) {
    cleanUp();
    return makeError("ptxas wrote no " + cubinPath);
  }
  image.cubin = (*buffer)->getBuffer().str();
  cleanUp();
  return llvm::Error::success();
}

void mlir::moe::embedKernelImage(ModuleOp host, llvm::StringRef symbol,
                                 const KernelImage &image) {
  OpBuilder b(host.getContext());
  b.setInsertionPointToEnd(host.getBody());
  Location loc = host.getLoc();
  auto bytes = [&](llvm::StringRef name, std::string value) {
    auto type = LLVM::LLVMArrayType::get(b.getI8Type(), value.size());
    LLVM::GlobalOp::create(b, loc, type, /*isConstant=*/true,
                           LLVM::Linkage::External, name.str(),
                           b.getStringAttr(value), /*alignment=*/16);
  };
  bytes((symbol + "_ptx").str(), image.ptx + '\0');
  // A zero-length array is not a valid global: an absent cubin is one byte
  // with size 0.
  bytes((symbol + "_cubin").str(),
        image.cubin.empty() ? std::string(1, '\0') : image.cubin);
  LLVM::GlobalOp::create(b, loc, b.getI64Type(), /*isConstant=*/true,
                         LLVM::Linkage::External,
                         (symbol + "_cubin_size").str(),
                         b.getI64IntegerAttr(int64_t(image.cubin.size())));
}
