// Attention of new queries over the KV cache, one (batch row, KV head) at a time: the keys
// are read in tiles (dequantized once per tile and shared by the query heads of the group)
// with an online softmax, so long caches stream through the CPU caches once.
#pragma once
#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "backend/cpu/kv_cache.h"

namespace celer::cpu {

// Per-thread scratch for cache_attention, sized once. Aligned like Eigen's widest packet:
// Eigen's vectorised reductions peel by address, so equally aligned buffers make every
// thread sum in the same order (results independent of which thread ran a head).
struct AttentionScratch {
  using Buffer = std::vector<float, Eigen::aligned_allocator<float>>;
  Buffer k_tile, v_tile;     // (tile, D)
  Buffer key_columns;        // (D, tile): the AVX-512 kernels' transposed keys
  Buffer scores;             // (max(n, group), tile)
  Buffer row_max, row_sum;   // (group, n): the online softmax's running state
  void reserve(int64_t n, int64_t group, int64_t D);
};

constexpr int64_t kAttentionTile = 256;

// For batch row b and KV head kv_head of model layer `layer`: the `group` query heads
// kv_head * group + g of the step's n tokens attend over the keys the cache holds (its view:
// the step's tokens last). q: rows (b * n + i) of width q_stride, head h at column h * D; out:
// the same layout. Query i sees the keys up to its own that are not padding (the cache's flags
// under eviction, else position_valid[t] for key t). A query that sees no key gets zeros.
// With H2O, the attention each key receives is added to the cache's scores.
void cache_attention(CpuKVCache& cache, int64_t layer, int64_t b, int64_t kv_head, int64_t group, int64_t D,
                     const float* q, float* out, int64_t q_stride, int64_t n, const uint8_t* position_valid,
                     AttentionScratch& scratch);

}  // namespace celer::cpu
