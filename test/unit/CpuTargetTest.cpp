//===- CpuTargetTest.cpp - LLVM dialect to dlopen'able library ------------===//
//
// End to end through what moec's CPU path relies on: modules lowered by
// upstream's conversion passes are compiled in-process, linked with ld.lld,
// loaded with dlopen and run; OpenMP code runs on Debian's libomp; target specs
// parse; failed links leave nothing behind; and the chosen CPU's vector width
// reaches LLVM's vectorizer.
//
//===----------------------------------------------------------------------===//

#include "lib/Target/CPU/CpuTarget.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/OpenMP/OpenMPDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/TargetParser/Triple.h"

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

using namespace mlir;
using namespace mlir::moe;

namespace {

/// y[i] = a * x[i] + y[i] for i < n. Static shapes because the bare-pointer
/// calling convention (plain float* arguments, as moec's runtime passes them)
/// requires them.
constexpr const char *kAxpy = R"mlir(
func.func @axpy(%a: f32, %x: memref<1024xf32>, %y: memref<1024xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
    %xi = memref.load %x[%i] : memref<1024xf32>
    %yi = memref.load %y[%i] : memref<1024xf32>
    %ax = arith.mulf %a, %xi : f32
    %r = arith.addf %ax, %yi : f32
    memref.store %r, %y[%i] : memref<1024xf32>
  }
  return
}
)mlir";

/// Each iteration records its value and the OpenMP thread that ran it.
constexpr const char *kParallelFill = R"mlir(
func.func private @omp_get_thread_num() -> i32
func.func @fill(%out: memref<64xf32>, %tids: memref<64xi32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %three = arith.constant 3.0 : f32
  scf.parallel (%i) = (%c0) to (%c64) step (%c1) {
    %tid = func.call @omp_get_thread_num() : () -> i32
    %ii = arith.index_cast %i : index to i32
    %fi = arith.sitofp %ii : i32 to f32
    %v = arith.mulf %fi, %three : f32
    memref.store %v, %out[%i] : memref<64xf32>
    memref.store %tid, %tids[%i] : memref<64xi32>
    scf.reduce
  }
  return
}
)mlir";

/// Already in the LLVM dialect; calls a function nothing defines.
constexpr const char *kUndefinedCall = R"mlir(
llvm.func @moec_test_symbol_nobody_defines()
llvm.func @caller() {
  llvm.call @moec_test_symbol_nobody_defines() : () -> ()
  llvm.return
}
)mlir";

class CpuTargetTest : public ::testing::Test {
protected:
  void SetUp() override {
    context.loadDialect<arith::ArithDialect, cf::ControlFlowDialect,
                        func::FuncDialect, LLVM::LLVMDialect,
                        memref::MemRefDialect, omp::OpenMPDialect,
                        scf::SCFDialect>();
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("moec-cpu-target", dir));
  }
  void TearDown() override {
    for (void *handle : handles)
      dlclose(handle);
    llvm::sys::fs::remove_directories(dir);
  }

  std::string path(llvm::StringRef name) const {
    llvm::SmallString<128> result(dir);
    llvm::sys::path::append(result, name);
    return result.str().str();
  }

  OwningOpRef<ModuleOp> parse(llvm::StringRef source) {
    return parseSourceString<ModuleOp>(source, &context);
  }

  /// Upstream's lowering to the LLVM dialect, in the order codegen-notes.md
  /// found to work (memref before scf-to-cf, because scf-to-openmp leaves
  /// memref.alloca_scope behind).
  LogicalResult lowerToLLVM(ModuleOp module, bool withOpenMP) {
    PassManager pm(&context);
    if (withOpenMP) {
      ConvertSCFToOpenMPPassOptions ompOptions;
      // More threads than this machine may have cores, so that the test sees
      // several.
      ompOptions.numThreads = kThreads;
      pm.addPass(createConvertSCFToOpenMPPass(ompOptions));
    }
    pm.addPass(createFinalizeMemRefToLLVMConversionPass());
    pm.addPass(createSCFToControlFlowPass());
    pm.addPass(createArithToLLVMConversionPass());
    pm.addPass(createConvertControlFlowToLLVMPass());
    ConvertFuncToLLVMPassOptions funcOptions;
    funcOptions.useBarePtrCallConv = true;
    pm.addPass(createConvertFuncToLLVMPass(funcOptions));
    if (withOpenMP)
      pm.addPass(createConvertOpenMPToLLVMPass());
    pm.addPass(createReconcileUnrealizedCastsPass());
    return pm.run(module);
  }

  /// Compiles `module` for `target`, links it alone into `name` and dlopens it.
  void *buildAndLoad(ModuleOp module, const CpuTarget &target,
                     llvm::StringRef name, bool withOpenMP) {
    std::string object = path((name + ".o").str());
    std::string library = path(name);
    if (llvm::Error error = emitObjectFile(module, target, object)) {
      ADD_FAILURE() << llvm::toString(std::move(error));
      return nullptr;
    }
    if (llvm::Error error = linkSharedLibrary({object}, library, withOpenMP)) {
      ADD_FAILURE() << llvm::toString(std::move(error));
      return nullptr;
    }
    void *handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      ADD_FAILURE() << "dlopen: " << dlerror();
      return nullptr;
    }
    handles.push_back(handle);
    return handle;
  }

  static bool isX86_64Host() {
    return llvm::Triple(getHostCpuTarget().triple).getArch() ==
           llvm::Triple::x86_64;
  }

  static constexpr int kThreads = 4;
  MLIRContext context;
  llvm::SmallString<128> dir;
  std::vector<void *> handles;
};

TEST_F(CpuTargetTest, AxpyRunsFromSharedLibrary) {
  OwningOpRef<ModuleOp> module = parse(kAxpy);
  ASSERT_TRUE(module);
  ASSERT_TRUE(succeeded(lowerToLLVM(*module, /*withOpenMP=*/false)));
  void *handle = buildAndLoad(*module, getHostCpuTarget(), "libaxpy.so", false);
  ASSERT_TRUE(handle);
  using AxpyFn = void (*)(float, const float *, float *, int64_t);
  auto axpy = reinterpret_cast<AxpyFn>(dlsym(handle, "axpy"));
  ASSERT_TRUE(axpy) << dlerror();

  std::vector<float> x(1024), y(1024);
  for (int i = 0; i < 1024; ++i) {
    x[i] = static_cast<float>(i);
    y[i] = static_cast<float>(1000 - i);
  }
  // 1000 is not a multiple of any vector width: the scalar tail must be right
  // too, and the elements past n untouched. Every value is exact in float.
  axpy(2.5f, x.data(), y.data(), 1000);
  for (int i = 0; i < 1024; ++i) {
    float expected =
        i < 1000 ? 2.5f * i + (1000 - i) : static_cast<float>(1000 - i);
    ASSERT_EQ(y[i], expected) << "element " << i;
  }
}

TEST_F(CpuTargetTest, OpenMPParallelLoopRunsOnLibomp) {
  OwningOpRef<ModuleOp> module = parse(kParallelFill);
  ASSERT_TRUE(module);
  ASSERT_TRUE(succeeded(lowerToLLVM(*module, /*withOpenMP=*/true)));
  void *handle = buildAndLoad(*module, getHostCpuTarget(), "libfill.so", true);
  ASSERT_TRUE(handle);
  using FillFn = void (*)(float *, int32_t *);
  auto fill = reinterpret_cast<FillFn>(dlsym(handle, "fill"));
  ASSERT_TRUE(fill) << dlerror();

  std::vector<float> out(64, -1.0f);
  std::vector<int32_t> tids(64, -1);
  fill(out.data(), tids.data());
  std::set<int32_t> seen;
  for (int i = 0; i < 64; ++i) {
    ASSERT_EQ(out[i], 3.0f * i) << "element " << i;
    ASSERT_GE(tids[i], 0) << "element " << i;
    ASSERT_LT(tids[i], kThreads) << "element " << i;
    seen.insert(tids[i]);
  }
  // The num_threads clause makes libomp start the team even on a single core.
  EXPECT_GT(seen.size(), 1u) << "the loop ran on one thread only";
}

TEST_F(CpuTargetTest, ParsesCpuSpecs) {
  CpuTarget host = getHostCpuTarget();
  EXPECT_FALSE(host.triple.empty());
  EXPECT_FALSE(host.cpu.empty());
  for (llvm::StringRef spec : {"cpu", "cpu:native"}) {
    llvm::Expected<CpuTarget> parsed = parseCpuTarget(spec);
    ASSERT_TRUE(bool(parsed))
        << spec.str() << ": " << llvm::toString(parsed.takeError());
    EXPECT_EQ(parsed->triple, host.triple) << spec.str();
    EXPECT_EQ(parsed->cpu, host.cpu) << spec.str();
    EXPECT_EQ(parsed->features, host.features) << spec.str();
    EXPECT_EQ(parsed->optLevel, 3u) << spec.str();
  }

  auto expectError = [](llvm::StringRef spec, llvm::StringRef fragment) {
    llvm::Expected<CpuTarget> parsed = parseCpuTarget(spec);
    ASSERT_FALSE(bool(parsed)) << spec.str() << " was accepted";
    std::string message = llvm::toString(parsed.takeError());
    EXPECT_NE(message.find(fragment.str()), std::string::npos)
        << spec.str() << ": " << message;
  };
  expectError("cpu:nonsense", "unknown CPU 'nonsense'");
  expectError("gpu", "unknown target 'gpu'");
  expectError("gpu:sm_90a", "unknown target 'gpu'");
  expectError("cpu:", "missing CPU name");

  if (!isX86_64Host())
    GTEST_SKIP() << "x86 CPU names only parse on an x86-64 host";
  for (llvm::StringRef cpu : {"x86-64", "x86-64-v3", "znver4"}) {
    llvm::Expected<CpuTarget> parsed = parseCpuTarget(("cpu:" + cpu).str());
    ASSERT_TRUE(bool(parsed))
        << cpu.str() << ": " << llvm::toString(parsed.takeError());
    EXPECT_EQ(parsed->triple, host.triple);
    EXPECT_EQ(parsed->cpu, cpu.str());
    EXPECT_EQ(parsed->features, "");
  }
}

TEST_F(CpuTargetTest, FailedLinkLeavesNothingBehind) {
  OwningOpRef<ModuleOp> module = parse(kUndefinedCall);
  ASSERT_TRUE(module);
  std::string object = path("undefined.o");
  ASSERT_FALSE(bool(emitObjectFile(*module, getHostCpuTarget(), object)));

  std::string library = path("libundefined.so");
  llvm::Error error =
      linkSharedLibrary({object}, library, /*withOpenMP=*/false);
  ASSERT_TRUE(bool(error));
  std::string message = llvm::toString(std::move(error));
  EXPECT_NE(message.find("moec_test_symbol_nobody_defines"), std::string::npos)
      << message;
  EXPECT_FALSE(llvm::sys::fs::exists(library));

  error = linkSharedLibrary({path("missing.o")}, library, /*withOpenMP=*/true);
  ASSERT_TRUE(bool(error));
  message = llvm::toString(std::move(error));
  EXPECT_NE(message.find("missing.o"), std::string::npos) << message;
  EXPECT_FALSE(llvm::sys::fs::exists(library));

  // An earlier library at the same path survives a failed relink unchanged.
  {
    std::error_code ec;
    llvm::raw_fd_ostream stale(library, ec);
    ASSERT_FALSE(ec);
    stale << "previous build";
  }
  error = linkSharedLibrary({object}, library, /*withOpenMP=*/false);
  ASSERT_TRUE(bool(error));
  llvm::consumeError(std::move(error));
  auto contents = llvm::MemoryBuffer::getFile(library);
  ASSERT_TRUE(bool(contents));
  EXPECT_EQ((*contents)->getBuffer(), "previous build");

  // No temporary files either: only the object and the stale library remain.
  std::error_code ec;
  std::vector<std::string> entries;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec;
       it.increment(ec))
    entries.push_back(llvm::sys::path::filename(it->path()).str());
  llvm::sort(entries);
  EXPECT_EQ(entries,
            (std::vector<std::string>{"libundefined.so", "undefined.o"}));
}

TEST_F(CpuTargetTest, TranslationFailureIsAnError) {
  // Still in the func dialect: there is no LLVM IR translation for it.
  OwningOpRef<ModuleOp> module = parse(kAxpy);
  ASSERT_TRUE(module);
  std::string object = path("axpy.o");
  llvm::Error error = emitObjectFile(*module, getHostCpuTarget(), object);
  ASSERT_TRUE(bool(error));
  std::string message = llvm::toString(std::move(error));
  EXPECT_NE(message.find("cannot translate"), std::string::npos) << message;
  EXPECT_NE(message.find("func.func"), std::string::npos) << message;
  EXPECT_FALSE(llvm::sys::fs::exists(object));

  CpuTarget badLevel = getHostCpuTarget();
  badLevel.optLevel = 4;
  error = emitObjectFile(*module, badLevel, object);
  ASSERT_TRUE(bool(error));
  message = llvm::toString(std::move(error));
  EXPECT_NE(message.find("optimization level 4"), std::string::npos) << message;
}

TEST_F(CpuTargetTest, TargetCpuReachesVectorizer) {
  if (!isX86_64Host())
    GTEST_SKIP() << "checks x86 vector widths";
  OwningOpRef<ModuleOp> module = parse(kAxpy);
  ASSERT_TRUE(module);
  ASSERT_TRUE(succeeded(lowerToLLVM(*module, /*withOpenMP=*/false)));

  // AVX2's 256-bit registers hold 8 floats; baseline x86-64 (SSE2) only 4.
  llvm::Expected<CpuTarget> avx2 = parseCpuTarget("cpu:x86-64-v3");
  ASSERT_TRUE(bool(avx2)) << llvm::toString(avx2.takeError());
  llvm::Expected<std::string> ir = emitOptimizedLLVMIR(*module, *avx2);
  ASSERT_TRUE(bool(ir)) << llvm::toString(ir.takeError());
  EXPECT_NE(ir->find("<8 x float>"), std::string::npos) << *ir;
  EXPECT_NE(ir->find("\"target-cpu\"=\"x86-64-v3\""), std::string::npos) << *ir;

  llvm::Expected<CpuTarget> baseline = parseCpuTarget("cpu:x86-64");
  ASSERT_TRUE(bool(baseline)) << llvm::toString(baseline.takeError());
  ir = emitOptimizedLLVMIR(*module, *baseline);
  ASSERT_TRUE(bool(ir)) << llvm::toString(ir.takeError());
  EXPECT_NE(ir->find("<4 x float>"), std::string::npos) << *ir;
  EXPECT_EQ(ir->find("<8 x float>"), std::string::npos) << *ir;

  // No optimization, no vectors.
  CpuTarget unoptimized = *avx2;
  unoptimized.optLevel = 0;
  ir = emitOptimizedLLVMIR(*module, unoptimized);
  ASSERT_TRUE(bool(ir)) << llvm::toString(ir.takeError());
  EXPECT_EQ(ir->find("x float>"), std::string::npos) << *ir;
}

} // namespace

namespace {
TEST(CpuFeatures, FollowTheCpuName) {
#if defined(__x86_64__)
  auto zen4 = mlir::moe::parseCpuTarget("cpu:znver4");
  auto haswellLike = mlir::moe::parseCpuTarget("cpu:x86-64-v3");
  ASSERT_TRUE(bool(zen4) && bool(haswellLike));
  EXPECT_TRUE(*mlir::moe::cpuHasFeature(*zen4, "avx512f"));
  EXPECT_FALSE(*mlir::moe::cpuHasFeature(*haswellLike, "avx512f"));
  EXPECT_TRUE(*mlir::moe::cpuHasFeature(*haswellLike, "fma"));
  // Explicit features override the CPU's defaults.
  mlir::moe::CpuTarget without = *zen4;
  without.features = "-avx512f";
  EXPECT_FALSE(*mlir::moe::cpuHasFeature(without, "avx512f"));
  EXPECT_EQ(mlir::moe::requiredCpuFeatures(*haswellLike),
            "+sse4.2,+avx,+avx2,+fma,+f16c");
#else
  GTEST_SKIP() << "x86-specific";
#endif
}
} // namespace
