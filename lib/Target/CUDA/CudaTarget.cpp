//===- CudaTarget.cpp - gpu.modules to PTX, cubins and host globals -------===//

#include "lib/Target/CUDA/CudaTarget.h"
#include "lib/Target/ExternalTool.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
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

namespace {
/// math.floor on f32 as arithmetic: NVPTX has cvt.rmi, but convert-gpu-to-nvvm
/// insists on libdevice's __nv_floorf for it. Values of magnitude >= 2^23 (and
/// NaN, infinities) are already integral and pass through; the rest round
/// toward zero through i32 and step down when that rounded up.
struct FloorWithoutLibdevice : OpRewritePattern<math::FloorOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(math::FloorOp op,
                                PatternRewriter &rewriter) const override {
    Type type = op.getType();
    if (!getElementTypeOrSelf(type).isF32())
      return failure();
    Location loc = op.getLoc();
    auto constant = [&](Type t, Attribute value) -> Value {
      if (auto vector = dyn_cast<VectorType>(type))
        return arith::ConstantOp::create(
            rewriter, loc,
            DenseElementsAttr::get(vector.clone(t),
                                   ArrayRef<Attribute>{value}));
      return arith::ConstantOp::create(rewriter, loc, cast<TypedAttr>(value));
    };
    Type i32 = rewriter.getI32Type();
    Type intType =
        isa<VectorType>(type) ? cast<VectorType>(type).clone(i32) : i32;
    Value x = op.getOperand();
    Value truncated = arith::SIToFPOp::create(
        rewriter, loc, type,
        arith::FPToSIOp::create(rewriter, loc, intType, x));
    Value one = constant(rewriter.getF32Type(), rewriter.getF32FloatAttr(1.0f));
    Value stepDown = arith::CmpFOp::create(
        rewriter, loc, arith::CmpFPredicate::OGT, truncated, x);
    Value floored = arith::SelectOp::create(
        rewriter, loc, stepDown,
        arith::SubFOp::create(rewriter, loc, truncated, one), truncated);
    Value magnitude = math::AbsFOp::create(rewriter, loc, x); // see below
    // !(|x| < 2^23) holds for large values, infinities and NaN.
    Value small = arith::CmpFOp::create(
        rewriter, loc, arith::CmpFPredicate::OLT, magnitude,
        constant(rewriter.getF32Type(), rewriter.getF32FloatAttr(8388608.0f)));
    rewriter.replaceOpWithNewOp<arith::SelectOp>(op, small, floored, x);
    return success();
  }
};

/// math.absf as max(x, -x) (exact, NaN stays NaN, -0 becomes +0): the tanh and
/// erf approximations use it, and convert-gpu-to-nvvm would make it
/// libdevice's __nv_fabsf.
struct AbsWithoutLibdevice : OpRewritePattern<math::AbsFOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(math::AbsFOp op,
                                PatternRewriter &rewriter) const override {
    Value x = op.getOperand();
    rewriter.replaceOpWithNewOp<arith::MaximumFOp>(
        op, x, arith::NegFOp::create(rewriter, op.getLoc(), x));
    return success();
  }
};
} // namespace

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
  // need libdevice at compile time; the polynomial forms are plain arithmetic,
  // and FloorWithoutLibdevice and math-expand-ops below rewrite what they use
  // (floor, fma) into arith
  // before convert-gpu-to-nvvm could pick libdevice for it (NVPTX fuses the
  // multiply-adds again).
  {
    RewritePatternSet patterns(context);
    populateMathPolynomialApproximationPatterns(
        patterns, MathPolynomialApproximationOptions());
    patterns.add<FloorWithoutLibdevice, AbsWithoutLibdevice>(context);
    if (failed(applyPatternsGreedily(container, std::move(patterns))))
      return makeError("cannot expand the math functions of the kernels");
  }
  const char *pipeline =
      "gpu.module(math-expand-ops{ops=fma}, convert-nvgpu-to-nvvm, "
      "convert-vector-to-scf, "
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
                                     llvm::StringRef ptxPath) {
  std::string cubinPath = (ptxPath + ".cubin").str();
  auto cleanUp = [&] { llvm::sys::fs::remove(cubinPath); };
  std::string arch = "-arch=" + target.chip;
  llvm::Expected<ToolRun> run = runTool(
      ptxas, {ptxas.str(), arch, "-O3", ptxPath.str(), "-o", cubinPath});
  if (!run) {
    cleanUp();
    return run.takeError();
  }
  if (!run->succeeded()) {
    cleanUp();
    return makeError("ptxas " + arch + " rejected kernel " + image.name +
                     (run->message.empty() ? "" : ": " + run->message) + "\n" +
                     run->output);
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
