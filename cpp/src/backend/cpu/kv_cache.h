// The KV cache: K (after RoPE) and V of every position a sequence has seen, per cache layer,
// batch row and KV head, stored as the version says (fp32, fp16, int8 per token, int8 KIVI).
// Sized once by allocate(); writes and reads never allocate.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "core/versions.h"

namespace celer {

class KVCache {
 public:
  // num_layers cache layers (fewer than model layers with sharing), batch rows, max_seq tokens.
  void allocate(KVStorage storage, int64_t num_layers, int64_t batch, int64_t max_seq, int64_t kv_heads,
                int64_t head_dim);
  void clear();  // forget every token (a new sequence), keep the memory

  // Stores tokens [p0, p0 + n) of every row b < batch: k and v hold rows (b * n + i) of
  // kv_heads * head_dim floats. Quantizes as the storage says (see versions.h).
  void write(int64_t layer, int64_t batch, int64_t n, int64_t p0, const float* k, const float* v);

  // K and V of positions [t0, t1) of (layer, b, head) as float rows of head_dim. Returns
  // pointers into the cache when it holds fp32, else into k_tmp / v_tmp ((t1-t0) * head_dim
  // floats each), filled with the dequantized values.
  struct Rows {
    const float* k;
    const float* v;
  };
  Rows read(int64_t layer, int64_t b, int64_t head, int64_t t0, int64_t t1, float* k_tmp, float* v_tmp) const;

  // Bytes the cache needs for `tokens` positions in `rows` batch rows, every layer (scales included).
  uint64_t bytes_for(int64_t tokens, int64_t rows) const;
  uint64_t capacity_bytes() const;                              // allocated
  int64_t length() const { return length_; }
  int64_t max_seq() const { return max_seq_; }

 private:
  int64_t slot(int64_t layer, int64_t b, int64_t head) const { return (layer * batch_ + b) * kv_heads_ + head; }
  void quantize_kivi_block(int64_t s, int64_t block);

  KVStorage storage_ = KVStorage::None;
  int64_t layers_ = 0, batch_ = 0, max_seq_ = 0, kv_heads_ = 0, D_ = 0, length_ = 0;
  Tensor k_, v_;                // (slots, max_seq, D) of f32 / f16 (uint16) / int8
  Tensor k_scale_, v_scale_;    // per token: (slots, max_seq); KIVI K: (slots, max_seq / block, D)
  Tensor k_recent_, v_recent_;  // KIVI: (slots, block, D) f32, the unfinished block
};

}  // namespace celer
