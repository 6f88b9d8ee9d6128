// What the machine offers: driver, devices, memory. Never throws: a machine without a driver
// or a GPU is a normal case (the reason is reported, and the CUDA tests skip with it).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace celer::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
  uint64_t total_memory = 0, free_memory = 0;  // bytes
  int memory_bus_bits = 0;
  double memory_clock_khz = 0;  // 0 when the runtime no longer reports it
};

struct Status {
  int device_count = 0;
  std::string reason;   // why there is no usable device; "" when there is one
  int runtime_version = 0;  // e.g. 13000
  int driver_version = 0;   // 0 when no driver
  std::vector<DeviceInfo> devices;
};

Status status();

// Throws CudaError("CUDA unavailable: <reason>") unless a device is usable: the first call of
// every op, so that a machine without a GPU gets an error, never a crash.
void require_device();

}  // namespace celer::cuda
