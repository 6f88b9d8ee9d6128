// KV cache writes: one block per (batch row, new token, KV head) row of D values, converted to
// the layer's storage on the way in (INT8: per-row symmetric scale, as the CPU cache does).
#include <cuda_fp16.h>

#include "backend/cuda/check.h"
#include "backend/cuda/kv_cache_ops.h"
#include "backend/cuda/quant.cuh"

namespace celer::cuda {
namespace {

template <KVStorage S>
__global__ void cache_write_kernel(CacheLayer c, const float* k, const float* v, int64_t n, int64_t p0) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;  // ((b * n + i) * kv_heads + h)
  const int64_t h = r % c.kv_heads, bi = r / c.kv_heads, i = bi % n, b = bi / n;
  const int64_t dst_row = (b * c.kv_heads + h) * c.max_seq + p0 + i;
  const float* ks = k + r * c.D;
  const float* vs = v + r * c.D;
  if constexpr (S == KVStorage::Int8) {
    int8_t* kq = static_cast<int8_t*>(c.k) + dst_row * c.D;
    int8_t* vq = static_cast<int8_t*>(c.v) + dst_row * c.D;
    const float k_scale = quantize_row_int8(ks, c.D, kq, scratch);
    const float v_scale = quantize_row_int8(vs, c.D, vq, scratch);
    if (threadIdx.x == 0) {
      c.k_scale[dst_row] = k_scale;
      c.v_scale[dst_row] = v_scale;
    }
  } else {
    for (int64_t d = threadIdx.x; d < c.D; d += blockDim.x) {
      if constexpr (S == KVStorage::F16) {
        static_cast<__half*>(c.k)[dst_row * c.D + d] = __float2half_rn(ks[d]);
        static_cast<__half*>(c.v)[dst_row * c.D + d] = __float2half_rn(vs[d]);
      } else {
        static_cast<float*>(c.k)[dst_row * c.D + d] = ks[d];
        static_cast<float*>(c.v)[dst_row * c.D + d] = vs[d];
      }
    }
  }
}

}  // namespace

void cache_write(const CacheLayer& c, const float* k, const float* v, int64_t n, int64_t p0, cudaStream_t stream) {
  const int64_t rows = c.batch * n * c.kv_heads;
  if (rows == 0) return;
  switch (c.storage) {
    case KVStorage::F32:
      cache_write_kernel<KVStorage::F32><<<unsigned(rows), kQuantThreads, 0, stream>>>(c, k, v, n, p0);
      break;
    case KVStorage::F16:
      cache_write_kernel<KVStorage::F16><<<unsigned(rows), kQuantThreads, 0, stream>>>(c, k, v, n, p0);
      break;
    case KVStorage::Int8:
      cache_write_kernel<KVStorage::Int8><<<unsigned(rows), kQuantThreads, 0, stream>>>(c, k, v, n, p0);
      break;
  }
  check_launch("cache_write_kernel");
}

}  // namespace celer::cuda
