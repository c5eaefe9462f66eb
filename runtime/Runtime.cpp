//===- Runtime.cpp - the C API of moe/runtime.h ---------------------------===//
//
// Opens a folder written by moe-compile (runtime/FORMAT.md) and runs its
// layers, on the CPU or (for a cuda folder) through CudaBackend. Built as
// libmoe_runtime.so, which links neither LLVM nor MLIR nor CUDA: the
// safetensors rules come from lib/Weights/SafetensorsFormat.cpp, compiled into
// this library, and the CUDA driver is loaded at run time (CudaDriver).
//
// Conventions:
// - No exception crosses the C boundary: every API function runs its body under
// guarded(),
//   which turns std::bad_alloc into MOE_ERROR_OUT_OF_MEMORY.
// - Every failure sets the calling thread's message (moe_last_error) naming the
// file, layer
//   or argument at fault. Successes leave the message alone, as errno does.
// - A CPU model is immutable once opened, so moe_layer_run touches no shared
// mutable state. A CUDA model's device state is serialized by its own mutex.
//
//===----------------------------------------------------------------------===//

// The API functions are the only symbols the library exports (the rest of it is
// built with -fvisibility=hidden, and exports.map hides whatever else the
// linker would export). It must come before every other header that includes
// moe/runtime.h, so that this is the declaration the include guard keeps.
#pragma GCC visibility push(default)
#include "moe/runtime.h"
#pragma GCC visibility pop

#include "lib/Support/DTypeTable.h"
#include "lib/Weights/SafetensorsFormat.h"
#include "runtime/CudaBackend.h"
#include "runtime/HostCpu.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using nlohmann::json;

namespace {

/// The signature of every layer entry point and of its workspace query
/// (FORMAT.md).
using EntryFn = void (*)(const float *hidden, int64_t tokens, float *output,
                         int32_t *topk_ids, float *topk_weights,
                         const uint8_t *weights, uint8_t *workspace);
using WorkspaceFn = int64_t (*)(int64_t tokens);
constexpr const char *kWorkspaceSuffix = "_workspace_bytes";
constexpr const char *kLaunchesSuffix = "_launches";
/// Optional: only layers whose kernels use TMA tensor maps export it.
constexpr const char *kTensorMapsSuffix = "_tensor_maps";

/// The calling thread's workspace: it only grows, so a thread that runs layers
/// repeatedly reuses the same pages instead of faulting in fresh ones per call.
uint8_t *threadWorkspace(size_t bytes) {
  thread_local std::vector<uint64_t> workspace;
  size_t words = (bytes + sizeof(uint64_t) - 1) / sizeof(uint64_t);
  if (workspace.size() < words)
    workspace.resize(words);
  return reinterpret_cast<uint8_t *>(workspace.data());
}

constexpr const char *kManifestName = "manifest.json";
constexpr const char *kHashSymbol = "moe_weights_hash";
constexpr const char *kHashMetadataKey = "moec_weights_hash";
/// manifest.json is small; this only keeps a hostile one from exhausting
/// memory.
constexpr uint64_t kMaxManifestBytes = 16 << 20;

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

thread_local std::string lastError;
/// Used instead of lastError when even the message could not be allocated.
thread_local const char *lastErrorFallback = nullptr;

/// Records `message` as the calling thread's last error and returns `status`.
moe_status fail(moe_status status, std::string message) {
  lastError = std::move(message);
  lastErrorFallback = nullptr;
  return status;
}

template <typename Body>
moe_status guarded(const char *function, Body &&body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc &) {
    try {
      return fail(MOE_ERROR_OUT_OF_MEMORY,
                  std::string(function) + ": out of memory");
    } catch (...) {
      lastErrorFallback = "out of memory";
      return MOE_ERROR_OUT_OF_MEMORY;
    }
  } catch (...) {
    // Nothing below throws anything but bad_alloc (JSON is parsed without
    // exceptions and every value is type-checked before use); this is a last
    // line of defence.
    try {
      return fail(MOE_ERROR_FORMAT,
                  std::string(function) + ": unexpected internal error");
    } catch (...) {
      lastErrorFallback = "unexpected internal error";
      return MOE_ERROR_FORMAT;
    }
  }
}

/// strerror_r exists in a GNU and an XSI flavour; these pick the message from
/// either.
[[maybe_unused]] const char *strerrorResult(int rc, const char *buffer) {
  return rc == 0 ? buffer : "unknown error";
}
[[maybe_unused]] const char *strerrorResult(const char *message, const char *) {
  return message;
}

std::string errnoMessage(int error) {
  char buffer[256] = {0};
  return strerrorResult(strerror_r(error, buffer, sizeof(buffer)), buffer);
}

std::string quote(const std::string &text) { return "'" + text + "'"; }

/// `folder/name`, without doubling a trailing slash.
std::string joinPath(const std::string &folder, const std::string &name) {
  if (!folder.empty() && folder.back() == '/')
    return folder + name;
  return folder + "/" + name;
}

/// A file descriptor closed when it goes out of scope.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0)
      ::close(fd);
  }
};

/// Opens `path` for reading and checks that it is a regular file (a FIFO or
/// device would block or never end). On failure sets the error and returns a
/// status.
moe_status openRegularFile(const std::string &path, FileDescriptor &file,
                           uint64_t &size) {
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (file.fd < 0) {
    int error = errno;
    return fail(MOE_ERROR_IO, path + ": cannot open: " + errnoMessage(error));
  }
  struct stat status;
  if (::fstat(file.fd, &status) != 0) {
    int error = errno;
    return fail(MOE_ERROR_IO, path + ": cannot stat: " + errnoMessage(error));
  }
  if (!S_ISREG(status.st_mode))
    return fail(MOE_ERROR_IO, path + ": not a regular file");
  size = static_cast<uint64_t>(status.st_size);
  return MOE_OK;
}

//===----------------------------------------------------------------------===//
// manifest.json
//===----------------------------------------------------------------------===//

struct LayerEntry {
  moe_layer_info info;
  std::string entry;
  std::vector<std::string> cudaKernels; ///< cuda targets only
};

struct Manifest {
  std::string target;   ///< "cpu" or "cuda"
  std::string cudaArch; ///< cuda targets only: "sm_80", "sm_90a", ...
  std::string library;
  std::string weights;
  std::string weightsHash;
  std::vector<LayerEntry> layers;
};

/// "sm_" and two or three digits (major, then one minor digit), optionally
/// followed by "a" (architecture-specific features, e.g. sm_90a).
bool isCudaArch(const std::string &text) {
  if (text.compare(0, 3, "sm_") != 0)
    return false;
  size_t digits = 0;
  while (3 + digits < text.size() && text[3 + digits] >= '0' &&
         text[3 + digits] <= '9')
    ++digits;
  std::string rest = text.substr(3 + digits);
  return digits >= 2 && digits <= 3 && text[3] != '0' &&
         (rest.empty() || rest == "a");
}

bool isLowercaseHex(const std::string &text) {
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

bool isCIdentifier(const std::string &text) {
  if (text.empty() || (text[0] >= '0' && text[0] <= '9'))
    return false;
  for (char c : text)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_'))
      return false;
  return true;
}

/// Checks manifest.json (already parsed into `root`) field by field. `path`
/// names it in messages.
class ManifestChecker {
public:
  explicit ManifestChecker(const std::string &path) : path(path) {}

  moe_status check(const json &root, Manifest &manifest) {
    if (!root.is_object())
      return error("not a JSON object");

    // Format and version first: a newer format may differ in everything else.
    const std::string *format = nullptr;
    if (moe_status status = getString(root, "", "format", true, format))
      return status;
    if (*format != "moec-compiled")
      return error("\"format\" is " + quote(*format) +
                   ", expected 'moec-compiled'");
    auto version = root.find("format_version");
    if (version == root.end())
      return error("missing \"format_version\"");
    std::optional<int64_t> versionNumber = moe::getJSONInt64(*version);
    if (!versionNumber)
      return error("\"format_version\" is not an integer");
    if (*versionNumber != 1)
      return fail(MOE_ERROR_UNSUPPORTED, path + ": \"format_version\" is " +
                                             std::to_string(*versionNumber) +
                                             "; this runtime reads version 1");

    const std::string *target = nullptr;
    if (moe_status status = getString(root, "", "target", true, target))
      return status;
    if (*target != "cpu" && *target != "cuda")
      return fail(MOE_ERROR_UNSUPPORTED, path + ": target " + quote(*target) +
                                             " is not supported; this runtime "
                                             "runs 'cpu' and 'cuda'");
    manifest.target = *target;
    cuda = *target == "cuda";
    if (cuda) {
      const std::string *arch = nullptr;
      if (moe_status status = getString(root, "", "cuda_arch", true, arch))
        return status;
      if (!isCudaArch(*arch))
        return error("\"cuda_arch\" is " + quote(*arch) +
                     ", not a CUDA architecture such as 'sm_80' or 'sm_90a'");
      manifest.cudaArch = *arch;
    }

    // Descriptive fields: optional, but typed when present.
    for (const char *name : {"compiler", "model_type", "cpu", "cpu_features"}) {
      const std::string *value = nullptr;
      if (moe_status status = getString(root, "", name, false, value))
        return status;
    }
    // The files. header, ir and kernels (the PTX folder of a cuda target) are
    // for people, but must still be plain names.
    for (const char *name : {"library", "weights", "header", "ir", "kernels"}) {
      bool required = std::strcmp(name, "library") == 0 ||
                      std::strcmp(name, "weights") == 0;
      const std::string *value = nullptr;
      if (moe_status status = getString(root, "", name, required, value))
        return status;
      if (value && !moe::isPlainFileName(*value))
        return error("\"" + std::string(name) + "\" is " + quote(*value) +
                     ", which is not a plain file name inside the folder");
      if (value && std::strcmp(name, "library") == 0)
        manifest.library = *value;
      if (value && std::strcmp(name, "weights") == 0)
        manifest.weights = *value;
    }

    const std::string *hash = nullptr;
    if (moe_status status = getString(root, "", "weights_hash", true, hash))
      return status;
    if (hash->size() != 64 || !isLowercaseHex(*hash))
      return error("\"weights_hash\" is " + quote(*hash) +
                   ", not a lowercase hex SHA-256 (64 digits)");
    manifest.weightsHash = *hash;

    auto layers = root.find("layers");
    if (layers == root.end())
      return error("missing \"layers\"");
    if (!layers->is_array())
      return error("\"layers\" is not an array");
    std::set<int32_t> seen;
    for (size_t i = 0; i < layers->size(); ++i) {
      LayerEntry layer;
      if (moe_status status = checkLayer(
              (*layers)[i], "layers[" + std::to_string(i) + "]", layer))
        return status;
      if (!seen.insert(layer.info.layer).second)
        return error("layers[" + std::to_string(i) + "]: layer " +
                     std::to_string(layer.info.layer) + " appears twice");
      manifest.layers.push_back(std::move(layer));
    }
    return MOE_OK;
  }

private:
  moe_status error(const std::string &message) {
    return fail(MOE_ERROR_FORMAT, path + ": " + message);
  }

  static std::string fieldName(const std::string &where, const char *name) {
    return (where.empty() ? "" : where + ": ") + "\"" + name + "\"";
  }

  /// `object[name]` as a string; nullptr (and MOE_OK) if absent and not
  /// `required`.
  moe_status getString(const json &object, const std::string &where,
                       const char *name, bool required,
                       const std::string *&value) {
    value = nullptr;
    auto it = object.find(name);
    if (it == object.end())
      return required ? error((where.empty() ? "" : where + ": ") +
                              "missing \"" + name + "\"")
                      : MOE_OK;
    value = it->get_ptr<const std::string *>();
    if (!value)
      return error(fieldName(where, name) + " is not a string");
    return MOE_OK;
  }

  /// `object[name]` as an integer in [min, max].
  moe_status getInteger(const json &object, const std::string &where,
                        const char *name, int64_t min, int64_t max,
                        int64_t &value) {
    auto it = object.find(name);
    if (it == object.end())
      return error(where + ": missing \"" + name + "\"");
    std::optional<int64_t> number = moe::getJSONInt64(*it);
    if (!number)
      return error(fieldName(where, name) + " is not an integer");
    if (*number < min || *number > max)
      return error(fieldName(where, name) + " is " + std::to_string(*number) +
                   "; it must be between " + std::to_string(min) + " and " +
                   std::to_string(max));
    value = *number;
    return MOE_OK;
  }

  moe_status checkLayer(const json &entry, const std::string &where,
                        LayerEntry &layer) {
    if (!entry.is_object())
      return error(where + ": not a JSON object");
    constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
    int64_t index = 0, hidden = 0, experts = 0, topK = 0;
    if (moe_status status =
            getInteger(entry, where, "layer", 0, kInt32Max, index))
      return status;
    std::string named = where + " (layer " + std::to_string(index) + ")";
    const std::string *symbol = nullptr;
    if (moe_status status = getString(entry, named, "entry", true, symbol))
      return status;
    if (!isCIdentifier(*symbol))
      return error(named + ": \"entry\" is " + quote(*symbol) +
                   ", not a C identifier");
    if (moe_status status =
            getInteger(entry, named, "hidden_size", 1,
                       std::numeric_limits<int64_t>::max(), hidden))
      return status;
    if (moe_status status =
            getInteger(entry, named, "num_experts", 1, kInt32Max, experts))
      return status;
    if (moe_status status = getInteger(entry, named, "top_k", 1, experts, topK))
      return status;
    layer.info.layer = static_cast<int32_t>(index);
    layer.info.hidden_size = hidden;
    layer.info.num_experts = static_cast<int32_t>(experts);
    layer.info.top_k = static_cast<int32_t>(topK);
    layer.entry = *symbol;
    if (cuda)
      return checkCudaKernels(entry, named, layer);
    return MOE_OK;
  }

  /// A cuda layer's "cuda_kernels": the names of its kernels, in the order
  /// launch records index them.
  moe_status checkCudaKernels(const json &entry, const std::string &named,
                              LayerEntry &layer) {
    auto kernels = entry.find("cuda_kernels");
    if (kernels == entry.end())
      return error(named + ": missing \"cuda_kernels\" (a cuda target names "
                           "every kernel of a layer)");
    if (!kernels->is_array() || kernels->empty())
      return error(named + ": \"cuda_kernels\" is not a non-empty array");
    for (size_t i = 0; i < kernels->size(); ++i) {
      const std::string *name = (*kernels)[i].get_ptr<const std::string *>();
      if (!name || !isCIdentifier(*name))
        return error(named + ": \"cuda_kernels\"[" + std::to_string(i) +
                     "] is " + (*kernels)[i].dump() +
                     ", not a kernel name (a C identifier)");
      layer.cudaKernels.push_back(*name);
    }
    return MOE_OK;
  }

  const std::string &path;
  bool cuda = false; ///< the target is "cuda": layers name their kernels
};

/// Reads and checks `folder`/manifest.json.
moe_status readManifest(const std::string &folder, Manifest &manifest,
                        std::string &cpuFeatures) {
  std::string path = joinPath(folder, kManifestName);
  FileDescriptor file;
  uint64_t size = 0;
  if (moe_status status = openRegularFile(path, file, size))
    return status;
  if (size > kMaxManifestBytes)
    return fail(MOE_ERROR_FORMAT, path + ": " + std::to_string(size) +
                                      " bytes exceed the limit of " +
                                      std::to_string(kMaxManifestBytes));
  std::string text(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t got = ::read(file.fd, &text[done], text.size() - done);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      int error = errno;
      return fail(MOE_ERROR_IO, path + ": cannot read: " + errnoMessage(error));
    }
    if (got == 0)
      break; // shrank while we read; parse what there is
    done += static_cast<size_t>(got);
  }
  text.resize(done);

  json root;
  std::string syntaxError;
  std::optional<moe::JSONDuplicateKey> duplicate;
  if (!moe::parseStrictJSON(text, root, syntaxError, duplicate))
    return fail(MOE_ERROR_FORMAT, path + ": not valid JSON: " + syntaxError);
  if (duplicate) {
    std::string where;
    for (const std::string &key : duplicate->path)
      where += "\"" + key + "\": ";
    return fail(MOE_ERROR_FORMAT,
                path + ": " + where + "duplicate key '" + duplicate->key + "'");
  }
  if (moe_status status = ManifestChecker(path).check(root, manifest))
    return status;
  auto features = root.find("cpu_features");
  if (features != root.end())
    cpuFeatures =
        *features->get_ptr<const std::string *>(); // checked to be a string
  return MOE_OK;
}

} // namespace

//===----------------------------------------------------------------------===//
// The model
//===----------------------------------------------------------------------===//

namespace {

/// Where a model runs, as moe_model_open_device's `device` names it.
struct Device {
  enum Kind { Default, Cpu, Cuda } kind = Default;
  int ordinal = 0; ///< cuda:N

  /// "cpu" or "cuda:N" (N decimal digits only, within int); null is Default.
  bool parse(const char *text) {
    if (!text) {
      kind = Default;
      return true;
    }
    std::string name = text;
    if (name == "cpu") {
      kind = Cpu;
      return true;
    }
    if (name.compare(0, 5, "cuda:") != 0 || name.size() == 5 ||
        name.size() > 5 + 9) // nine digits always fit in an int
      return false;
    int value = 0;
    for (size_t i = 5; i < name.size(); ++i) {
      if (name[i] < '0' || name[i] > '9')
        return false;
      value = value * 10 + (name[i] - '0');
    }
    kind = Cuda;
    ordinal = value;
    return true;
  }

  std::string name() const {
    return kind == Cuda ? "cuda:" + std::to_string(ordinal) : "cpu";
  }
};

} // namespace

struct moe_model {
  struct Layer {
    moe_layer_info info;
    std::string entry;
    EntryFn function = nullptr; ///< cpu targets only
    WorkspaceFn workspaceBytes = nullptr;
    std::vector<std::string> cudaKernels; ///< cuda targets only
  };

  std::string folder;
  std::vector<Layer> layers;
  /// The weights file, mapped read-only, and the start and size of its data
  /// buffer.
  void *mapping = nullptr;
  size_t mappingSize = 0;
  const uint8_t *weights = nullptr;
  size_t weightsSize = 0;
  void *library = nullptr;
  /// The device side of a model opened on cuda:N; null on the cpu.
  std::unique_ptr<moe::runtime::CudaModel> cuda;

  moe_model() = default;
  moe_model(const moe_model &) = delete;
  moe_model &operator=(const moe_model &) = delete;
  ~moe_model() {
    // The device side first: it was built from the library's symbols.
    cuda.reset();
    if (library)
      ::dlclose(library);
    if (mapping)
      ::munmap(mapping, mappingSize);
  }

  const Layer *findLayer(int32_t index) const {
    for (const Layer &layer : layers)
      if (layer.info.layer == index)
        return &layer;
    return nullptr;
  }

  moe_status open(const std::string &path, Device device);

private:
  moe_status mapWeights(const std::string &path,
                        const std::string &manifestHash);
  moe_status loadLibrary(const std::string &path,
                         const std::string &manifestHash, bool forCuda);
  moe_status openCuda(const std::string &libraryPath, const Manifest &manifest,
                      int ordinal);
};

moe_status moe_model::open(const std::string &path, Device device) {
  folder = path;
  struct stat status;
  if (::stat(folder.c_str(), &status) != 0) {
    int error = errno;
    return fail(MOE_ERROR_IO, folder + ": cannot open: " + errnoMessage(error));
  }
  if (!S_ISDIR(status.st_mode))
    return fail(MOE_ERROR_IO, folder + ": not a directory");

  Manifest manifest;
  std::string cpuFeatures;
  if (moe_status status = readManifest(folder, manifest, cpuFeatures))
    return status;
  // A folder runs on its own target's kind of device only: the library of a
  // cpu folder holds CPU code, that of a cuda folder launch tables.
  bool cudaFolder = manifest.target == "cuda";
  if (device.kind == Device::Default)
    device.kind = cudaFolder ? Device::Cuda : Device::Cpu;
  if (cudaFolder != (device.kind == Device::Cuda))
    return fail(MOE_ERROR_UNSUPPORTED,
                folder + ": compiled for target '" + manifest.target + "'" +
                    (cudaFolder ? " (" + manifest.cudaArch + ")" : "") +
                    ", which cannot run on device '" + device.name() + "'" +
                    (cudaFolder ? "; open it on 'cuda:N'"
                                : "; compile it with --target cuda to run on "
                                  "a GPU"));
  // A cuda folder's host library is compiled for generic x86-64 and lists no
  // features; if it lists some, they are checked as for a cpu folder.
  std::string missing = moe::runtime::findMissingCpuFeature(cpuFeatures);
  if (!missing.empty())
    return fail(MOE_ERROR_UNSUPPORTED, joinPath(folder, kManifestName) +
                                           ": the library needs CPU feature '" +
                                           missing +
                                           "', which this machine lacks");
  for (LayerEntry &entry : manifest.layers)
    layers.push_back(Layer{entry.info, std::move(entry.entry), nullptr, nullptr,
                           std::move(entry.cudaKernels)});

  if (moe_status status =
          mapWeights(joinPath(folder, manifest.weights), manifest.weightsHash))
    return status;
  std::string libraryPath = joinPath(folder, manifest.library);
  if (moe_status status =
          loadLibrary(libraryPath, manifest.weightsHash, cudaFolder))
    return status;
  if (cudaFolder)
    return openCuda(libraryPath, manifest, device.ordinal);
  return MOE_OK;
}

moe_status moe_model::mapWeights(const std::string &path,
                                 const std::string &manifestHash) {
  FileDescriptor file;
  uint64_t size = 0;
  if (moe_status status = openRegularFile(path, file, size))
    return status;
  if (size > std::numeric_limits<size_t>::max())
    return fail(MOE_ERROR_FORMAT, path + ": too large to map");
  if (size > 0) {
    void *address = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ,
                           MAP_PRIVATE, file.fd, 0);
    if (address == MAP_FAILED) {
      int error = errno;
      return fail(error == ENOMEM ? MOE_ERROR_OUT_OF_MEMORY : MOE_ERROR_IO,
                  path + ": cannot map: " + errnoMessage(error));
    }
    mapping = address;
    mappingSize = static_cast<size_t>(size);
  }

  moe::SafetensorsHeader header;
  std::string error;
  if (!moe::parseSafetensorsHeader(static_cast<const uint8_t *>(mapping),
                                   mappingSize, path, header, error))
    return fail(MOE_ERROR_FORMAT, error);
  weights = static_cast<const uint8_t *>(mapping) + header.dataOffset;
  weightsSize = mappingSize - static_cast<size_t>(header.dataOffset);

  auto hash = header.metadata.find(kHashMetadataKey);
  if (hash == header.metadata.end())
    return fail(MOE_ERROR_FORMAT,
                path + ": __metadata__ has no \"" + kHashMetadataKey + "\"");
  if (hash->second != manifestHash)
    return fail(MOE_ERROR_MISMATCH,
                folder + ": the weights hash differs between manifest.json (" +
                    manifestHash + ") and " + path + " (__metadata__." +
                    kHashMetadataKey + " = " + hash->second + ")");
  return MOE_OK;
}

moe_status moe_model::loadLibrary(const std::string &path,
                                  const std::string &manifestHash,
                                  bool forCuda) {
  // A missing file is an I/O error; one dlopen rejects is a malformed library.
  struct stat status;
  if (::stat(path.c_str(), &status) != 0) {
    int error = errno;
    return fail(MOE_ERROR_IO, path + ": cannot open: " + errnoMessage(error));
  }
  // `path` always holds a '/', so dlopen takes it as a path and searches
  // nowhere else.
  ::dlerror();
  library = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char *why = ::dlerror();
    return fail(MOE_ERROR_FORMAT, path + ": cannot load the library: " +
                                      (why ? why : "unknown error"));
  }

  auto lookup = [&](const std::string &symbol, void *&address) {
    ::dlerror();
    address = ::dlsym(library, symbol.c_str());
    const char *why = ::dlerror();
    if (!address || why)
      return fail(MOE_ERROR_FORMAT,
                  path + ": no symbol '" + symbol + "'" +
                      (why ? std::string(": ") + why : std::string()));
    return MOE_OK;
  };

  void *hashAddress = nullptr;
  if (moe_status status = lookup(kHashSymbol, hashAddress))
    return status;
  // A hash is 64 digits; reading a little further finds the terminator or shows
  // that the symbol is not the string it should be.
  const char *hashText = static_cast<const char *>(hashAddress);
  std::string libraryHash(hashText, ::strnlen(hashText, 128));
  if (libraryHash != manifestHash)
    return fail(MOE_ERROR_MISMATCH,
                folder + ": the weights hash differs between manifest.json (" +
                    manifestHash + ") and " + path + " (" + kHashSymbol +
                    " = " + libraryHash +
                    "): library and weights were not compiled together");

  for (Layer &layer : layers) {
    void *address = nullptr;
    // A cuda folder's layers have no host entry point: the runtime launches
    // their kernels (openCuda).
    if (!forCuda) {
      if (moe_status status = lookup(layer.entry, address))
        return fail(status, lastError + " (the entry point of layer " +
                                std::to_string(layer.info.layer) + ")");
      layer.function = reinterpret_cast<EntryFn>(address);
    }
    if (moe_status status = lookup(layer.entry + kWorkspaceSuffix, address))
      return fail(status, lastError + " (the workspace query of layer " +
                              std::to_string(layer.info.layer) + ")");
    layer.workspaceBytes = reinterpret_cast<WorkspaceFn>(address);
  }
  return MOE_OK;
}

moe_status moe_model::openCuda(const std::string &libraryPath,
                               const Manifest &manifest, int ordinal) {
  auto lookup = [&](const std::string &symbol, const std::string &what,
                    void *&address) {
    ::dlerror();
    address = ::dlsym(library, symbol.c_str());
    const char *why = ::dlerror();
    if (!address || why)
      return fail(MOE_ERROR_FORMAT,
                  libraryPath + ": no symbol '" + symbol + "'" +
                      (why ? std::string(": ") + why : std::string()) + " (" +
                      what + ")");
    return MOE_OK;
  };
  std::vector<moe::runtime::CudaLayerSpec> specs;
  for (const Layer &layer : layers) {
    std::string named = "layer " + std::to_string(layer.info.layer);
    moe::runtime::CudaLayerSpec spec;
    spec.layer = layer.info.layer;
    spec.entry = layer.entry;
    spec.hiddenSize = layer.info.hidden_size;
    spec.topK = layer.info.top_k;
    spec.workspaceBytes = layer.workspaceBytes;
    void *address = nullptr;
    if (moe_status status = lookup(layer.entry + kLaunchesSuffix,
                                   "the launch table of " + named, address))
      return status;
    spec.launches = reinterpret_cast<moe::runtime::CudaLaunchesFn>(address);
    // Absent means no tensor maps.
    ::dlerror();
    address = ::dlsym(library, (layer.entry + kTensorMapsSuffix).c_str());
    if (::dlerror())
      address = nullptr;
    spec.tensorMaps = reinterpret_cast<moe::runtime::CudaTensorMapsFn>(address);
    for (size_t i = 0; i < layer.cudaKernels.size(); ++i) {
      moe::runtime::CudaKernelImage image;
      image.name = layer.cudaKernels[i];
      std::string prefix = layer.entry + "_kernel_" + std::to_string(i);
      std::string what = "kernel " + std::to_string(i) + " '" + image.name +
                         "' of " + named + " in \"cuda_kernels\"";
      if (moe_status status =
              lookup(prefix + "_ptx", "the PTX of " + what, address))
        return status;
      image.ptx = static_cast<const char *>(address);
      if (moe_status status = lookup(prefix + "_cubin_size",
                                     "the cubin size of " + what, address))
        return status;
      std::memcpy(&image.cubinSize, address, sizeof(image.cubinSize));
      if (image.cubinSize > 0) {
        if (moe_status status =
                lookup(prefix + "_cubin", "the cubin of " + what, address))
          return status;
        image.cubin = address;
      }
      spec.kernels.push_back(std::move(image));
    }
    specs.push_back(std::move(spec));
  }
  std::string error;
  if (moe_status status = moe::runtime::CudaModel::open(
          folder + ": cuda:" + std::to_string(ordinal), ordinal,
          manifest.cudaArch, weights, weightsSize, std::move(specs), cuda,
          error))
    return fail(status, std::move(error));
  return MOE_OK;
}

//===----------------------------------------------------------------------===//
// The C API
//===----------------------------------------------------------------------===//

extern "C" {

const char *moe_last_error(void) {
  return lastErrorFallback ? lastErrorFallback : lastError.c_str();
}

const char *moe_status_string(moe_status status) {
  switch (status) {
  case MOE_OK:
    return "success";
  case MOE_ERROR_INVALID_ARGUMENT:
    return "invalid argument";
  case MOE_ERROR_IO:
    return "a file is missing or unreadable";
  case MOE_ERROR_FORMAT:
    return "malformed manifest, library or weights file";
  case MOE_ERROR_MISMATCH:
    return "library and weights were not compiled together";
  case MOE_ERROR_UNKNOWN_LAYER:
    return "no such layer in the model";
  case MOE_ERROR_SHAPE:
    return "hidden size differs from the layer's";
  case MOE_ERROR_UNSUPPORTED:
    return "unsupported target, device, format version or CPU";
  case MOE_ERROR_OUT_OF_MEMORY:
    return "out of memory";
  case MOE_ERROR_DEVICE:
    return "the GPU or its driver failed";
  }
  return "unknown status";
}

namespace {

moe_status openModel(const char *function, const char *folder,
                     const char *device, moe_model **model) {
  return guarded(function, [&]() -> moe_status {
    std::string name = function;
    if (!model)
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  name + ": model (the out-parameter) is null");
    *model = nullptr;
    if (!folder)
      return fail(MOE_ERROR_INVALID_ARGUMENT, name + ": folder is null");
    if (!*folder)
      return fail(MOE_ERROR_INVALID_ARGUMENT, name + ": folder is empty");
    Device where;
    if (!where.parse(device))
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  name + ": device " + quote(device) +
                      " is not valid; expected 'cpu' or 'cuda:N' with N a "
                      "device ordinal (0, 1, ...)");
    std::unique_ptr<moe_model> opened(new moe_model());
    if (moe_status status = opened->open(folder, where))
      return status;
    *model = opened.release();
    return MOE_OK;
  });
}

} // namespace

moe_status moe_model_open(const char *folder, moe_model **model) {
  return openModel("moe_model_open", folder, nullptr, model);
}

moe_status moe_model_open_device(const char *folder, const char *device,
                                 moe_model **model) {
  return openModel("moe_model_open_device", folder, device, model);
}

void moe_model_close(moe_model *model) { delete model; }

moe_status moe_model_num_layers(const moe_model *model, int32_t *count) {
  return guarded("moe_model_num_layers", [&]() -> moe_status {
    if (!model)
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  "moe_model_num_layers: model is null");
    if (!count)
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  "moe_model_num_layers: count is null");
    *count = static_cast<int32_t>(model->layers.size());
    return MOE_OK;
  });
}

moe_status moe_model_layer_info(const moe_model *model, int32_t i,
                                moe_layer_info *info) {
  return guarded("moe_model_layer_info", [&]() -> moe_status {
    if (!model)
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  "moe_model_layer_info: model is null");
    if (!info)
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  "moe_model_layer_info: info is null");
    if (i < 0 || static_cast<size_t>(i) >= model->layers.size())
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  "moe_model_layer_info: index i = " + std::to_string(i) +
                      " is out of range; " + model->folder + " has " +
                      std::to_string(model->layers.size()) + " layer(s)");
    *info = model->layers[static_cast<size_t>(i)].info;
    return MOE_OK;
  });
}

namespace {

/// The checks moe_layer_run and moe_layer_run_device share, after their own
/// null and dtype checks: token count, layer, hidden size, sizes that fit the
/// address space and 4-byte alignment (`hiddenF32`: hidden holds floats). On
/// success `entry` is the layer.
moe_status checkRun(const char *function, const moe_model &model, int32_t layer,
                    const void *hidden, bool hiddenF32, int64_t tokens,
                    int64_t hidden_size, const float *output,
                    const int32_t *topk_ids, const float *topk_weights,
                    const moe_model::Layer *&entry) {
  std::string name = function;
  auto invalid = [&](const std::string &message) {
    return fail(MOE_ERROR_INVALID_ARGUMENT, name + ": " + message);
  };
  if (tokens < 1)
    return invalid("tokens is " + std::to_string(tokens) +
                   "; it must be at least 1");

  entry = model.findLayer(layer);
  if (!entry) {
    std::string known;
    for (const moe_model::Layer &each : model.layers)
      known += (known.empty() ? "" : ", ") + std::to_string(each.info.layer);
    return fail(
        MOE_ERROR_UNKNOWN_LAYER,
        name + ": " + model.folder + " has no layer " + std::to_string(layer) +
            (known.empty() ? " (it has none)" : " (it has " + known + ")"));
  }
  const moe_layer_info &info = entry->info;
  if (hidden_size != info.hidden_size)
    return fail(MOE_ERROR_SHAPE,
                name + ": hidden_size is " + std::to_string(hidden_size) +
                    " but layer " + std::to_string(layer) + " of " +
                    model.folder + " has " + std::to_string(info.hidden_size));

  // [tokens, H] and [tokens, k] 4-byte elements must be addressable.
  constexpr uint64_t kMaxElements =
      static_cast<uint64_t>(std::numeric_limits<ptrdiff_t>::max()) /
      sizeof(float);
  uint64_t rows = static_cast<uint64_t>(tokens);
  uint64_t width = static_cast<uint64_t>(info.hidden_size);
  uint64_t k = static_cast<uint64_t>(info.top_k);
  if (rows > kMaxElements / width || rows > kMaxElements / k)
    return invalid("tokens (" + std::to_string(tokens) + ") x hidden_size (" +
                   std::to_string(hidden_size) +
                   ") overflows the address space");

  // The generated code reads and writes whole floats and int32s.
  auto misaligned = [](const void *pointer) {
    return reinterpret_cast<uintptr_t>(pointer) % alignof(float) != 0;
  };
  if (hiddenF32 && misaligned(hidden))
    return invalid("hidden is not aligned to 4 bytes");
  if (misaligned(output))
    return invalid("output is not aligned to 4 bytes");
  if (topk_ids && misaligned(topk_ids))
    return invalid("topk_ids is not aligned to 4 bytes");
  if (topk_weights && misaligned(topk_weights))
    return invalid("topk_weights is not aligned to 4 bytes");
  return MOE_OK;
}

} // namespace

moe_status moe_layer_run(moe_model *model, int32_t layer, const void *hidden,
                         moe_dtype dtype, int64_t tokens, int64_t hidden_size,
                         float *output, int32_t *topk_ids,
                         float *topk_weights) {
  return guarded("moe_layer_run", [&]() -> moe_status {
    auto invalid = [](const std::string &message) {
      return fail(MOE_ERROR_INVALID_ARGUMENT, "moe_layer_run: " + message);
    };
    if (!model)
      return invalid("model is null");
    if (!hidden)
      return invalid("hidden is null");
    if (!output)
      return invalid("output is null");
    if (dtype != MOE_DTYPE_F32 && dtype != MOE_DTYPE_BF16) {
      std::string_view name = moe::getSafetensorsDTypeName(dtype);
      return invalid(
          "dtype " + std::to_string(static_cast<int>(dtype)) +
          (name.empty() ? std::string() : " (" + std::string(name) + ")") +
          " is not supported; hidden must be MOE_DTYPE_F32 or MOE_DTYPE_BF16");
    }
    const moe_model::Layer *entry = nullptr;
    if (moe_status status = checkRun(
            "moe_layer_run", *model, layer, hidden, dtype == MOE_DTYPE_F32,
            tokens, hidden_size, output, topk_ids, topk_weights, entry))
      return status;
    const moe_layer_info &info = entry->info;
    // checkRun made sure these products fit.
    size_t elements =
        static_cast<size_t>(tokens) * static_cast<size_t>(info.hidden_size);
    size_t routed =
        static_cast<size_t>(tokens) * static_cast<size_t>(info.top_k);

    // Everything below is per call: no state is shared between threads.
    std::vector<float> converted;
    const float *input = static_cast<const float *>(hidden);
    if (dtype == MOE_DTYPE_BF16) {
      converted.resize(elements);
      const auto *bytes = static_cast<const uint8_t *>(hidden);
      for (size_t i = 0; i < elements; ++i) {
        uint16_t half;
        std::memcpy(&half, bytes + 2 * i, sizeof(half));
        uint32_t bits = static_cast<uint32_t>(half)
                        << 16; // exact: bf16 is a short f32
        std::memcpy(&converted[i], &bits, sizeof(bits));
      }
      input = converted.data();
    }
    if (model->cuda) {
      // Unwanted routing outputs stay in device scratch: nothing to copy.
      std::string error;
      if (moe_status status = model->cuda->run(
              static_cast<size_t>(entry - model->layers.data()), input, tokens,
              output, topk_ids, topk_weights, error))
        return fail(status, std::move(error));
      return MOE_OK;
    }
    std::vector<int32_t> scratchIds;
    std::vector<float> scratchWeights;
    if (!topk_ids) {
      scratchIds.resize(routed);
      topk_ids = scratchIds.data();
    }
    if (!topk_weights) {
      scratchWeights.resize(routed);
      topk_weights = scratchWeights.data();
    }
    int64_t workspaceBytes = entry->workspaceBytes(tokens);
    if (workspaceBytes < 0)
      return fail(MOE_ERROR_FORMAT,
                  "layer " + std::to_string(layer) +
                      ": the library asks for a negative workspace");
    uint8_t *workspace = threadWorkspace(static_cast<size_t>(workspaceBytes));
    entry->function(input, tokens, output, topk_ids, topk_weights,
                    model->weights, workspace);
    return MOE_OK;
  });
}

moe_status moe_layer_run_device(moe_model *model, int32_t layer,
                                const float *hidden, int64_t tokens,
                                int64_t hidden_size, float *output,
                                int32_t *topk_ids, float *topk_weights,
                                void *stream) {
  return guarded("moe_layer_run_device", [&]() -> moe_status {
    auto invalid = [](const std::string &message) {
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  "moe_layer_run_device: " + message);
    };
    if (!model)
      return invalid("model is null");
    if (!model->cuda)
      return fail(MOE_ERROR_UNSUPPORTED,
                  "moe_layer_run_device: " + model->folder +
                      " is open on the cpu, which has no device memory; "
                      "device buffers need a model opened on 'cuda:N' "
                      "(moe_layer_run takes host buffers)");
    if (!hidden)
      return invalid("hidden is null");
    if (!output)
      return invalid("output is null");
    const moe_model::Layer *entry = nullptr;
    if (moe_status status = checkRun("moe_layer_run_device", *model, layer,
                                     hidden, true, tokens, hidden_size, output,
                                     topk_ids, topk_weights, entry))
      return status;
    using moe::runtime::cuda::CUdeviceptr;
    auto address = [](const void *pointer) {
      return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(pointer));
    };
    std::string error;
    if (moe_status status = model->cuda->runDevice(
            static_cast<size_t>(entry - model->layers.data()), address(hidden),
            tokens, address(output), address(topk_ids), address(topk_weights),
            static_cast<moe::runtime::cuda::CUstream>(stream), error))
      return fail(status, std::move(error));
    return MOE_OK;
  });
}

} // extern "C"
