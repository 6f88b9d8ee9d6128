// The CPU backend's KV cache (engine/kv_cache.h): host memory, one KVStore each for K and V of
// every storage layer (a MergedStore for a MiniCache pair), and, with eviction, each (row, head)'s
// kept tokens: their positions, padding flags and (H2O) the attention they received. The CPU
// attention (attention.h) reads it through read() and view().
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cpu/kv_store.h"
#include "core/tensor.h"
#include "engine/kv_cache.h"

namespace celer::cpu {

class CpuKVCache final : public KVCache {
 public:
  explicit CpuKVCache(const KVLayout& layout);  // allocates everything (check_allocation first)

  void clear() override;
  void write(int64_t layer, int64_t batch, int64_t n, int64_t p0, const float* k, const float* v,
             const uint8_t* valid, int64_t valid_stride) override;
  void end_layer(int64_t layer, int64_t batch) override;
  uint64_t bytes(int64_t rows) const override;
  uint64_t capacity_bytes() const override;

  // What attention over (model layer, row b, KV head) sees: `count` tokens, in position order;
  // `valid` their padding flags (null: look positions up in the caller's mask, token t being
  // position t); `scores` where the attention each receives is summed (H2O; else null).
  struct View {
    int64_t count;
    const uint8_t* valid;
    float* scores;
  };
  View view(int64_t layer, int64_t b, int64_t head);
  int64_t view_count(int64_t layer) const;  // view().count

  // K and V of tokens [t0, t1) of the view, as float rows of head_dim: pointers into the cache
  // for fp32 storage, else into k_tmp / v_tmp ((t1 - t0) * head_dim floats each).
  struct Rows {
    const float* k;
    const float* v;
  };
  Rows read(int64_t layer, int64_t b, int64_t head, int64_t t0, int64_t t1, float* k_tmp, float* v_tmp) const;

 private:
  struct Storage {
    std::unique_ptr<KVStore> k, v;            // unmerged layers
    std::unique_ptr<MergedStore> mk, mv;      // a merged pair
    int64_t merged_upto = 0;                  // positions the pair's second layer has merged
    int64_t count = 0;                        // eviction: tokens each (row, head) holds
    int64_t first_layer = 0;                  // the model layer that writes first
    Tensor positions, valid, scores;          // eviction: (rows, capacity) int32 / uint8 / float32
  };
  int64_t row(int64_t b, int64_t head) const { return b * layout_.kv_heads + head; }
  const Storage& storage(int64_t layer) const { return storages_[size_t(layout_.storage_of_layer[size_t(layer)])]; }
  Storage& storage(int64_t layer) { return storages_[size_t(layout_.storage_of_layer[size_t(layer)])]; }
  bool evicts() const { return layout_.spec.budget() > 0; }
  void evict(Storage& s, int64_t batch);

  std::vector<Storage> storages_;
  int64_t step_p0_ = 0;  // the current step's first position
  std::vector<int64_t> keep_;  // eviction's scratch (capacity)
};

}  // namespace celer::cpu
