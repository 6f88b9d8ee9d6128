// The shape of a KV cache for one version and model, and its size in bytes: what every backend's
// cache stores, and the figures the memory benchmarks report (scales, minimums and the
// full-precision residual window included).
#pragma once
#include <cstdint>
#include <vector>

#include "core/versions.h"

namespace celer {

struct KVLayout {
  VersionSpec spec;
  int64_t model_layers = 0;
  int64_t batch = 0;     // batch rows
  int64_t max_seq = 0;   // positions a row can reach
  int64_t capacity = 0;  // tokens a row's cache holds at once (max_seq, or the eviction budget
                         // plus the longest step)
  int64_t kv_heads = 0, head_dim = 0;
  int64_t longest_step = 0;  // the most tokens one step appends (the prefill)
  // Model layer -> storage layer (sharing maps a pair onto one; without a cache every layer
  // uses storage 0 in turn).
  std::vector<int64_t> storage_of_layer;

  // The layout of `spec` for a model of `layers` layers; `longest_step`: the most tokens one
  // step appends (the prefill), which a cache with eviction holds on top of its budget.
  static KVLayout make(const VersionSpec& spec, int64_t layers, int64_t batch, int64_t max_seq, int64_t longest_step,
                       int64_t kv_heads, int64_t head_dim);

  int64_t storage_layers() const;
  // Whether model layer l computes and stores K/V (a Reuse pair's odd layer does not).
  bool computes_kv(int64_t l) const;
  // Tokens a row holds after `written` positions (the budget, with eviction).
  int64_t held(int64_t written) const;
  // Bytes of one storage layer's K or V for one (row, head) holding `tokens` tokens. A merged
  // pair's storage is counted without retained tokens (a cache adds those: KVCache::bytes).
  uint64_t tensor_bytes(const KVQuant& q, int64_t tokens) const;
  // Bytes for `written` positions in `rows` rows, every storage layer, K and V.
  uint64_t bytes_for(int64_t written, int64_t rows) const;
};

}  // namespace celer
