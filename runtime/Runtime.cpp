//===- Runtime.cpp - the C API of moe/runtime.h ---------------------------===//
//
// Opens a folder written by moe-compile (runtime/FORMAT.md) and runs its
// layers. Built as libmoe_runtime.so, which links neither LLVM nor MLIR: the
// safetensors rules come from lib/Weights/SafetensorsFormat.cpp, compiled into
// this library.
//
// Conventions:
// - No exception crosses the C boundary: every API function runs its body under
// guarded(),
//   which turns std::bad_alloc into MOE_ERROR_OUT_OF_MEMORY.
// - Every failure sets the calling thread's message (moe_last_error) naming the
// file, layer
//   or argument at fault. Successes leave the message alone, as errno does.
// - A model is immutable once opened, so moe_layer_run touches no shared
// mutable state.
//
//===----------------------------------------------------------------------===//

// The API functions are the only symbols the library exports (the rest of it is
// built with -fvisibility=hidden, and exports.map hides whatever else the
// linker would export).
#pragma GCC visibility push(default)
#include "moe/runtime.h"
#pragma GCC visibility pop

#include "lib/Support/DTypeTable.h"
#include "lib/Weights/SafetensorsFormat.h"
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
};

struct Manifest {
  std::string library;
  std::string weights;
  std::string weightsHash;
  std::vector<LayerEntry> layers;
};

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
    if (*target != "cpu")
      return fail(MOE_ERROR_UNSUPPORTED, path + ": target " + quote(*target) +
                                             " is not supported; this runtime "
                                             "runs 'cpu' only");

    // Descriptive fields: optional, but typed when present.
    for (const char *name : {"compiler", "model_type", "cpu", "cpu_features"}) {
      const std::string *value = nullptr;
      if (moe_status status = getString(root, "", name, false, value))
        return status;
    }
    // The files. header and ir are for people, but must still be plain names.
    for (const char *name : {"library", "weights", "header", "ir"}) {
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
    return MOE_OK;
  }

  const std::string &path;
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

struct moe_model {
  struct Layer {
    moe_layer_info info;
    std::string entry;
    EntryFn function = nullptr;
    WorkspaceFn workspaceBytes = nullptr;
  };

  std::string folder;
  std::vector<Layer> layers;
  /// The weights file, mapped read-only, and the start of its data buffer.
  void *mapping = nullptr;
  size_t mappingSize = 0;
  const uint8_t *weights = nullptr;
  void *library = nullptr;

  moe_model() = default;
  moe_model(const moe_model &) = delete;
  moe_model &operator=(const moe_model &) = delete;
  ~moe_model() {
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

  moe_status open(const std::string &path);

private:
  moe_status mapWeights(const std::string &path,
                        const std::string &manifestHash);
  moe_status loadLibrary(const std::string &path,
                         const std::string &manifestHash);
};

moe_status moe_model::open(const std::string &path) {
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
  std::string missing = moe::runtime::findMissingCpuFeature(cpuFeatures);
  if (!missing.empty())
    return fail(MOE_ERROR_UNSUPPORTED, joinPath(folder, kManifestName) +
                                           ": the library needs CPU feature '" +
                                           missing +
                                           "', which this machine lacks");
  for (LayerEntry &entry : manifest.layers)
    layers.push_back(Layer{entry.info, std::move(entry.entry), nullptr});

  if (moe_status status =
          mapWeights(joinPath(folder, manifest.weights), manifest.weightsHash))
    return status;
  return loadLibrary(joinPath(folder, manifest.library), manifest.weightsHash);
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
                                  const std::string &manifestHash) {
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
    if (moe_status status = lookup(layer.entry, address))
      return fail(status, lastError + " (the entry point of layer " +
                              std::to_string(layer.info.layer) + ")");
    layer.function = reinterpret_cast<EntryFn>(address);
    if (moe_status status = lookup(layer.entry + kWorkspaceSuffix, address))
      return fail(status, lastError + " (the workspace query of layer " +
                              std::to_string(layer.info.layer) + ")");
    layer.workspaceBytes = reinterpret_cast<WorkspaceFn>(address);
  }
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
    return "unsupported target, format version or CPU";
  case MOE_ERROR_OUT_OF_MEMORY:
    return "out of memory";
  }
  return "unknown status";
}

moe_status moe_model_open(const char *folder, moe_model **model) {
  return guarded("moe_model_open", [&]() -> moe_status {
    if (!model)
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  "moe_model_open: model (the out-parameter) "
                  "is null");
    *model = nullptr;
    if (!folder)
      return fail(MOE_ERROR_INVALID_ARGUMENT, "moe_model_open: folder is null");
    if (!*folder)
      return fail(MOE_ERROR_INVALID_ARGUMENT,
                  "moe_model_open: folder is empty");
    std::unique_ptr<moe_model> opened(new moe_model());
    if (moe_status status = opened->open(folder))
      return status;
    *model = opened.release();
    return MOE_OK;
  });
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
    if (tokens < 1)
      return invalid("tokens is " + std::to_string(tokens) +
                     "; it must be at least 1");

    const moe_model::Layer *entry = model->findLayer(layer);
    if (!entry) {
      std::string known;
      for (const moe_model::Layer &each : model->layers)
        known += (known.empty() ? "" : ", ") + std::to_string(each.info.layer);
      return fail(
          MOE_ERROR_UNKNOWN_LAYER,
          "moe_layer_run: " + model->folder + " has no layer " +
              std::to_string(layer) +
              (known.empty() ? " (it has none)" : " (it has " + known + ")"));
    }
    const moe_layer_info &info = entry->info;
    if (hidden_size != info.hidden_size)
      return fail(MOE_ERROR_SHAPE, "moe_layer_run: hidden_size is " +
                                       std::to_string(hidden_size) +
                                       " but layer " + std::to_string(layer) +
                                       " of " + model->folder + " has " +
                                       std::to_string(info.hidden_size));

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
    size_t elements = static_cast<size_t>(rows * width);
    size_t routed = static_cast<size_t>(rows * k);

    // The generated code reads and writes whole floats and int32s.
    auto misaligned = [](const void *pointer) {
      return reinterpret_cast<uintptr_t>(pointer) % alignof(float) != 0;
    };
    if (dtype == MOE_DTYPE_F32 && misaligned(hidden))
      return invalid("hidden is not aligned to 4 bytes");
    if (misaligned(output))
      return invalid("output is not aligned to 4 bytes");
    if (topk_ids && misaligned(topk_ids))
      return invalid("topk_ids is not aligned to 4 bytes");
    if (topk_weights && misaligned(topk_weights))
      return invalid("topk_weights is not aligned to 4 bytes");

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

} // extern "C"
