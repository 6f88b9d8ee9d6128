#include "backend/cuda/device.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include "backend/cuda/check.h"

namespace celer::cuda {
namespace {

// The static runtime reports a missing driver as "insufficient driver"; tell the two apart.
bool driver_library_present() {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (!lib) lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  return lib != nullptr;  // kept open: the runtime loads it anyway
}

}  // namespace

Status status() {
  Status st;
  cudaRuntimeGetVersion(&st.runtime_version);
  if (!driver_library_present()) {
    st.reason = "no CUDA driver (libcuda.so.1 not found)";
    return st;
  }
  cudaDriverGetVersion(&st.driver_version);
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    if (e == cudaErrorNoDevice)
      st.reason = "0 CUDA devices";
    else if (e == cudaErrorInsufficientDriver)
      st.reason = "CUDA driver too old: it supports CUDA " + std::to_string(st.driver_version / 1000) + "." +
                  std::to_string(st.driver_version % 1000 / 10) + ", this build's runtime is " +
                  std::to_string(st.runtime_version / 1000) + "." + std::to_string(st.runtime_version % 1000 / 10);
    else
      st.reason = std::string("no usable CUDA device: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    return st;
  }
  if (count == 0) {
    st.reason = "0 CUDA devices";
    return st;
  }
  st.device_count = count;
  for (int i = 0; i < count; ++i) {
    DeviceInfo d;
    d.index = i;
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) == cudaSuccess) {
      d.name = p.name;
      d.major = p.major;
      d.minor = p.minor;
      d.multiprocessors = p.multiProcessorCount;
      d.total_memory = p.totalGlobalMem;
      d.memory_bus_bits = p.memoryBusWidth;
    }
    int clock = 0;
    if (cudaDeviceGetAttribute(&clock, cudaDevAttrMemoryClockRate, i) == cudaSuccess) d.memory_clock_khz = clock;
    int current = 0;
    size_t free_b = 0, total_b = 0;
    if (cudaGetDevice(&current) == cudaSuccess && cudaSetDevice(i) == cudaSuccess &&
        cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      d.free_memory = free_b;
      d.total_memory = total_b;
    }
    cudaSetDevice(current);
    cudaGetLastError();
    st.devices.push_back(d);
  }
  return st;
}

void require_device() {
  static const Status st = status();  // the device list does not change within a process
  if (st.device_count == 0) throw CudaError("CUDA unavailable: " + st.reason);
}

}  // namespace celer::cuda
