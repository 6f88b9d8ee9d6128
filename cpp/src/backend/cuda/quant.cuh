// The INT8 per-row quantizer as a device function, shared by quantize_int8_rows and the cache
// writes: the block quantizes one row of n values and returns its scale (bit-identical to
// backend/cpu/quant_cpu.cpp: fp32 max|x| / 127, fp32 division, rint = round half to even).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/reduce.cuh"

namespace celer::cuda {

__device__ __forceinline__ float quantize_row_int8(const float* x, int64_t n, int8_t* q, float* scratch) {
  float amax = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) amax = fmaxf(amax, fabsf(x[i]));
  amax = block_max(amax, scratch);
  const float scale = amax / 127.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float r = scale > 0.0f ? rintf(x[i] / scale) : 0.0f;
    q[i] = int8_t(fminf(127.0f, fmaxf(-127.0f, r)));
  }
  return scale;
}

constexpr int kQuantThreads = 128;  // rows are head_dim long (64..256): one small block each

}  // namespace celer::cuda
