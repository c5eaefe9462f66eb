//===- CudaDriver.cpp - the CUDA driver API, loaded at run time -----------===//

#include "runtime/CudaDriver.h"

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>

#include <dlfcn.h>

namespace moe::runtime::cuda {

std::string Driver::describe(const char *call, CUresult result) const {
  const char *name = nullptr, *text = nullptr;
  // Both queries fail for codes this driver does not know; say the number.
  if (cuGetErrorName(result, &name) != CUDA_SUCCESS || !name)
    name = nullptr;
  if (cuGetErrorString(result, &text) != CUDA_SUCCESS || !text)
    text = nullptr;
  std::string message = std::string(call) + " failed: ";
  message += name ? name : "CUDA error " + std::to_string(result);
  if (text)
    message += std::string(" (") + text + ")";
  return message;
}

moe_status Driver::statusOf(CUresult result) {
  switch (result) {
  case CUDA_ERROR_OUT_OF_MEMORY:
    return MOE_ERROR_OUT_OF_MEMORY;
  case CUDA_ERROR_INSUFFICIENT_DRIVER:
  case CUDA_ERROR_NO_DEVICE:
  case CUDA_ERROR_INVALID_DEVICE:
  case CUDA_ERROR_NO_BINARY_FOR_GPU:
  case CUDA_ERROR_JIT_COMPILER_NOT_FOUND:
  case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
  case CUDA_ERROR_NOT_SUPPORTED:
  case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
  case CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
    return MOE_ERROR_UNSUPPORTED;
  case CUDA_ERROR_INVALID_IMAGE:
  case CUDA_ERROR_INVALID_PTX:
  case CUDA_ERROR_NOT_FOUND:
    return MOE_ERROR_FORMAT;
  default:
    return MOE_ERROR_DEVICE;
  }
}

namespace {

/// Closes a dlopen handle unless released: a library that turned out not to
/// be a usable driver is not kept.
struct LibraryHandle {
  void *handle = nullptr;
  ~LibraryHandle() {
    if (handle)
      ::dlclose(handle);
  }
};

/// Resolves every entry point of `driver` from `library`.
moe_status resolve(void *library, Driver &driver, std::string &error) {
  bool ok = true;
  // An optional entry point that is missing stays null.
  auto bind = [&](auto &function, const char *symbol, bool optional = false) {
    if (!ok)
      return;
    ::dlerror();
    void *address = ::dlsym(library, symbol);
    const char *why = ::dlerror();
    if ((!address || why) && optional) {
      function = nullptr;
      return;
    }
    if (!address || why) {
      error = "the CUDA driver " + driver.path + " has no symbol '" + symbol +
              "'" + (why ? std::string(": ") + why : std::string()) +
              " (too old a driver?)";
      ok = false;
      return;
    }
    function =
        reinterpret_cast<std::remove_reference_t<decltype(function)>>(address);
  };
  // The versioned names are what cuda.h's macros call: the unversioned symbols
  // are the CUDA 3.x ABI with 32-bit sizes and must not be used.
  bind(driver.cuInit, "cuInit");
  bind(driver.cuGetErrorName, "cuGetErrorName");
  bind(driver.cuGetErrorString, "cuGetErrorString");
  bind(driver.cuDeviceGetCount, "cuDeviceGetCount");
  bind(driver.cuDeviceGet, "cuDeviceGet");
  bind(driver.cuDeviceGetName, "cuDeviceGetName");
  bind(driver.cuDeviceGetAttribute, "cuDeviceGetAttribute");
  bind(driver.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  bind(driver.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  bind(driver.cuCtxPushCurrent, "cuCtxPushCurrent_v2");
  bind(driver.cuCtxPopCurrent, "cuCtxPopCurrent_v2");
  bind(driver.cuStreamCreate, "cuStreamCreate");
  bind(driver.cuStreamDestroy, "cuStreamDestroy_v2");
  bind(driver.cuStreamSynchronize, "cuStreamSynchronize");
  bind(driver.cuMemAlloc, "cuMemAlloc_v2");
  bind(driver.cuMemFree, "cuMemFree_v2");
  bind(driver.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  bind(driver.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
  bind(driver.cuModuleLoadDataEx, "cuModuleLoadDataEx");
  bind(driver.cuModuleUnload, "cuModuleUnload");
  bind(driver.cuModuleGetFunction, "cuModuleGetFunction");
  bind(driver.cuFuncSetAttribute, "cuFuncSetAttribute");
  bind(driver.cuLaunchKernel, "cuLaunchKernel");
  bind(driver.cuStreamBeginCapture, "cuStreamBeginCapture_v2");
  bind(driver.cuStreamEndCapture, "cuStreamEndCapture");
  bind(driver.cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags");
  bind(driver.cuGraphLaunch, "cuGraphLaunch");
  bind(driver.cuGraphExecDestroy, "cuGraphExecDestroy");
  bind(driver.cuGraphDestroy, "cuGraphDestroy");
  bind(driver.cuEventCreate, "cuEventCreate");
  bind(driver.cuEventRecord, "cuEventRecord");
  bind(driver.cuEventSynchronize, "cuEventSynchronize");
  bind(driver.cuEventDestroy, "cuEventDestroy_v2");
  bind(driver.cuStreamWaitEvent, "cuStreamWaitEvent");
  // Tensor maps came with CUDA 12.0 (Hopper); a layer that needs them is
  // refused when its model opens on a driver without them.
  bind(driver.cuTensorMapEncodeTiled, "cuTensorMapEncodeTiled",
       /*optional=*/true);
  return ok ? MOE_OK : MOE_ERROR_UNSUPPORTED;
}

} // namespace

moe_status loadDriver(const Driver *&driver, std::string &error) {
  driver = nullptr;
  // Drivers loaded so far, by path; never unloaded (libcuda is not meant to be
  // unloaded while the process lives, and models of any age point into it).
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<Driver>> loaded;

  const char *override = std::getenv("MOE_CUDA_DRIVER");
  std::string path = override && *override ? override : "libcuda.so.1";
  std::string named =
      path + (override && *override ? " (from MOE_CUDA_DRIVER)" : "");

  std::lock_guard<std::mutex> lock(mutex);
  auto found = loaded.find(path);
  if (found != loaded.end()) {
    driver = found->second.get();
    return MOE_OK;
  }

  ::dlerror();
  LibraryHandle library;
  library.handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library.handle) {
    const char *why = ::dlerror();
    error = "cannot load the CUDA driver " + named + ": " +
            (why ? why : "unknown error") +
            (override && *override ? "" : " (is the NVIDIA driver installed?)");
    return MOE_ERROR_UNSUPPORTED;
  }
  auto loading = std::make_unique<Driver>();
  loading->path = named;
  if (moe_status status = resolve(library.handle, *loading, error))
    return status;
  if (CUresult result = loading->cuInit(0)) {
    error =
        "the CUDA driver " + named + ": " + loading->describe("cuInit", result);
    return MOE_ERROR_UNSUPPORTED;
  }
  library.handle = nullptr; // kept for the life of the process
  driver = loading.get();
  loaded.emplace(path, std::move(loading));
  return MOE_OK;
}

} // namespace moe::runtime::cuda
