// Decode attention over the cache: one block per (batch row, query head). Keys stream through
// in tiles of kTile; each warp scores keys with its lanes across D (coalesced loads, the
// dequantization fused into the load), then an online softmax (running max m and sum l)
// rescales the output accumulated from earlier tiles, as cache_attention.cpp does on the CPU.
// Not yet done: sharing one K/V read among a GQA group's query heads (each head reads its
// KV head's rows itself), split-K over long caches for small batches.
#include <cuda_fp16.h>

#include "backend/cuda/check.h"
#include "backend/cuda/kv_cache_ops.h"
#include "backend/cuda/reduce.cuh"

namespace celer::cuda {
namespace {

constexpr int kAttnThreads = 128;                     // 4 warps
constexpr int kTile = kAttnThreads;                   // keys per tile: one score per thread
constexpr int kPerThread = kMaxHeadDim / kAttnThreads;  // output dims each thread accumulates

template <KVStorage S>
__device__ __forceinline__ float load(const void* base, const float* scale, int64_t row, int64_t D, int64_t d) {
  if constexpr (S == KVStorage::F32) return static_cast<const float*>(base)[row * D + d];
  if constexpr (S == KVStorage::F16) return __half2float(static_cast<const __half*>(base)[row * D + d]);
  if constexpr (S == KVStorage::Int8) return float(static_cast<const int8_t*>(base)[row * D + d]) * scale[row];
  return 0.0f;
}

template <KVStorage S>
__global__ void decode_attention_kernel(float* out, const float* q, CacheLayer c, int64_t q_heads, int64_t length,
                                        const uint8_t* key_valid) {
  __shared__ float q_s[kMaxHeadDim];
  __shared__ float scores[kTile];
  __shared__ float scratch[32];
  const int64_t D = c.D, head = blockIdx.x, b = blockIdx.y;
  const int64_t kv_head = head / (q_heads / c.kv_heads);
  const int64_t slot_row0 = (b * c.kv_heads + kv_head) * c.max_seq;  // cache row of position 0
  const float* qh = q + (b * q_heads + head) * D;
  const float softmax_scale = 1.0f / sqrtf(float(D));
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) q_s[d] = qh[d];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  float m = -INFINITY, l = 0.0f, acc[kPerThread];
  for (int j = 0; j < kPerThread; ++j) acc[j] = 0.0f;
  __syncthreads();

  for (int64_t t0 = 0; t0 < length; t0 += kTile) {
    const int T = int(length - t0 < kTile ? length - t0 : kTile);
    for (int j = warp; j < T; j += warps) {  // a warp per key, lanes across D
      const int64_t t = t0 + j;
      float dot = 0.0f;
      for (int64_t d = lane; d < D; d += 32) dot += q_s[d] * load<S>(c.k, c.k_scale, slot_row0 + t, D, d);
      dot = warp_sum(dot);
      const bool valid = key_valid == nullptr || key_valid[b * c.max_seq + t] != 0;
      if (lane == 0) scores[j] = valid ? dot * softmax_scale : -INFINITY;
    }
    __syncthreads();
    const float s = threadIdx.x < T ? scores[threadIdx.x] : -INFINITY;
    const float tile_max = block_max(s, scratch);
    if (tile_max == -INFINITY) {  // nothing visible in this tile (uniform across the block)
      __syncthreads();
      continue;
    }
    const float new_m = fmaxf(m, tile_max);
    const float correction = expf(m - new_m);  // 0 on the first visible tile
    const float p = threadIdx.x < T ? expf(s - new_m) : 0.0f;
    const float tile_sum = block_sum(p, scratch);
    if (threadIdx.x < T) scores[threadIdx.x] = p;
    __syncthreads();
    l = l * correction + tile_sum;
    m = new_m;
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t d = threadIdx.x + int64_t(j) * blockDim.x;
      if (d >= D) break;
      float a = acc[j] * correction;
      for (int k = 0; k < T; ++k) a += scores[k] * load<S>(c.v, c.v_scale, slot_row0 + t0 + k, D, d);
      acc[j] = a;
    }
    __syncthreads();  // scores is rewritten by the next tile
  }
  float* o = out + (b * q_heads + head) * D;
  for (int j = 0; j < kPerThread; ++j) {
    const int64_t d = threadIdx.x + int64_t(j) * blockDim.x;
    if (d < D) o[d] = l > 0.0f ? acc[j] / l : 0.0f;  // l == 0: the query saw no key
  }
}

}  // namespace

void decode_attention(float* out, const float* q, const CacheLayer& c, int64_t q_heads, int64_t length,
                      const uint8_t* key_valid, cudaStream_t stream) {
  if (c.batch == 0 || q_heads == 0) return;
  const dim3 grid(unsigned(q_heads), unsigned(c.batch));
  switch (c.storage) {
    case KVStorage::F32:
      decode_attention_kernel<KVStorage::F32><<<grid, kAttnThreads, 0, stream>>>(out, q, c, q_heads, length, key_valid);
      break;
    case KVStorage::F16:
      decode_attention_kernel<KVStorage::F16><<<grid, kAttnThreads, 0, stream>>>(out, q, c, q_heads, length, key_valid);
      break;
    case KVStorage::Int8:
      decode_attention_kernel<KVStorage::Int8>
          <<<grid, kAttnThreads, 0, stream>>>(out, q, c, q_heads, length, key_valid);
      break;
  }
  check_launch("decode_attention_kernel");
}

}  // namespace celer::cuda
