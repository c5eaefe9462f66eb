//===- CpuTarget.cpp - LLVM dialect to native shared library --------------===//

#include "lib/Target/CPU/CpuTarget.h"
#include "lib/Target/ExternalTool.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Analysis/CGSCCPassManager.h"
#include "llvm/Analysis/LoopAnalysisManager.h"
#include "llvm/Analysis/TargetLibraryInfo.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/PassManager.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/OptimizationLevel.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

#include <algorithm>
#include <memory>
#include <optional>

// Where the LLVM this was built against keeps its tools and libraries (set by
// CMake from LLVMConfig); the fallbacks are Debian's layout.
#ifndef MOEC_LLVM_TOOLS_DIR
#define MOEC_LLVM_TOOLS_DIR "/usr/lib/llvm-22/bin"
#endif
#ifndef MOEC_LLVM_LIBRARY_DIR
#define MOEC_LLVM_LIBRARY_DIR "/usr/lib/llvm-22/lib"
#endif

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Registers the host target with LLVM's TargetRegistry. Only the native
/// target: moec compiles for the machine it (or an identical one) runs on, and
/// the Debian dylib has them all anyway.
void initializeNativeTarget() {
  static const bool initialized = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    return true;
  }();
  (void)initialized;
}

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// Host features as "+a,-b,...", sorted so that the same machine always yields
/// the same string (StringMap iterates in hash order), which keeps generated IR
/// and any cache keys stable.
std::string getHostFeatureString() {
  llvm::StringMap<bool> features = llvm::sys::getHostCPUFeatures();
  llvm::SmallVector<std::string> flags;
  for (const auto &feature : features)
    flags.push_back((feature.second ? "+" : "-") + feature.first().str());
  llvm::sort(flags);
  return llvm::join(flags, ",");
}

std::string getHostTriple() {
  return llvm::Triple::normalize(llvm::sys::getDefaultTargetTriple());
}

llvm::Expected<const llvm::Target *> lookupTarget(const llvm::Triple &triple) {
  initializeNativeTarget();
  std::string message;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, message);
  if (!target)
    return makeError("no LLVM target for triple '" + triple.str() +
                     "': " + message);
  return target;
}

std::optional<llvm::CodeGenOptLevel> getCodeGenOptLevel(unsigned optLevel) {
  switch (optLevel) {
  case 0:
    return llvm::CodeGenOptLevel::None;
  case 1:
    return llvm::CodeGenOptLevel::Less;
  case 2:
    return llvm::CodeGenOptLevel::Default;
  case 3:
    return llvm::CodeGenOptLevel::Aggressive;
  default:
    return std::nullopt;
  }
}

llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
createTargetMachine(const CpuTarget &target) {
  std::optional<llvm::CodeGenOptLevel> codeGenLevel =
      getCodeGenOptLevel(target.optLevel);
  if (!codeGenLevel)
    return makeError("optimization level " + llvm::Twine(target.optLevel) +
                     " is out of range (expected 0-3)");
  llvm::Triple triple(target.triple);
  llvm::Expected<const llvm::Target *> llvmTarget = lookupTarget(triple);
  if (!llvmTarget)
    return llvmTarget.takeError();
  // PIC because every object ends up in a shared library.
  std::unique_ptr<llvm::TargetMachine> machine(
      (*llvmTarget)
          ->createTargetMachine(triple, target.cpu, target.features,
                                llvm::TargetOptions(), llvm::Reloc::PIC_,
                                /*CM=*/std::nullopt, *codeGenLevel));
  if (!machine)
    return makeError("cannot create an LLVM target machine for triple '" +
                     target.triple + "', CPU '" + target.cpu + "'");
  return std::move(machine);
}

/// Translates `module` to LLVM IR in `llvmContext`, retargets it to `machine`
/// and runs the default optimization pipeline for `optLevel`.
llvm::Expected<std::unique_ptr<llvm::Module>>
translateAndOptimize(ModuleOp module, llvm::TargetMachine &machine,
                     unsigned optLevel, llvm::LLVMContext &llvmContext) {
  MLIRContext *context = module->getContext();
  // Registering is idempotent, so doing it per call keeps callers from having
  // to know which translations a module needs.
  registerBuiltinDialectTranslation(*context);
  registerLLVMDialectTranslation(*context);
  registerOpenMPDialectTranslation(*context);

  // Translation reports problems as MLIR diagnostics; collect the errors into
  // the returned llvm::Error instead of letting them go to whatever handler the
  // context has.
  std::string diagnostics;
  llvm::raw_string_ostream diagnosticStream(diagnostics);
  std::unique_ptr<llvm::Module> llvmModule;
  {
    ScopedDiagnosticHandler handler(context, [&](Diagnostic &diagnostic) {
      if (diagnostic.getSeverity() != DiagnosticSeverity::Error)
        return failure(); // Let warnings and remarks reach the caller's
                          // handler.
      diagnosticStream << "\n  " << diagnostic.getLocation() << ": "
                       << diagnostic;
      for (const Diagnostic &note : diagnostic.getNotes())
        diagnosticStream << "\n  " << note.getLocation() << ": note: " << note;
      return success();
    });
    // Verification is done below so that its message lands in the error, not on
    // stderr.
    llvmModule = translateModuleToLLVMIR(module, llvmContext, "moec",
                                         /*disableVerification=*/true);
  }
  if (!llvmModule)
    return makeError("cannot translate the module to LLVM IR" +
                     (diagnostics.empty() ? llvm::Twine(" (no diagnostic)")
                                          : llvm::Twine(":") + diagnostics));
  std::string verifierMessage;
  llvm::raw_string_ostream verifierStream(verifierMessage);
  if (llvm::verifyModule(*llvmModule, &verifierStream))
    return makeError("the translated LLVM IR is invalid:\n" + verifierMessage);

  // The target machine decides layout and triple whatever the module carried:
  // lowering to the LLVM dialect assumed the host's 64-bit layout anyway, and
  // code generation must agree with the machine that emits the object.
  llvmModule->setTargetTriple(machine.getTargetTriple());
  llvmModule->setDataLayout(machine.createDataLayout());
  // Per-function CPU and features make the optimized IR self-describing (llc or
  // a later re-optimization without flags sees the same target); functions that
  // already name a CPU keep it.
  for (llvm::Function &function : *llvmModule) {
    if (function.isDeclaration())
      continue;
    if (!function.hasFnAttribute("target-cpu") &&
        !machine.getTargetCPU().empty())
      function.addFnAttr("target-cpu", machine.getTargetCPU());
    if (!function.hasFnAttribute("target-features") &&
        !machine.getTargetFeatureString().empty())
      function.addFnAttr("target-features", machine.getTargetFeatureString());
  }

  // Declared in this order so that they are destroyed module-first, as the
  // proxies between them require.
  llvm::LoopAnalysisManager loopAnalyses;
  llvm::FunctionAnalysisManager functionAnalyses;
  llvm::CGSCCAnalysisManager cgsccAnalyses;
  llvm::ModuleAnalysisManager moduleAnalyses;
  llvm::PipelineTuningOptions tuning;
  // As clang does: both vectorizers from -O2 up. Without the TargetMachine
  // below they would assume a target without vector registers and do nothing
  // useful.
  tuning.LoopVectorization = optLevel >= 2;
  tuning.SLPVectorization = optLevel >= 2;
  llvm::PassBuilder passBuilder(&machine, tuning);
  passBuilder.registerModuleAnalyses(moduleAnalyses);
  passBuilder.registerCGSCCAnalyses(cgsccAnalyses);
  passBuilder.registerFunctionAnalyses(functionAnalyses);
  passBuilder.registerLoopAnalyses(loopAnalyses);
  passBuilder.crossRegisterProxies(loopAnalyses, functionAnalyses,
                                   cgsccAnalyses, moduleAnalyses);
  llvm::ModulePassManager pipeline;
  switch (optLevel) {
  case 0:
    pipeline = passBuilder.buildO0DefaultPipeline(llvm::OptimizationLevel::O0);
    break;
  case 1:
    pipeline =
        passBuilder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O1);
    break;
  case 2:
    pipeline =
        passBuilder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O2);
    break;
  default:
    pipeline =
        passBuilder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
    break;
  }
  pipeline.run(*llvmModule, moduleAnalyses);
  return std::move(llvmModule);
}

/// Runs instruction selection and the object writer for `module` into memory.
llvm::Expected<llvm::SmallString<0>> emitObject(llvm::Module &module,
                                                llvm::TargetMachine &machine) {
  llvm::SmallString<0> object;
  llvm::raw_svector_ostream stream(object);
  llvm::legacy::PassManager codeGen;
  // Library calls the back end may form (memcpy, memset, ...) follow the
  // triple's C library.
  codeGen.add(new llvm::TargetLibraryInfoWrapperPass(
      llvm::TargetLibraryInfoImpl(module.getTargetTriple())));
  if (machine.addPassesToEmitFile(codeGen, stream, /*DwoOut=*/nullptr,
                                  llvm::CodeGenFileType::ObjectFile))
    return makeError("the LLVM target for '" + module.getTargetTriple().str() +
                     "' cannot emit object files");
  codeGen.run(module);
  return std::move(object);
}

/// ld.lld of the LLVM moec was built with first: the unversioned
/// /usr/bin/ld.lld on Debian 12 belongs to the distribution's default LLVM (lld
/// 14), which may not read newer objects.
llvm::Expected<std::string> findLinker() {
  llvm::SmallString<128> bundled(MOEC_LLVM_TOOLS_DIR);
  llvm::sys::path::append(bundled, "ld.lld");
  if (llvm::sys::fs::can_execute(bundled))
    return bundled.str().str();
  for (llvm::StringRef name : {"ld.lld-22", "ld.lld"})
    if (llvm::ErrorOr<std::string> found = llvm::sys::findProgramByName(name))
      return *found;
  return makeError("no ELF linker found: looked for " + bundled +
                   ", then for ld.lld-22 and ld.lld on PATH (install lld-22)");
}

/// Folders holding libc, libm and libgcc_s. ld.lld is run without a compiler
/// driver, so it knows no default search path; these are the ones glibc
/// distributions use (Debian's multiarch folder first).
llvm::SmallVector<std::string> getSystemLibraryDirs() {
  llvm::Triple host(getHostTriple());
  std::string multiarch = (host.getArchName() + "-" + host.getOSName() + "-" +
                           host.getEnvironmentName())
                              .str();
  llvm::SmallVector<std::string> dirs;
  for (std::string dir : {"/lib/" + multiarch, "/usr/lib/" + multiarch,
                          std::string("/lib64"), std::string("/usr/lib64"),
                          std::string("/lib"), std::string("/usr/lib")})
    if (llvm::sys::fs::is_directory(dir))
      dirs.push_back(dir);
  return dirs;
}

/// A fresh file name in the folder of `path` (so that renaming onto `path`
/// stays within one file system and is atomic); the file is created to reserve
/// the name.
llvm::Expected<std::string> createSiblingTempFile(llvm::StringRef path) {
  llvm::SmallString<256> model(path);
  model += ".tmp-%%%%%%%%";
  int fd;
  llvm::SmallString<256> tempPath;
  if (std::error_code error =
          llvm::sys::fs::createUniqueFile(model, fd, tempPath))
    return makeError("cannot create a temporary file next to '" + path +
                     "': " + error.message());
  llvm::sys::Process::SafelyCloseFileDescriptor(fd);
  return tempPath.str().str();
}

} // namespace

CpuTarget mlir::moe::getHostCpuTarget() {
  CpuTarget target;
  target.triple = getHostTriple();
  target.cpu = llvm::sys::getHostCPUName().str();
  target.features = getHostFeatureString();
  return target;
}

llvm::Expected<CpuTarget> mlir::moe::parseCpuTarget(llvm::StringRef spec) {
  auto [kind, cpu] = spec.split(':');
  if (kind != "cpu")
    return makeError(
        "unknown target '" + kind + "' in '" + spec +
        "': expected 'cpu', 'cpu:native' or 'cpu:<LLVM CPU name>'");
  bool hasCpu = spec.size() > kind.size();
  if (!hasCpu || cpu == "native")
    return getHostCpuTarget();
  if (cpu.empty())
    return makeError("missing CPU name after 'cpu:' in '" + spec +
                     "' (e.g. cpu:native, cpu:x86-64-v3, cpu:znver4)");

  CpuTarget target;
  target.triple = getHostTriple();
  target.cpu = cpu.str();
  // Features stay empty: a named CPU brings its own, and mixing in the host's
  // would make the result depend on the build machine, defeating the point of
  // naming a CPU.
  llvm::Triple triple(target.triple);
  llvm::Expected<const llvm::Target *> llvmTarget = lookupTarget(triple);
  if (!llvmTarget)
    return llvmTarget.takeError();
  // Created for the default CPU: creating it for an unknown name would print a
  // warning to stderr before we get to say anything.
  std::unique_ptr<llvm::MCSubtargetInfo> subtarget(
      (*llvmTarget)->createMCSubtargetInfo(triple, "", ""));
  if (!subtarget || !subtarget->isCPUStringValid(cpu))
    return makeError("unknown CPU '" + cpu + "' in '" + spec +
                     "' for target '" + target.triple +
                     "' (e.g. native, x86-64, x86-64-v3, znver4)");
  return target;
}

/// Creates the target machine, translates and optimizes `module` for it, and
/// hands both to `use`: what every output of this file starts from.
static llvm::Error withOptimizedModule(
    ModuleOp module, const CpuTarget &target,
    llvm::function_ref<llvm::Error(llvm::Module &, llvm::TargetMachine &)>
        use) {
  llvm::Expected<std::unique_ptr<llvm::TargetMachine>> machine =
      createTargetMachine(target);
  if (!machine)
    return machine.takeError();
  llvm::LLVMContext llvmContext;
  llvm::Expected<std::unique_ptr<llvm::Module>> llvmModule =
      translateAndOptimize(module, **machine, target.optLevel, llvmContext);
  if (!llvmModule)
    return llvmModule.takeError();
  return use(**llvmModule, **machine);
}

llvm::Expected<std::string>
mlir::moe::emitOptimizedLLVMIR(ModuleOp module, const CpuTarget &target) {
  std::string text;
  if (llvm::Error error = withOptimizedModule(
          module, target,
          [&](llvm::Module &llvmModule, llvm::TargetMachine &) -> llvm::Error {
            llvm::raw_string_ostream stream(text);
            llvmModule.print(stream, /*AAW=*/nullptr);
            return llvm::Error::success();
          }))
    return std::move(error);
  return text;
}

llvm::Error mlir::moe::emitObjectFile(ModuleOp module, const CpuTarget &target,
                                      llvm::StringRef objectPath) {
  llvm::SmallString<0> objectBytes;
  if (llvm::Error error =
          withOptimizedModule(module, target,
                              [&](llvm::Module &llvmModule,
                                  llvm::TargetMachine &machine) -> llvm::Error {
                                llvm::Expected<llvm::SmallString<0>> object =
                                    emitObject(llvmModule, machine);
                                if (!object)
                                  return object.takeError();
                                objectBytes = std::move(*object);
                                return llvm::Error::success();
                              }))
    return error;
  // writeToOutput goes through a temporary file and a rename, so a reader never
  // sees half an object and a failed write leaves nothing behind.
  if (llvm::Error error =
          llvm::writeToOutput(objectPath, [&](llvm::raw_ostream &os) {
            os << objectBytes;
            return llvm::Error::success();
          }))
    return makeError("cannot write '" + objectPath +
                     "': " + llvm::toString(std::move(error)));
  return llvm::Error::success();
}

llvm::Error mlir::moe::linkSharedLibrary(llvm::ArrayRef<std::string> objects,
                                         llvm::StringRef outPath,
                                         bool withOpenMP) {
  if (objects.empty())
    return makeError("no object files to link into '" + outPath + "'");
  llvm::Expected<std::string> linker = findLinker();
  if (!linker)
    return linker.takeError();

  std::string ompLibrary;
  if (withOpenMP) {
    llvm::SmallString<128> path(MOEC_LLVM_LIBRARY_DIR);
    llvm::sys::path::append(path, "libomp.so");
    if (!llvm::sys::fs::exists(path))
      return makeError("OpenMP runtime not found at " + path +
                       " (install libomp-22-dev)");
    ompLibrary = path.str().str();
  }

  llvm::Expected<std::string> tempPath = createSiblingTempFile(outPath);
  if (!tempPath)
    return tempPath.takeError();
  std::string soname = llvm::sys::path::filename(outPath).str();
  llvm::SmallVector<std::string> libraryDirs = getSystemLibraryDirs();
  llvm::SmallVector<std::string> args = {
      *linker, "-shared", "-o", *tempPath, "-soname", soname,
      // A symbol nothing provides fails here, with its name, rather than at
      // dlopen time or, with lazy binding, in the middle of a run.
      "--no-undefined",
      // Resolve everything at load: the libraries make few calls, so lazy
      // binding saves nothing, and a read-only GOT after relocation is the
      // safer default.
      "-z", "now", "-z", "relro",
      // Generated code never needs an executable stack; without the note some
      // loaders would make the whole process's stack executable.
      "-z", "noexecstack",
      // Lets unwinders (profilers, debuggers, backtraces through generated
      // frames) find the frame tables quickly, as the compiler drivers do.
      "--eh-frame-hdr"};
  args.append(objects.begin(), objects.end());
  for (const std::string &dir : libraryDirs)
    args.push_back("-L" + dir);
  // Only what the code actually uses becomes a DT_NEEDED entry.
  args.push_back("--as-needed");
  if (withOpenMP) {
    // By path, not -lomp: the system folder may hold another vendor's
    // libomp.so. The rpath lets dlopen find libomp.so.5 even where LLVM's
    // folder is not on the loader's path.
    args.push_back(ompLibrary);
    args.push_back("-rpath");
    args.push_back(MOEC_LLVM_LIBRARY_DIR);
  }
  // libm for expf & co., libc for malloc/free, libgcc_s for the compiler
  // support routines LLVM may call (f16 conversions without F16C, 128-bit
  // division, powi).
  for (llvm::StringRef library : {"-lm", "-lc", "-l:libgcc_s.so.1"})
    args.push_back(library.str());
  args.push_back("--no-as-needed");

  // The linker's stdout and stderr become the error message.
  llvm::Expected<ToolRun> run = runTool(*linker, args);
  if (!run) {
    llvm::sys::fs::remove(*tempPath);
    return run.takeError();
  }
  const std::string &output = run->output;
  if (!run->succeeded()) {
    llvm::sys::fs::remove(*tempPath);
    std::string message = "linking '" + outPath.str() + "' failed";
    if (!run->started)
      message += ": cannot run " + *linker;
    else
      message += " (" + llvm::sys::path::filename(*linker).str() +
                 " exited with " + std::to_string(run->status) + ")";
    if (!run->message.empty())
      message += ": " + run->message;
    if (!output.empty())
      message += "\n" + output;
    message += "\ncommand: " + llvm::join(args, " ");
    return makeError(message);
  }
  if (std::error_code error = llvm::sys::fs::rename(*tempPath, outPath)) {
    llvm::sys::fs::remove(*tempPath);
    return makeError("cannot move the linked library to '" + outPath +
                     "': " + error.message());
  }
  return llvm::Error::success();
}

llvm::Expected<bool> mlir::moe::cpuHasFeature(const CpuTarget &target,
                                              llvm::StringRef feature) {
  // Explicit features win; otherwise the CPU name's defaults decide.
  llvm::SmallVector<llvm::StringRef> explicitFeatures;
  llvm::StringRef(target.features).split(explicitFeatures, ',', -1, false);
  for (llvm::StringRef entry : llvm::reverse(explicitFeatures))
    if (entry.drop_front() == feature)
      return entry.front() == '+';
  llvm::Triple triple(target.triple);
  llvm::Expected<const llvm::Target *> llvmTarget = lookupTarget(triple);
  if (!llvmTarget)
    return llvmTarget.takeError();
  std::unique_ptr<llvm::MCSubtargetInfo> info(
      (*llvmTarget)
          ->createMCSubtargetInfo(triple, target.cpu, target.features));
  if (!info)
    return llvm::createStringError("cannot describe CPU '%s'",
                                   target.cpu.c_str());
  return info->checkFeatures(("+" + feature).str());
}

std::string mlir::moe::requiredCpuFeatures(const CpuTarget &target) {
  // The instruction-set extensions generated code may use, as "+name,..." for
  // the runtime to check before it runs the library.
  static const char *const kChecked[] = {
      "sse4.2",  "avx",      "avx2",     "fma",      "f16c",
      "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512bf16"};
  std::string result;
  for (const char *feature : kChecked) {
    llvm::Expected<bool> present = cpuHasFeature(target, feature);
    if (!present) {
      llvm::consumeError(present.takeError());
      continue;
    }
    if (*present)
      result += (result.empty() ? "+" : ",+") + std::string(feature);
  }
  return result;
}
