// Device memory with RAII: one cudaMalloc per buffer, freed by the destructor. A process-wide
// counter of the bytes held feeds VRAM accounting (allocated_bytes()).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "backend/cuda/check.h"

namespace celer::cuda {

inline std::atomic<int64_t> g_allocated_bytes{0};
inline int64_t allocated_bytes() { return g_allocated_bytes.load(); }

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) {
    if (count == 0) return;
    void* p = nullptr;
    CELER_CUDA_CHECK(cudaMalloc(&p, count * sizeof(T)));
    ptr_ = static_cast<T*>(p);
    count_ = count;
    g_allocated_bytes += int64_t(bytes());
  }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }

  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

  void upload(const T* host, size_t count) {
    if (count > count_) throw CudaError("DeviceBuffer::upload: more elements than the buffer holds");
    if (count) CELER_CUDA_CHECK(cudaMemcpy(ptr_, host, count * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host, size_t count) const {
    if (count > count_) throw CudaError("DeviceBuffer::download: more elements than the buffer holds");
    if (count) CELER_CUDA_CHECK(cudaMemcpy(host, ptr_, count * sizeof(T), cudaMemcpyDeviceToHost));
  }

 private:
  void release() noexcept {
    if (!ptr_) return;
    cudaFree(ptr_);  // no throw from a destructor; a failure here means the context is gone
    g_allocated_bytes -= int64_t(bytes());
    ptr_ = nullptr;
    count_ = 0;
  }
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

// Timing on the GPU's clock: an event pair around the work, read after synchronizing.
class EventTimer {
 public:
  EventTimer() {
    CELER_CUDA_CHECK(cudaEventCreate(&start_));
    try {
      CELER_CUDA_CHECK(cudaEventCreate(&stop_));
    } catch (...) {
      cudaEventDestroy(start_);
      throw;
    }
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start(cudaStream_t s = nullptr) { CELER_CUDA_CHECK(cudaEventRecord(start_, s)); }
  // Seconds between start() and now on stream s (waits for the work to finish).
  double stop(cudaStream_t s = nullptr) {
    CELER_CUDA_CHECK(cudaEventRecord(stop_, s));
    CELER_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0;
    CELER_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return ms * 1e-3;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace celer::cuda
