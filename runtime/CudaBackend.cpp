//===- CudaBackend.cpp - running a CUDA folder's layers -------------------===//
//
// Every driver call happens with the model's primary context pushed on the
// calling thread (ContextScope) and popped again, so that the runtime leaves
// the caller's own CUDA context state as it found it.
//
// run() waits for its stream before it returns. runDevice() does not: its
// work may still run when the next call comes, on any stream, and it uses the
// same pool. So every runDevice call first makes its stream wait for the
// previous call's event and records its own after its work (the calls form
// one chain on the GPU), and whatever would free or overwrite memory that
// queued work may still read waits for the chain on the host first: growing
// the pool (settle), run() (settle, before it touches the pool), reusing a
// tensor map staging buffer (its call's event) and closing the model.
//
//===----------------------------------------------------------------------===//

#include "runtime/CudaBackend.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <tuple>

namespace moe::runtime {

using namespace cuda;

namespace {

/// The alignment FORMAT.md promises the kernels for every device buffer.
constexpr CUdeviceptr kDeviceAlignment = 256;

/// Pushes `context` on the calling thread for the scope's lifetime.
class ContextScope {
public:
  ContextScope(const Driver &driver, CUcontext context)
      : driver(driver), result(driver.cuCtxPushCurrent(context)) {}
  ~ContextScope() {
    if (result == CUDA_SUCCESS) {
      CUcontext popped = nullptr;
      driver.cuCtxPopCurrent(&popped);
    }
  }
  CUresult status() const { return result; }

private:
  const Driver &driver;
  CUresult result;
};

std::string dims(const int32_t value[3]) {
  return std::to_string(value[0]) + "x" + std::to_string(value[1]) + "x" +
         std::to_string(value[2]);
}

} // namespace

moe_status CudaModel::fail(moe_status status, const std::string &message,
                           std::string &error) const {
  error = where + ": " + message;
  return status;
}

moe_status CudaModel::failCall(const char *call, CUresult result,
                               const std::string &context,
                               std::string &error) const {
  return fail(Driver::statusOf(result),
              driver->describe(call, result) +
                  (context.empty() ? std::string() : " (" + context + ")"),
              error);
}

moe_status CudaModel::open(const std::string &where, int ordinal,
                           const std::string &cudaArch, const uint8_t *weights,
                           size_t weightBytes,
                           std::vector<CudaLayerSpec> layers,
                           std::unique_ptr<CudaModel> &model,
                           std::string &error) {
  // Built in place: whatever a failure leaves acquired, the destructor frees.
  std::unique_ptr<CudaModel> opened(new CudaModel());
  CudaModel &self = *opened;
  self.where = where;
  if (moe_status status = loadDriver(self.driver, error)) {
    error = where + ": " + error;
    return status;
  }
  const Driver &d = *self.driver;
  // Layers with tensor maps need the driver to encode them; older drivers
  // lack the call. Refused before anything is acquired.
  if (!d.cuTensorMapEncodeTiled)
    for (const CudaLayerSpec &spec : layers)
      if (spec.tensorMaps)
        return self.fail(MOE_ERROR_UNSUPPORTED,
                         "layer " + std::to_string(spec.layer) +
                             " uses TMA tensor maps (" + spec.entry +
                             "_tensor_maps), but the CUDA driver " + d.path +
                             " has no cuTensorMapEncodeTiled (a CUDA 12.0 "
                             "or newer driver is needed)",
                         error);

  // The folder's architecture, "sm_<major><minor>[a]" (checked by the
  // manifest reader): its cubins run only on that compute capability.
  std::string digits;
  for (char c : cudaArch.substr(3))
    if (c >= '0' && c <= '9')
      digits += c;
  if (digits.size() >= 2) {
    self.archMajor = std::stoi(digits.substr(0, digits.size() - 1));
    self.archMinor = digits.back() - '0';
  }

  int count = 0;
  if (CUresult result = d.cuDeviceGetCount(&count))
    return self.failCall("cuDeviceGetCount", result, "", error);
  if (count <= 0)
    return self.fail(MOE_ERROR_UNSUPPORTED,
                     "no CUDA device is present (cuDeviceGetCount reports 0)",
                     error);
  if (ordinal >= count)
    return self.fail(
        MOE_ERROR_INVALID_ARGUMENT,
        "there is no device cuda:" + std::to_string(ordinal) +
            "; this machine has " + std::to_string(count) +
            " CUDA device(s), cuda:0 to cuda:" + std::to_string(count - 1),
        error);
  if (CUresult result = d.cuDeviceGet(&self.device, ordinal))
    return self.failCall("cuDeviceGet", result, "", error);
  char name[256] = {0};
  if (CUresult result = d.cuDeviceGetName(name, sizeof(name) - 1, self.device))
    return self.failCall("cuDeviceGetName", result, "", error);
  self.deviceName = name;
  struct {
    int attribute;
    int *value;
    const char *what;
  } attributes[] = {{CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                     &self.computeMajor, "compute capability"},
                    {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                     &self.computeMinor, "compute capability"},
                    {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                     &self.maxSharedBytes, "shared memory per block"}};
  for (const auto &query : attributes)
    if (CUresult result =
            d.cuDeviceGetAttribute(query.value, query.attribute, self.device))
      return self.failCall("cuDeviceGetAttribute", result, query.what, error);

  CUcontext context = nullptr;
  if (CUresult result = d.cuDevicePrimaryCtxRetain(&context, self.device))
    return self.failCall("cuDevicePrimaryCtxRetain", result, "", error);
  self.retained = true;
  self.context = context;
  ContextScope scope(d, self.context);
  if (scope.status())
    return self.failCall("cuCtxPushCurrent", scope.status(), "", error);
  // Non-blocking: the model's work must not wait for (or hold up) whatever
  // the application runs on the legacy default stream.
  if (CUresult result = d.cuStreamCreate(&self.stream, CU_STREAM_NON_BLOCKING))
    return self.failCall("cuStreamCreate", result, "", error);

  self.layers.reserve(layers.size());
  for (CudaLayerSpec &spec : layers) {
    self.layers.push_back(Layer{std::move(spec), {}});
    if (moe_status status = self.loadKernels(self.layers.back(), error))
      return status;
  }

  // The weights, once: every layer's kernels read their tensors from here.
  if (moe_status status =
          self.allocate(self.weights, weightBytes, "the weights", error))
    return status;
  if (weightBytes > 0) {
    if (CUresult result = d.cuMemcpyHtoDAsync(self.weights.pointer, weights,
                                              weightBytes, self.stream))
      return self.failCall("cuMemcpyHtoDAsync", result,
                           "uploading " + std::to_string(weightBytes) +
                               " bytes of weights",
                           error);
    if (CUresult result = d.cuStreamSynchronize(self.stream))
      return self.failCall("cuStreamSynchronize", result,
                           "uploading the weights", error);
  }
  self.weightsSize = weightBytes;
  self.argModelWeights = self.weights.pointer;
  self.mapRecords.resize(kTensorMapCapacity);
  model = std::move(opened);
  return MOE_OK;
}

moe_status CudaModel::loadKernels(Layer &layer, std::string &error) {
  const Driver &d = *driver;
  bool cubinFits = computeMajor == archMajor && computeMinor == archMinor;
  for (const CudaKernelImage &image : layer.spec.kernels) {
    layer.kernels.push_back(Kernel{image.name});
    Kernel &kernel = layer.kernels.back();
    // The cubin was built for the folder's cuda_arch exactly (sm_90a code runs
    // on 9.0 only); on any other device the driver JIT-compiles the PTX.
    bool useCubin = image.cubinSize > 0 && image.cubin && cubinFits;
    std::string what =
        "kernel '" + image.name + "' of layer " +
        std::to_string(layer.spec.layer) + ", " +
        (useCubin ? "its cubin for sm_" + std::to_string(archMajor) +
                        std::to_string(archMinor)
                  : "its PTX for device " + deviceName + " (compute " +
                        std::to_string(computeMajor) + "." +
                        std::to_string(computeMinor) + ")");
    // PTX that the JIT rejects is explained only in its error log.
    char log[4096] = {0};
    int options[] = {CU_JIT_ERROR_LOG_BUFFER,
                     CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *values[] = {
        log, reinterpret_cast<void *>(static_cast<uintptr_t>(sizeof(log) - 1))};
    if (CUresult result = d.cuModuleLoadDataEx(
            &kernel.module,
            useCubin ? image.cubin : static_cast<const void *>(image.ptx), 2,
            options, values)) {
      std::string jit(log, ::strnlen(log, sizeof(log) - 1));
      while (!jit.empty() && (jit.back() == '\n' || jit.back() == ' '))
        jit.pop_back();
      return failCall("cuModuleLoadDataEx", result,
                      what + (jit.empty() ? "" : "; the JIT says: " + jit),
                      error);
    }
    if (CUresult result = d.cuModuleGetFunction(&kernel.function, kernel.module,
                                                image.name.c_str()))
      return failCall("cuModuleGetFunction", result,
                      "no function '" + image.name + "' in " + what, error);
  }
  return MOE_OK;
}

moe_status CudaModel::allocate(Buffer &buffer, size_t bytes, const char *what,
                               std::string &error) {
  // Never zero bytes (cuMemAlloc refuses that), and whole alignment units.
  size_t rounded = std::max<size_t>(bytes, 1);
  if (rounded > std::numeric_limits<size_t>::max() - kDeviceAlignment)
    return fail(MOE_ERROR_OUT_OF_MEMORY,
                std::string("cannot allocate ") + std::to_string(bytes) +
                    " bytes for " + what,
                error);
  rounded =
      (rounded + kDeviceAlignment - 1) / kDeviceAlignment * kDeviceAlignment;
  CUdeviceptr pointer = 0;
  if (CUresult result = driver->cuMemAlloc(&pointer, rounded))
    return failCall("cuMemAlloc", result,
                    std::to_string(rounded) + " bytes for " + what, error);
  buffer.pointer = pointer;
  buffer.capacity = rounded;
  if (pointer % kDeviceAlignment != 0)
    return fail(MOE_ERROR_DEVICE,
                std::string("cuMemAlloc returned an address not aligned to ") +
                    std::to_string(kDeviceAlignment) + " bytes for " + what,
                error);
  return MOE_OK;
}

moe_status CudaModel::ensure(Buffer &buffer, size_t bytes, const char *what,
                             std::string &error) {
  if (buffer.capacity >= bytes && buffer.pointer)
    return MOE_OK;
  // Work runDevice queued may still read or write the old buffer: it must
  // finish before the buffer is freed.
  if (buffer.pointer)
    if (moe_status status =
            settle(std::string("before growing ") + what, error))
      return status;
  // The graphs hold the old address; they go first (one still running is
  // freed by the driver when it completes).
  dropGraphs();
  // Grow by half again at least, so a slowly rising size reallocates (and
  // recaptures graphs) only a logarithmic number of times.
  size_t old = buffer.capacity;
  size_t grown = std::max(bytes, old + old / 2);
  if (buffer.pointer)
    driver->cuMemFree(buffer.pointer); // a failure leaks; nothing else to do
  buffer = Buffer();
  return allocate(buffer, grown, what, error);
}

void CudaModel::dropGraphs() {
  for (auto &[key, variants] : graphs)
    for (Graph &graph : variants)
      if (graph.exec)
        driver->cuGraphExecDestroy(graph.exec);
  graphs.clear();
}

void CudaModel::remember(std::vector<Graph> &variants,
                         const GraphBuffers &buffers, CUgraphExec exec) {
  if (variants.size() >= kGraphVariants) {
    auto oldest = std::min_element(
        variants.begin(), variants.end(),
        [](const Graph &a, const Graph &b) { return a.lastUse < b.lastUse; });
    // A launch of it still queued keeps running; the driver frees the graph
    // when it completes.
    if (oldest->exec)
      driver->cuGraphExecDestroy(oldest->exec);
    variants.erase(oldest);
  }
  variants.push_back(Graph{buffers, exec, ++graphClock});
}

moe_status CudaModel::createEvents(const std::string &named,
                                   std::string &error) {
  for (InFlight &slot : inFlight)
    if (!slot.done)
      if (CUresult result =
              driver->cuEventCreate(&slot.done, CU_EVENT_DISABLE_TIMING)) {
        slot.done = nullptr;
        return failCall("cuEventCreate", result, named, error);
      }
  return MOE_OK;
}

moe_status CudaModel::settle(const std::string &context, std::string &error) {
  if (!pending)
    return MOE_OK;
  if (CUresult result = driver->cuEventSynchronize(inFlight[lastSlot].done))
    return failCall("cuEventSynchronize", result,
                    "waiting for the model's earlier moe_layer_run_device "
                    "work " +
                        context,
                    error);
  forgetInFlight();
  return MOE_OK;
}

void CudaModel::forgetInFlight() {
  pending = false;
  for (InFlight &slot : inFlight)
    slot.recorded = false;
}

moe_status CudaModel::workspaceFor(const CudaLayerSpec &spec, int64_t tokens,
                                   int64_t &bytes, std::string &error) const {
  bytes = spec.workspaceBytes(tokens);
  if (bytes < 0)
    return fail(MOE_ERROR_FORMAT,
                "layer " + std::to_string(spec.layer) + ": " + spec.entry +
                    "_workspace_bytes(" + std::to_string(tokens) + ") is " +
                    std::to_string(bytes) +
                    "; a workspace size cannot be negative",
                error);
  return MOE_OK;
}

moe_status CudaModel::prepareLaunches(Layer &layer, int64_t tokens,
                                      std::string &error) {
  const CudaLayerSpec &spec = layer.spec;
  std::string call = spec.entry + "_launches(" + std::to_string(tokens) + ")";
  std::string named = "layer " + std::to_string(spec.layer) + ": ";
  launches.assign(kLaunchCapacity, CudaLaunch{});
  int32_t count = spec.launches(tokens, launches.data(), kLaunchCapacity);
  if (count <= 0)
    return fail(MOE_ERROR_FORMAT,
                named + call + " returned " + std::to_string(count) +
                    "; a layer launches at least one kernel",
                error);
  if (count > kLaunchCapacity)
    return fail(MOE_ERROR_FORMAT,
                named + call + " asks for " + std::to_string(count) +
                    " launches; this runtime takes at most " +
                    std::to_string(kLaunchCapacity),
                error);
  size_t kernels = layer.kernels.size();
  for (int32_t i = 0; i < count; ++i) {
    const CudaLaunch &record = launches[static_cast<size_t>(i)];
    std::string which = named + call + ": launch " + std::to_string(i);
    if (record.kernel < 0 || static_cast<size_t>(record.kernel) >= kernels)
      return fail(MOE_ERROR_FORMAT,
                  which + " names kernel " + std::to_string(record.kernel) +
                      "; the layer has " + std::to_string(kernels) +
                      " (cuda_kernels)",
                  error);
    const Kernel &kernel = layer.kernels[static_cast<size_t>(record.kernel)];
    which += " (kernel '" + kernel.name + "')";
    for (int axis = 0; axis < 3; ++axis)
      if (record.grid[axis] < 1 || record.block[axis] < 1)
        return fail(MOE_ERROR_FORMAT,
                    which + " has grid " + dims(record.grid) + " and block " +
                        dims(record.block) +
                        "; every dimension must be at least 1",
                    error);
    if (record.sharedBytes < 0)
      return fail(MOE_ERROR_FORMAT,
                  which + " asks for " + std::to_string(record.sharedBytes) +
                      " bytes of shared memory",
                  error);
    if (record.sharedBytes > maxSharedBytes)
      return fail(MOE_ERROR_UNSUPPORTED,
                  which + " needs " + std::to_string(record.sharedBytes) +
                      " bytes of dynamic shared memory; " + deviceName +
                      " allows at most " + std::to_string(maxSharedBytes) +
                      " per block",
                  error);
  }
  // Dynamic shared memory above 48 KiB is opt-in per function. Done here,
  // before any capture: it is a property of the function, not stream work.
  for (int32_t i = 0; i < count; ++i) {
    const CudaLaunch &record = launches[static_cast<size_t>(i)];
    Kernel &kernel = layer.kernels[static_cast<size_t>(record.kernel)];
    if (record.sharedBytes <= kernel.sharedAllowed)
      continue;
    if (CUresult result = driver->cuFuncSetAttribute(
            kernel.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            record.sharedBytes))
      return failCall("cuFuncSetAttribute", result,
                      "allowing kernel '" + kernel.name + "' of layer " +
                          std::to_string(spec.layer) + " " +
                          std::to_string(record.sharedBytes) +
                          " bytes of dynamic shared memory",
                      error);
    kernel.sharedAllowed = record.sharedBytes;
  }
  launchCount = count;
  return MOE_OK;
}

moe_status CudaModel::prepareTensorMaps(Layer &layer, int64_t tokens,
                                        int64_t workspaceBytes,
                                        std::vector<CUtensorMap> &staging,
                                        std::string &error) {
  mapCount = 0;
  const CudaLayerSpec &spec = layer.spec;
  if (!spec.tensorMaps)
    return MOE_OK;
  staging.resize(kTensorMapCapacity);
  std::string call = "layer " + std::to_string(spec.layer) + ": " + spec.entry +
                     "_tensor_maps(" + std::to_string(tokens) + ")";
  std::fill(mapRecords.begin(), mapRecords.end(), CudaTensorMap{});
  int32_t count =
      spec.tensorMaps(tokens, mapRecords.data(), kTensorMapCapacity);
  if (count < 0)
    return fail(MOE_ERROR_FORMAT,
                call + " returned " + std::to_string(count) +
                    "; a count of tensor maps cannot be negative",
                error);
  if (count > kTensorMapCapacity)
    return fail(MOE_ERROR_FORMAT,
                call + " asks for " + std::to_string(count) +
                    " tensor maps; this runtime takes at most " +
                    std::to_string(kTensorMapCapacity),
                error);

  using Wide = __int128; // no product of two int64 overflows it
  for (int32_t i = 0; i < count; ++i) {
    const CudaTensorMap &map = mapRecords[static_cast<size_t>(i)];
    std::string which = call + ": tensor map " + std::to_string(i);
    auto bad = [&](const std::string &why) {
      return fail(MOE_ERROR_FORMAT, which + " " + why, error);
    };
    if (map.base != 0 && map.base != 1)
      return bad("has base " + std::to_string(map.base) +
                 "; expected 0 (the weights) or 1 (the workspace)");
    const char *baseName = map.base == 0 ? "the weights" : "the workspace";
    int64_t baseBytes =
        map.base == 0 ? static_cast<int64_t>(weightsSize) : workspaceBytes;
    which += std::string(" (on ") + baseName + ")";
    if (map.rank < 2 || map.rank > 3)
      return bad("has rank " + std::to_string(map.rank) + "; expected 2 or 3");
    for (int32_t axis = 0; axis < map.rank; ++axis) {
      std::string at = "[" + std::to_string(axis) + "]";
      if (map.dims[axis] < 1)
        return bad("has dims" + at + " = " + std::to_string(map.dims[axis]) +
                   "; every dimension must be at least 1");
      if (map.box[axis] < 1 || map.box[axis] > 256)
        return bad("has box" + at + " = " + std::to_string(map.box[axis]) +
                   "; a box dimension must be 1 to 256");
    }
    int64_t innerBytes = int64_t{map.box[0]} * 2;
    if (innerBytes % 16 != 0)
      return bad("has box[0] = " + std::to_string(map.box[0]) + ", " +
                 std::to_string(innerBytes) +
                 " bytes of bf16, not a multiple of 16");
    if (map.swizzle < 0 || map.swizzle > 3)
      return bad("has swizzle " + std::to_string(map.swizzle) +
                 "; expected 0 (none), 1 (32B), 2 (64B) or 3 (128B)");
    if (map.swizzle > 0 && innerBytes > (int64_t{16} << map.swizzle))
      return bad("has box[0] = " + std::to_string(map.box[0]) + ", " +
                 std::to_string(innerBytes) + " bytes, wider than its " +
                 std::to_string(16 << map.swizzle) + "-byte swizzle");
    if (map.offset < 0 || map.offset % 16 != 0)
      return bad("has offset " + std::to_string(map.offset) +
                 "; it must be a non-negative multiple of 16");
    for (int32_t axis = 0; axis + 1 < map.rank; ++axis)
      if (map.strides[axis] < 16 || map.strides[axis] % 16 != 0)
        return bad("has strides[" + std::to_string(axis) +
                   "] = " + std::to_string(map.strides[axis]) +
                   "; strides must be positive multiples of 16");
    // The last byte the map can reach, one past: every index at its largest.
    Wide end = Wide{map.offset} + Wide{map.dims[0]} * 2;
    for (int32_t axis = 1; axis < map.rank; ++axis)
      end += Wide{map.dims[axis] - 1} * Wide{map.strides[axis - 1]};
    if (end > Wide{baseBytes}) {
      std::string dimsText = std::to_string(map.dims[0]);
      for (int32_t axis = 1; axis < map.rank; ++axis)
        dimsText += "x" + std::to_string(map.dims[axis]);
      return bad("reaches past the end of " + std::string(baseName) + " (" +
                 std::to_string(baseBytes) + " bytes" +
                 (map.base == 1 ? " for this call" : "") + "): dims " +
                 dimsText + " from offset " + std::to_string(map.offset) +
                 " end at byte " +
                 (end > Wide{std::numeric_limits<int64_t>::max()}
                      ? std::string("beyond 2^63")
                      : std::to_string(static_cast<int64_t>(end))));
    }
    if (map.workspaceOffset < 0 || map.workspaceOffset % 64 != 0)
      return bad("goes to workspace offset " +
                 std::to_string(map.workspaceOffset) +
                 "; it must be a non-negative multiple of 64");
    if (map.workspaceOffset > workspaceBytes - 128)
      return bad(
          "goes to workspace offset " + std::to_string(map.workspaceOffset) +
          "; its 128 bytes do not fit in the " +
          std::to_string(workspaceBytes) + " workspace bytes of this call");
    for (int32_t j = 0; j < i; ++j) {
      int64_t other = mapRecords[static_cast<size_t>(j)].workspaceOffset;
      if (map.workspaceOffset < other + 128 &&
          other < map.workspaceOffset + 128)
        return bad("goes to workspace offset " +
                   std::to_string(map.workspaceOffset) +
                   ", overlapping tensor map " + std::to_string(j) +
                   " at offset " + std::to_string(other));
    }
  }

  for (int32_t i = 0; i < count; ++i) {
    const CudaTensorMap &map = mapRecords[static_cast<size_t>(i)];
    std::string which = "layer " + std::to_string(spec.layer) +
                        ", tensor map " + std::to_string(i) + " of " +
                        std::to_string(count);
    if (!driver->cuTensorMapEncodeTiled) // open refused such layers
      return fail(MOE_ERROR_UNSUPPORTED,
                  which + ": the driver has no cuTensorMapEncodeTiled", error);
    cuuint64_t globalDim[3], globalStrides[2];
    cuuint32_t boxDim[3], elementStrides[3] = {1, 1, 1};
    for (int32_t axis = 0; axis < map.rank; ++axis) {
      globalDim[axis] = static_cast<cuuint64_t>(map.dims[axis]);
      boxDim[axis] = static_cast<cuuint32_t>(map.box[axis]);
      if (axis + 1 < map.rank)
        globalStrides[axis] = static_cast<cuuint64_t>(map.strides[axis]);
    }
    CUdeviceptr base = map.base == 0 ? weights.pointer : workspace.pointer;
    void *address = reinterpret_cast<void *>(
        static_cast<uintptr_t>(base + static_cast<CUdeviceptr>(map.offset)));
    if (CUresult result = driver->cuTensorMapEncodeTiled(
            &staging[static_cast<size_t>(i)], CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            static_cast<cuuint32_t>(map.rank), address, globalDim,
            globalStrides, boxDim, elementStrides,
            CU_TENSOR_MAP_INTERLEAVE_NONE, map.swizzle,
            CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE))
      return failCall("cuTensorMapEncodeTiled", result,
                      which + ", rank " + std::to_string(map.rank) + " on " +
                          (map.base == 0 ? "the weights" : "the workspace") +
                          " at offset " + std::to_string(map.offset) +
                          ", box " + std::to_string(map.box[0]) + "x" +
                          std::to_string(map.box[1]) +
                          (map.rank == 3 ? "x" + std::to_string(map.box[2])
                                         : std::string()) +
                          ", swizzle " + std::to_string(map.swizzle),
                      error);
  }
  mapCount = count;
  return MOE_OK;
}

CUresult CudaModel::enqueueLaunches(Layer &layer, int64_t tokens,
                                    CUstream target, size_t &failedAt) {
  argTokens = tokens;
  // The seven parameters of FORMAT.md, in order; the driver copies the values
  // at launch (or capture) time.
  void *parameters[] = {&argHidden,  &argTokens,       &argOutput,   &argIds,
                        &argWeights, &argModelWeights, &argWorkspace};
  for (int32_t i = 0; i < launchCount; ++i) {
    const CudaLaunch &record = launches[static_cast<size_t>(i)];
    const Kernel &kernel = layer.kernels[static_cast<size_t>(record.kernel)];
    auto u = [](int32_t value) { return static_cast<unsigned>(value); };
    if (CUresult result = driver->cuLaunchKernel(
            kernel.function, u(record.grid[0]), u(record.grid[1]),
            u(record.grid[2]), u(record.block[0]), u(record.block[1]),
            u(record.block[2]), u(record.sharedBytes), target, parameters,
            nullptr)) {
      failedAt = static_cast<size_t>(i);
      return result;
    }
  }
  return CUDA_SUCCESS;
}

CUgraphExec CudaModel::capture(Layer &layer, int64_t tokens) {
  const Driver &d = *driver;
  // Thread-local mode: only this thread's calls can disturb the capture, and
  // other threads' CUDA work is not restricted while it lasts.
  if (d.cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL))
    return nullptr;
  size_t failedAt = 0;
  CUresult launched = enqueueLaunches(layer, tokens, stream, failedAt);
  // End the capture whatever happened, or the stream stays unusable.
  CUgraph graph = nullptr;
  CUresult ended = d.cuStreamEndCapture(stream, &graph);
  if (launched || ended || !graph) {
    if (graph)
      d.cuGraphDestroy(graph);
    return nullptr;
  }
  CUgraphExec exec = nullptr;
  CUresult instantiated = d.cuGraphInstantiateWithFlags(&exec, graph, 0);
  d.cuGraphDestroy(graph); // the executable graph does not need it
  return instantiated ? nullptr : exec;
}

moe_status CudaModel::enqueueLayer(size_t index, int64_t tokens,
                                   const std::vector<CUtensorMap> &staging,
                                   CUstream target, bool &queued,
                                   std::string &error) {
  const Driver &d = *driver;
  Layer &layer = layers[index];
  std::string named = "layer " + std::to_string(layer.spec.layer);

  // The encoded maps go into the workspace ahead of the launches or the
  // graph, on the same stream: a replayed graph reads this call's maps, not
  // whatever another layer or token count left in those bytes.
  for (int32_t i = 0; i < mapCount; ++i) {
    const CudaTensorMap &map = mapRecords[static_cast<size_t>(i)];
    if (CUresult result = d.cuMemcpyHtoDAsync(
            workspace.pointer + static_cast<CUdeviceptr>(map.workspaceOffset),
            &staging[static_cast<size_t>(i)], sizeof(CUtensorMap), target))
      return failCall("cuMemcpyHtoDAsync", result,
                      named + ": copying tensor map " + std::to_string(i) +
                          " to workspace offset " +
                          std::to_string(map.workspaceOffset),
                      error);
    queued = true;
  }

  // Decode sizes replay a graph captured for exactly these buffers.
  GraphBuffers buffers{argHidden, argOutput, argIds, argWeights};
  std::vector<Graph> *variants = nullptr;
  Graph *cached = nullptr;
  if (tokens <= kMaxGraphTokens) {
    variants = &graphs[std::make_pair(index, tokens)];
    for (Graph &graph : *variants)
      if (graph.buffers == buffers) {
        cached = &graph;
        cached->lastUse = ++graphClock;
        break;
      }
  }
  std::string sized = named + ", " + std::to_string(tokens) + " tokens";
  if (cached && cached->exec) {
    queued = true; // whatever a failing launch may have left queued
    if (CUresult result = d.cuGraphLaunch(cached->exec, target))
      return failCall("cuGraphLaunch", result, sized, error);
    return MOE_OK;
  }
  if (moe_status status = prepareLaunches(layer, tokens, error))
    return status;
  bool capturing = variants && !cached;
  if (CUgraphExec exec = capturing ? capture(layer, tokens) : nullptr) {
    remember(*variants, buffers, exec);
    queued = true;
    if (CUresult result = d.cuGraphLaunch(exec, target))
      return failCall("cuGraphLaunch", result, sized, error);
    return MOE_OK;
  }
  size_t failedAt = 0;
  queued = true;
  if (CUresult result = enqueueLaunches(layer, tokens, target, failedAt)) {
    const CudaLaunch &record = launches[failedAt];
    return failCall("cuLaunchKernel", result,
                    named + ", launch " + std::to_string(failedAt) + " of " +
                        std::to_string(launchCount) + ": kernel '" +
                        layer.kernels[static_cast<size_t>(record.kernel)].name +
                        "' grid " + dims(record.grid) + " block " +
                        dims(record.block) + " shared " +
                        std::to_string(record.sharedBytes),
                    error);
  }
  // The launches work but their capture did not: these buffers keep
  // launching plainly (until the pool grows and every graph is dropped). A
  // launch failure records nothing, so a later call tries again.
  if (capturing)
    remember(*variants, buffers, nullptr);
  return MOE_OK;
}

moe_status CudaModel::run(size_t index, const float *hiddenHost, int64_t tokens,
                          float *outputHost, int32_t *topkIdsHost,
                          float *topkWeightsHost, std::string &error) {
  std::lock_guard<std::mutex> lock(mutex);
  const Driver &d = *driver;
  Layer &layer = layers[index];
  const CudaLayerSpec &spec = layer.spec;
  std::string named = "layer " + std::to_string(spec.layer);

  int64_t workspaceBytes = 0;
  if (moe_status status = workspaceFor(spec, tokens, workspaceBytes, error))
    return status;
  // The caller checked that these products fit in the address space.
  size_t rows = static_cast<size_t>(tokens);
  size_t hiddenBytes = rows * static_cast<size_t>(spec.hiddenSize) * 4;
  size_t routedBytes = rows * static_cast<size_t>(spec.topK) * 4;

  ContextScope scope(d, context);
  if (scope.status())
    return failCall("cuCtxPushCurrent", scope.status(), named, error);
  // Work moe_layer_run_device queued, on any stream, may still use the pool
  // and the staging buffers; this call waits for its stream anyway, so it
  // waits for that work first and then has everything to itself.
  if (moe_status status = settle("(" + named + ")", error))
    return status;
  for (auto [buffer, bytes, what] :
       {std::make_tuple(&hidden, hiddenBytes, "the hidden states"),
        std::make_tuple(&output, hiddenBytes, "the output"),
        std::make_tuple(&topkIds, routedBytes, "topk_ids"),
        std::make_tuple(&topkWeights, routedBytes, "topk_weights"),
        std::make_tuple(&workspace, static_cast<size_t>(workspaceBytes),
                        "the workspace")})
    if (moe_status status = ensure(*buffer, bytes, what, error))
      return status;
  argHidden = hidden.pointer;
  argOutput = output.pointer;
  argIds = topkIds.pointer;
  argWeights = topkWeights.pointer;
  argWorkspace = workspace.pointer;

  // Tensor maps hold this call's buffer addresses; checked and encoded before
  // anything is queued, so a bad record launches nothing. Nothing is in
  // flight, so slot 0's staging is free; it stays untouched until the call
  // has waited for its stream.
  std::vector<CUtensorMap> &staging = inFlight[0].staging;
  if (moe_status status =
          prepareTensorMaps(layer, tokens, workspaceBytes, staging, error))
    return status;

  // Once anything is queued, a failure must still wait for the stream: a
  // queued copy into the caller's buffers must not land after we return.
  bool queued = false;
  auto failQueued = [&](moe_status status) {
    if (queued)
      d.cuStreamSynchronize(stream);
    return status;
  };

  if (CUresult result =
          d.cuMemcpyHtoDAsync(hidden.pointer, hiddenHost, hiddenBytes, stream))
    return failCall("cuMemcpyHtoDAsync", result,
                    named + ": copying the hidden states in", error);
  queued = true;
  if (moe_status status =
          enqueueLayer(index, tokens, staging, stream, queued, error))
    return failQueued(status);

  // Copy back only what the caller asked for; the rest stays device scratch.
  struct {
    void *host;
    CUdeviceptr device;
    size_t bytes;
    const char *what;
  } copies[] = {
      {outputHost, output.pointer, hiddenBytes, "the output"},
      {topkIdsHost, topkIds.pointer, routedBytes, "topk_ids"},
      {topkWeightsHost, topkWeights.pointer, routedBytes, "topk_weights"}};
  for (const auto &copy : copies) {
    if (!copy.host)
      continue;
    if (CUresult result =
            d.cuMemcpyDtoHAsync(copy.host, copy.device, copy.bytes, stream))
      return failQueued(failCall("cuMemcpyDtoHAsync", result,
                                 named + ": copying " + copy.what + " out",
                                 error));
  }
  // Kernel faults surface here, at the latest.
  if (CUresult result = d.cuStreamSynchronize(stream))
    return failCall("cuStreamSynchronize", result,
                    named + ", " + std::to_string(tokens) + " tokens", error);
  return MOE_OK;
}

moe_status CudaModel::runDevice(size_t index, CUdeviceptr hiddenDevice,
                                int64_t tokens, CUdeviceptr outputDevice,
                                CUdeviceptr idsDevice,
                                CUdeviceptr weightsDevice,
                                CUstream callerStream, std::string &error) {
  std::lock_guard<std::mutex> lock(mutex);
  const Driver &d = *driver;
  Layer &layer = layers[index];
  const CudaLayerSpec &spec = layer.spec;
  std::string named = "layer " + std::to_string(spec.layer);
  CUstream target = callerStream ? callerStream : stream;

  int64_t workspaceBytes = 0;
  if (moe_status status = workspaceFor(spec, tokens, workspaceBytes, error))
    return status;
  size_t routedBytes =
      static_cast<size_t>(tokens) * static_cast<size_t>(spec.topK) * 4;

  ContextScope scope(d, context);
  if (scope.status())
    return failCall("cuCtxPushCurrent", scope.status(), named, error);
  if (moe_status status = createEvents(named, error))
    return status;

  // The host side of this call's tensor map copies. cuMemcpyHtoDAsync from
  // pageable memory may read it only when the copy runs, after this call has
  // returned, so a slot is reused only once the call that last used it
  // (kInFlightCalls calls ago) has finished; until then the host waits. Up to
  // kInFlightCalls calls with tensor maps can be queued ahead of the GPU.
  size_t slotIndex = nextSlot;
  InFlight &slot = inFlight[slotIndex];
  if (spec.tensorMaps && slot.recorded) {
    if (CUresult result = d.cuEventSynchronize(slot.done))
      return failCall("cuEventSynchronize", result,
                      named +
                          ": waiting for the call that last used tensor "
                          "map staging buffer " +
                          std::to_string(slotIndex),
                      error);
    slot.recorded = false;
  }

  // Unwanted routing outputs go to the pool's scratch; the caller's buffers
  // need nothing from the pool.
  for (auto [buffer, bytes, what, wanted] :
       {std::make_tuple(&topkIds, routedBytes, "topk_ids", !idsDevice),
        std::make_tuple(&topkWeights, routedBytes, "topk_weights",
                        !weightsDevice),
        std::make_tuple(&workspace, static_cast<size_t>(workspaceBytes),
                        "the workspace", true)})
    if (wanted)
      if (moe_status status = ensure(*buffer, bytes, what, error))
        return status;
  argHidden = hiddenDevice;
  argOutput = outputDevice;
  argIds = idsDevice ? idsDevice : topkIds.pointer;
  argWeights = weightsDevice ? weightsDevice : topkWeights.pointer;
  argWorkspace = workspace.pointer;

  if (moe_status status =
          prepareTensorMaps(layer, tokens, workspaceBytes, slot.staging, error))
    return status;

  // After the model's previous call, whatever stream that went to: both use
  // the workspace (and maybe the scratch). On the same stream the wait is
  // redundant but cheap, and it does not depend on telling streams apart.
  if (pending)
    if (CUresult result =
            d.cuStreamWaitEvent(target, inFlight[lastSlot].done, 0))
      return failCall("cuStreamWaitEvent", result,
                      named + ": ordering the call after the model's previous "
                              "one",
                      error);

  bool queued = false;
  moe_status status =
      enqueueLayer(index, tokens, slot.staging, target, queued, error);
  if (!queued)
    return status; // nothing of this call is on the stream
  // The event follows this call's work, also after a failure part way (what
  // was queued may still run).
  CUresult recorded = d.cuEventRecord(slot.done, target);
  if (recorded == CUDA_SUCCESS) {
    slot.recorded = true;
    pending = true;
    lastSlot = slotIndex;
    nextSlot = (slotIndex + 1) % kInFlightCalls;
  } else if (d.cuStreamSynchronize(target) == CUDA_SUCCESS) {
    // Without the event, waiting is the only way to know the work is done;
    // the stream waited for the previous call, so everything is.
    forgetInFlight();
  }
  if (status)
    return status;
  if (recorded)
    return failCall("cuEventRecord", recorded,
                    named + ", " + std::to_string(tokens) +
                        " tokens: marking the end of the call",
                    error);
  return MOE_OK;
}

CudaModel::~CudaModel() {
  if (!driver)
    return;
  const Driver &d = *driver;
  // Errors are ignored: after a device fault every call may fail, and there
  // is nothing left to do about it but release the rest.
  if (context) {
    ContextScope scope(d, context);
    if (scope.status() == CUDA_SUCCESS) {
      // runDevice work on the callers' streams may still use the buffers.
      if (pending)
        d.cuEventSynchronize(inFlight[lastSlot].done);
      if (stream)
        d.cuStreamSynchronize(stream);
      dropGraphs();
      for (Layer &layer : layers)
        for (Kernel &kernel : layer.kernels)
          if (kernel.module)
            d.cuModuleUnload(kernel.module);
      for (Buffer *buffer :
           {&weights, &hidden, &output, &topkIds, &topkWeights, &workspace})
        if (buffer->pointer)
          d.cuMemFree(buffer->pointer);
      for (InFlight &slot : inFlight)
        if (slot.done)
          d.cuEventDestroy(slot.done);
      if (stream)
        d.cuStreamDestroy(stream);
    }
  }
  if (retained)
    d.cuDevicePrimaryCtxRelease(device);
}

} // namespace moe::runtime
