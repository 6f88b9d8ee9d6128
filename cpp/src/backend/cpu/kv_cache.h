// The CPU backend's KV cache: K and V in host memory, stored as the layout's storage says
// (fp32, fp16, int8 per token, int8 KIVI), read back as float rows by the CPU attention.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "engine/kv_cache.h"

namespace celer::cpu {

class CpuKVCache final : public KVCache {
 public:
  explicit CpuKVCache(const KVLayout& layout);  // allocates everything (check_allocation first)

  void write(int64_t layer, int64_t batch, int64_t n, int64_t p0, const float* k, const float* v) override;

  // K and V of positions [t0, t1) of (layer, b, head) as float rows of head_dim. Returns
  // pointers into the cache when it holds fp32, else into k_tmp / v_tmp ((t1-t0) * head_dim
  // floats each), filled with the dequantized values.
  struct Rows {
    const float* k;
    const float* v;
  };
  Rows read(int64_t layer, int64_t b, int64_t head, int64_t t0, int64_t t1, float* k_tmp, float* v_tmp) const;

  uint64_t capacity_bytes() const override;

 private:
  int64_t slot(int64_t layer, int64_t b, int64_t head) const {
    return (layer * layout_.batch + b) * layout_.kv_heads + head;
  }
  void quantize_kivi_block(int64_t s, int64_t block);

  Tensor k_, v_;                // (slots, max_seq, D) of f32 / f16 (uint16) / int8
  Tensor k_scale_, v_scale_;    // per token: (slots, max_seq); KIVI K: (slots, max_seq / block, D)
  Tensor k_recent_, v_recent_;  // KIVI: (slots, block, D) f32, the unfinished block
};

}  // namespace celer::cpu
