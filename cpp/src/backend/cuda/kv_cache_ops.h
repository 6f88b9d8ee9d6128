// The KV cache on the GPU: layout, writes (with INT8 / fp16 conversion) and decode attention
// over it with the dequantization fused into the key and value loads.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/versions.h"

namespace celer::cuda {

// A cache layer stores K and V as core/versions.h's KVStorage says; these kernels cover the
// per-token storages (F32, F16, Int8 per token; the per-channel, 4-bit and 2-bit storages, eviction and merging are not here yet).

// One cache layer: k, v are (batch, kv_heads, max_seq, D) of float / half bits / int8;
// k_scale, v_scale (batch, kv_heads, max_seq) fp32 for Int8, else null.
struct CacheLayer {
  KVStorage storage = KVStorage::F32;
  void* k = nullptr;
  void* v = nullptr;
  float* k_scale = nullptr;
  float* v_scale = nullptr;
  int64_t batch = 0, kv_heads = 0, max_seq = 0, D = 0;
};

// Stores tokens [p0, p0 + n) of every row b < batch: k and v hold rows (b * n + i) of
// kv_heads * D floats (the CPU KVCache::write layout).
void cache_write(const CacheLayer& cache, const float* k, const float* v, int64_t n, int64_t p0, cudaStream_t stream);

// Decode attention, one query token per batch row: q and out are (batch, q_heads * D); the
// query at position length - 1 attends over keys [0, length) with key_valid[b * max_seq + t] != 0
// (key_valid null: all valid). GQA: query head h reads KV head h / (q_heads / kv_heads). A query
// that sees no key gets zeros. D <= kMaxHeadDim.
constexpr int64_t kMaxHeadDim = 256;
void decode_attention(float* out, const float* q, const CacheLayer& cache, int64_t q_heads, int64_t length,
                      const uint8_t* key_valid, cudaStream_t stream);

}  // namespace celer::cuda
