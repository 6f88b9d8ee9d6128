// The shape of a KV cache and its exact size: what every backend's cache stores, and the bytes
// the memory benchmarks report (scales and full-precision windows included).
#pragma once
#include <cstdint>

#include "core/versions.h"

namespace celer {

struct KVLayout {
  KVStorage storage = KVStorage::None;
  int64_t layers = 0;   // cache layers (fewer than model layers with sharing)
  int64_t batch = 0;    // batch rows
  int64_t max_seq = 0;  // positions per row
  int64_t kv_heads = 0, head_dim = 0;

  // Bytes the cache needs for `tokens` positions in `rows` batch rows, every layer.
  uint64_t bytes_for(int64_t tokens, int64_t rows) const;
};

}  // namespace celer
