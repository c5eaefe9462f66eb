//===- CudaBackend.h - running a CUDA folder's layers -----------*- C++ -*-===//
//
// A model opened on "cuda:N" (runtime/FORMAT.md, "CUDA target"): the host
// library says which kernels to launch with which grids; this class owns
// everything on the device side (primary context, stream, modules, the
// weights' device copy, a grow-only pool of per-call buffers, cached CUDA
// graphs for decode) and runs a layer: copy the hidden states in (and the
// layer's encoded tensor maps into the workspace), launch, copy the results
// out (run); or, for buffers already on the device, only queue the map copies
// and the launches on the caller's stream (runDevice).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_CUDABACKEND_H
#define MOEC_RUNTIME_CUDABACKEND_H

#include "moe/runtime.h"
#include "runtime/CudaDriver.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace moe::runtime {

/// A launch record, as `<entry>_launches` writes them (FORMAT.md).
struct CudaLaunch {
  int32_t kernel; ///< index into the layer's kernels
  int32_t grid[3];
  int32_t block[3];
  int32_t sharedBytes; ///< dynamic shared memory
};
static_assert(sizeof(CudaLaunch) == 8 * sizeof(int32_t),
              "a launch record is eight int32");

/// A tensor map record, as `<entry>_tensor_maps` writes them (FORMAT.md,
/// "Tensor maps"): a bf16 tile view of the weights or the workspace that the
/// runtime encodes with cuTensorMapEncodeTiled and copies to the workspace.
struct CudaTensorMap {
  int32_t base;            ///< 0: the weights buffer, 1: the workspace
  int32_t rank;            ///< 2 or 3
  int64_t offset;          ///< bytes from the base to element 0
  int64_t dims[3];         ///< elements per dimension, innermost first
  int64_t strides[2];      ///< bytes between indices of dims 1 and 2
  int32_t box[3];          ///< elements per dimension of one tile
  int32_t swizzle;         ///< CUtensorMapSwizzle 0..3
  int64_t workspaceOffset; ///< where the encoded 128 bytes go
};
static_assert(sizeof(CudaTensorMap) == 80 &&
                  offsetof(CudaTensorMap, box) == 56 &&
                  offsetof(CudaTensorMap, workspaceOffset) == 72,
              "a tensor map record is moe_cuda_tensor_map's natural C layout");

using CudaWorkspaceFn = int64_t (*)(int64_t tokens);
using CudaLaunchesFn = int32_t (*)(int64_t tokens, CudaLaunch *launches,
                                   int32_t capacity);
using CudaTensorMapsFn = int32_t (*)(int64_t tokens, CudaTensorMap *maps,
                                     int32_t capacity);

/// One kernel of a layer: its name (manifest "cuda_kernels") and its images in
/// the host library.
struct CudaKernelImage {
  std::string name;
  const char *ptx = nullptr;   ///< NUL-terminated PTX
  const void *cubin = nullptr; ///< for the folder's cuda_arch; may be null
  uint64_t cubinSize = 0;      ///< 0: no cubin, JIT the PTX
};

/// What the runtime found in manifest and host library for one layer.
struct CudaLayerSpec {
  int32_t layer = 0;
  std::string entry;
  int64_t hiddenSize = 0;
  int32_t topK = 0;
  CudaWorkspaceFn workspaceBytes = nullptr;
  CudaLaunchesFn launches = nullptr;
  /// `<entry>_tensor_maps`; null when the layer has no tensor maps.
  CudaTensorMapsFn tensorMaps = nullptr;
  std::vector<CudaKernelImage> kernels;
};

/// The device side of a model. Its methods are serialized by a mutex: one
/// buffer pool serves every call, and calls on different streams are ordered
/// one after another through events.
class CudaModel {
public:
  /// Tokens up to this many run as a cached CUDA graph (decode sizes, where
  /// launch overhead dominates); larger calls launch kernel by kernel.
  static constexpr int64_t kMaxGraphTokens = 64;
  /// The most launch records a layer may ask for in one call.
  static constexpr int32_t kLaunchCapacity = 1024;
  /// The most tensor map records a layer may ask for in one call.
  static constexpr int32_t kTensorMapCapacity = 64;
  /// Executable graphs kept per (layer, tokens), one per set of buffers
  /// (runDevice bakes the caller's pointers into them); beyond this many the
  /// least recently used is dropped.
  static constexpr size_t kGraphVariants = 8;
  /// runDevice calls whose tensor map copies may still be queued: each has
  /// its own host staging buffer, reused only after its event completed.
  static constexpr size_t kInFlightCalls = 4;

  /// Opens device `ordinal`, loads every layer's kernels (the cubin when it was
  /// compiled for this device's compute capability, else the PTX) and uploads
  /// `weightBytes` bytes of `weights`. `where` ("FOLDER: cuda:N") starts every
  /// message. On failure returns the status, the reason in `error`, and has
  /// released whatever it acquired.
  static moe_status open(const std::string &where, int ordinal,
                         const std::string &cudaArch, const uint8_t *weights,
                         size_t weightBytes, std::vector<CudaLayerSpec> layers,
                         std::unique_ptr<CudaModel> &model, std::string &error);

  /// Runs layer `index` (of the specs given to open) on `tokens` rows of f32
  /// `hidden` (host memory, [tokens, H]), writing `output`, and `topkIds` /
  /// `topkWeights` when not null. Arguments are checked by the caller.
  moe_status run(size_t index, const float *hidden, int64_t tokens,
                 float *output, int32_t *topkIds, float *topkWeights,
                 std::string &error);

  /// Queues layer `index` on `tokens` rows of device memory: f32 `hidden` and
  /// `output` [tokens, H], `topkIds` / `topkWeights` [tokens, k] (0: the
  /// pool's scratch) on `stream` (null: the model's stream), and returns
  /// without waiting for it. Arguments are checked by the caller.
  moe_status runDevice(size_t index, cuda::CUdeviceptr hidden, int64_t tokens,
                       cuda::CUdeviceptr output, cuda::CUdeviceptr topkIds,
                       cuda::CUdeviceptr topkWeights, cuda::CUstream stream,
                       std::string &error);

  ~CudaModel();
  CudaModel(const CudaModel &) = delete;
  CudaModel &operator=(const CudaModel &) = delete;

private:
  CudaModel() = default;

  struct Kernel {
    std::string name;
    cuda::CUmodule module = nullptr;
    cuda::CUfunction function = nullptr;
    /// The dynamic shared memory the function was allowed so far (above the
    /// default 48 KiB a kernel needs cuFuncSetAttribute).
    int32_t sharedAllowed = 48 * 1024;
  };
  struct Layer {
    CudaLayerSpec spec;
    std::vector<Kernel> kernels;
  };
  /// A device allocation of the pool, reallocated only to grow.
  struct Buffer {
    cuda::CUdeviceptr pointer = 0;
    size_t capacity = 0;
  };

  moe_status fail(moe_status status, const std::string &message,
                  std::string &error) const;
  moe_status failCall(const char *call, cuda::CUresult result,
                      const std::string &context, std::string &error) const;
  moe_status loadKernels(Layer &layer, std::string &error);
  moe_status allocate(Buffer &buffer, size_t bytes, const char *what,
                      std::string &error);
  moe_status ensure(Buffer &buffer, size_t bytes, const char *what,
                    std::string &error);
  moe_status prepareLaunches(Layer &layer, int64_t tokens, std::string &error);
  /// Asks the layer for its tensor maps at `tokens` rows, checks every record
  /// against the weights and this call's `workspaceBytes`, and encodes them
  /// into `staging` (nothing is queued yet).
  moe_status prepareTensorMaps(Layer &layer, int64_t tokens,
                               int64_t workspaceBytes,
                               std::vector<cuda::CUtensorMap> &staging,
                               std::string &error);
  /// Queues on `stream` the copies of the prepared tensor maps (from
  /// `staging`) into the workspace, then the layer's launches for the arg*
  /// buffers: a cached graph's replay for decode sizes, else kernel by
  /// kernel. `queued` says whether the call has queued work on `stream`
  /// already and becomes true once this does; on a failure after anything
  /// was queued, `stream` is synchronized before returning.
  moe_status enqueueLayer(size_t index, int64_t tokens,
                          const std::vector<cuda::CUtensorMap> &staging,
                          cuda::CUstream stream, bool &queued,
                          std::string &error);
  /// Enqueues the prepared launches on `stream`.
  cuda::CUresult enqueueLaunches(Layer &layer, int64_t tokens,
                                 cuda::CUstream stream, size_t &failedAt);
  /// Captures the prepared launches into an executable graph (on the model's
  /// own stream, which nothing else uses while it captures); null if the
  /// driver could not capture them (the caller launches them plainly).
  cuda::CUgraphExec capture(Layer &layer, int64_t tokens);
  void dropGraphs();
  struct Graph;
  struct GraphBuffers;
  /// Adds a graph (null: capturing failed) for `buffers` to `variants`,
  /// dropping the least recently used one when there are kGraphVariants.
  void remember(std::vector<Graph> &variants, const GraphBuffers &buffers,
                cuda::CUgraphExec exec);
  /// `<entry>_workspace_bytes(tokens)`, refused when negative.
  moe_status workspaceFor(const CudaLayerSpec &spec, int64_t tokens,
                          int64_t &bytes, std::string &error) const;
  /// Creates the events of the in-flight ring (on the first runDevice).
  moe_status createEvents(const std::string &named, std::string &error);
  /// Waits until every call queued so far has finished with the pool (the
  /// last runDevice's event); then nothing is in flight.
  moe_status settle(const std::string &context, std::string &error);
  /// Forgets the in-flight calls, once a synchronization covered them.
  void forgetInFlight();

  const cuda::Driver *driver = nullptr;
  std::string where;
  std::string deviceName;
  cuda::CUdevice device = 0;
  int computeMajor = 0, computeMinor = 0;
  int maxSharedBytes = 0; ///< per block, opt-in
  int archMajor = 0, archMinor = 0;
  bool retained = false;
  cuda::CUcontext context = nullptr;
  cuda::CUstream stream = nullptr;
  std::vector<Layer> layers;
  Buffer weights;
  size_t weightsSize = 0; ///< bytes of the weights in `weights`

  std::mutex mutex; ///< guards everything below
  Buffer hidden, output, topkIds, topkWeights, workspace;
  /// The buffers a graph's launches were captured with (run: the pool's;
  /// runDevice: the caller's, or the pool's scratch for null topk).
  struct GraphBuffers {
    cuda::CUdeviceptr hidden = 0, output = 0, ids = 0, weights = 0;
    bool operator==(const GraphBuffers &other) const {
      return hidden == other.hidden && output == other.output &&
             ids == other.ids && weights == other.weights;
    }
  };
  struct Graph {
    GraphBuffers buffers;
    /// Null records that capturing failed: these buffers run launch by
    /// launch.
    cuda::CUgraphExec exec = nullptr;
    uint64_t lastUse = 0;
  };
  /// Executable graphs by (layer index, tokens), at most kGraphVariants sets
  /// of buffers each. The workspace and weights addresses are baked in too:
  /// any reallocation of the pool drops them all.
  std::map<std::pair<size_t, int64_t>, std::vector<Graph>> graphs;
  uint64_t graphClock = 0;
  /// The ring of runDevice calls that may still be running: each slot's
  /// event is recorded on the call's stream after all of its work, and its
  /// `staging` holds the host side of the call's tensor map copies, which the
  /// driver may read until then. run() synchronizes its stream and uses slot
  /// 0 once nothing is in flight.
  struct InFlight {
    cuda::CUevent done = nullptr;
    bool recorded = false; ///< `done` may not have completed
    std::vector<cuda::CUtensorMap> staging;
  };
  std::array<InFlight, kInFlightCalls> inFlight;
  size_t nextSlot = 0;
  /// Some call's work may still be running; `lastSlot`'s event follows all
  /// of it (every call's stream first waits for its predecessor's event).
  bool pending = false;
  size_t lastSlot = 0;
  /// The records of the call being run (prepareLaunches).
  std::vector<CudaLaunch> launches;
  int32_t launchCount = 0;
  /// The tensor map records of the call being run (prepareTensorMaps); their
  /// encoded maps go to an in-flight slot's staging.
  std::vector<CudaTensorMap> mapRecords;
  int32_t mapCount = 0;
  /// Kernel parameters of the call being run (FORMAT.md, seven of them).
  cuda::CUdeviceptr argHidden = 0, argOutput = 0, argIds = 0, argWeights = 0,
                    argModelWeights = 0, argWorkspace = 0;
  int64_t argTokens = 0;
};

} // namespace moe::runtime

#endif // MOEC_RUNTIME_CUDABACKEND_H
