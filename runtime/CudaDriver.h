//===- CudaDriver.h - the CUDA driver API, loaded at run time ---*- C++ -*-===//
//
// libmoe_runtime.so must build and load on machines without CUDA, so it never
// includes cuda.h nor links libcuda: it dlopens the driver when a model is
// opened on a "cuda:N" device and looks up every function it calls. The types
// and constants below are the few of cuda.h (CUDA 12/13 driver API) the
// runtime needs, with the same sizes and values; the function pointers carry
// the signatures of the versioned symbols libcuda exports (cuMemAlloc_v2 and
// so on, which cuda.h's macros map the plain names to).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_CUDADRIVER_H
#define MOEC_RUNTIME_CUDADRIVER_H

#include "moe/runtime.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace moe::runtime::cuda {

// cuda.h: typedef enum cudaError_enum {...} CUresult; an enum of int size.
using CUresult = int;
// cuda.h: typedef int CUdevice; typedef unsigned long long CUdeviceptr (64-bit
// hosts).
using CUdevice = int;
using CUdeviceptr = unsigned long long;
// Opaque handles (pointers to driver-private structs in cuda.h).
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUgraph = struct CUgraph_st *;
using CUgraphExec = struct CUgraphExec_st *;
using CUevent = struct CUevent_st *;
// cuda.h: typedef uint32_t cuuint32_t; typedef uint64_t cuuint64_t.
using cuuint32_t = uint32_t;
using cuuint64_t = uint64_t;

/// cuda.h's CUtensorMap: 128 opaque bytes that the driver encodes. cuda.h
/// aligns the struct to 128 bytes; cuTensorMapEncodeTiled needs 64.
struct alignas(64) CUtensorMap {
  cuuint64_t opaque[16];
};
static_assert(sizeof(CUtensorMap) == 128, "a CUtensorMap is 128 bytes");

// The values of cuda.h's enumerators the runtime uses.
constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_INVALID_VALUE = 1;
constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
constexpr CUresult CUDA_ERROR_INSUFFICIENT_DRIVER = 35;
constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;
constexpr CUresult CUDA_ERROR_INVALID_DEVICE = 101;
constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
constexpr CUresult CUDA_ERROR_NO_BINARY_FOR_GPU = 209;
constexpr CUresult CUDA_ERROR_INVALID_PTX = 218;
constexpr CUresult CUDA_ERROR_JIT_COMPILER_NOT_FOUND = 221;
constexpr CUresult CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222;
constexpr CUresult CUDA_ERROR_NOT_FOUND = 500;
constexpr CUresult CUDA_ERROR_NOT_SUPPORTED = 801;
constexpr CUresult CUDA_ERROR_SYSTEM_DRIVER_MISMATCH = 803;
constexpr CUresult CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE = 804;

constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
constexpr int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
constexpr int CU_JIT_ERROR_LOG_BUFFER = 5;
constexpr int CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;
constexpr unsigned CU_STREAM_NON_BLOCKING = 0x1;
constexpr int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
constexpr unsigned CU_EVENT_DISABLE_TIMING = 0x2;
// CUtensorMapDataType, CUtensorMapInterleave, CUtensorMapL2promotion and
// CUtensorMapFloatOOBfill (enums of int size); CUtensorMapSwizzle's values
// 0..3 (none, 32B, 64B, 128B) are the records' `swizzle` field as is.
constexpr int CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9;
constexpr int CU_TENSOR_MAP_INTERLEAVE_NONE = 0;
constexpr int CU_TENSOR_MAP_L2_PROMOTION_NONE = 0;
constexpr int CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0;

/// The driver's entry points, resolved from the loaded library. Every member
/// is non-null once loadDriver succeeded, except the optional ones marked so.
struct Driver {
  std::string path; ///< what was passed to dlopen, for messages

  CUresult (*cuInit)(unsigned flags);
  CUresult (*cuGetErrorName)(CUresult error, const char **name);
  CUresult (*cuGetErrorString)(CUresult error, const char **text);
  CUresult (*cuDeviceGetCount)(int *count);
  CUresult (*cuDeviceGet)(CUdevice *device, int ordinal);
  CUresult (*cuDeviceGetName)(char *name, int length, CUdevice device);
  CUresult (*cuDeviceGetAttribute)(int *value, int attribute, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *context, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice device);
  CUresult (*cuCtxPushCurrent)(CUcontext context);
  CUresult (*cuCtxPopCurrent)(CUcontext *context);
  CUresult (*cuStreamCreate)(CUstream *stream, unsigned flags);
  CUresult (*cuStreamDestroy)(CUstream stream);
  CUresult (*cuStreamSynchronize)(CUstream stream);
  CUresult (*cuMemAlloc)(CUdeviceptr *pointer, size_t bytes);
  CUresult (*cuMemFree)(CUdeviceptr pointer);
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr destination, const void *source,
                                size_t bytes, CUstream stream);
  CUresult (*cuMemcpyDtoHAsync)(void *destination, CUdeviceptr source,
                                size_t bytes, CUstream stream);
  /// cuModuleLoadData with options: the runtime asks for the JIT's error log.
  CUresult (*cuModuleLoadDataEx)(CUmodule *module, const void *image,
                                 unsigned optionCount, int *options,
                                 void **optionValues);
  CUresult (*cuModuleUnload)(CUmodule module);
  CUresult (*cuModuleGetFunction)(CUfunction *function, CUmodule module,
                                  const char *name);
  CUresult (*cuFuncSetAttribute)(CUfunction function, int attribute, int value);
  CUresult (*cuLaunchKernel)(CUfunction function, unsigned gridX,
                             unsigned gridY, unsigned gridZ, unsigned blockX,
                             unsigned blockY, unsigned blockZ,
                             unsigned sharedBytes, CUstream stream,
                             void **parameters, void **extra);
  CUresult (*cuStreamBeginCapture)(CUstream stream, int mode);
  CUresult (*cuStreamEndCapture)(CUstream stream, CUgraph *graph);
  CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec *exec, CUgraph graph,
                                          unsigned long long flags);
  CUresult (*cuGraphLaunch)(CUgraphExec exec, CUstream stream);
  CUresult (*cuGraphExecDestroy)(CUgraphExec exec);
  CUresult (*cuGraphDestroy)(CUgraph graph);
  /// Events order the work of moe_layer_run_device across streams and tell
  /// when buffers it queued work on may be reused.
  CUresult (*cuEventCreate)(CUevent *event, unsigned flags);
  CUresult (*cuEventRecord)(CUevent event, CUstream stream);
  CUresult (*cuEventSynchronize)(CUevent event);
  CUresult (*cuEventDestroy)(CUevent event);
  CUresult (*cuStreamWaitEvent)(CUstream stream, CUevent event, unsigned flags);
  /// Optional (CUDA 12.0 and newer drivers): null when the driver lacks it.
  /// Only folders whose layers export tensor maps need it.
  CUresult (*cuTensorMapEncodeTiled)(CUtensorMap *tensorMap, int dataType,
                                     cuuint32_t rank, void *globalAddress,
                                     const cuuint64_t *globalDim,
                                     const cuuint64_t *globalStrides,
                                     const cuuint32_t *boxDim,
                                     const cuuint32_t *elementStrides,
                                     int interleave, int swizzle,
                                     int l2Promotion, int oobFill) = nullptr;

  /// "`call` failed: CUDA_ERROR_X (the driver's description)", for `result`.
  std::string describe(const char *call, CUresult result) const;
  /// The moe_status a failed call maps to: out of memory, unsupported (this
  /// device or driver cannot run the code), format (a bad kernel image), or
  /// else a device error.
  static moe_status statusOf(CUresult result);
};

/// The driver, loaded and initialized (cuInit) once per process: the library
/// named by the environment variable MOE_CUDA_DRIVER when it is set (a test and
/// diagnostic hook), else libcuda.so.1 from the loader's search path. It stays
/// loaded until the process exits, as the CUDA runtime's does. A failure is
/// not remembered: a later call tries again. On failure returns a status
/// (MOE_ERROR_UNSUPPORTED: no driver, a symbol missing, cuInit failed) and the
/// reason in `error`.
moe_status loadDriver(const Driver *&driver, std::string &error);

} // namespace moe::runtime::cuda

#endif // MOEC_RUNTIME_CUDADRIVER_H
