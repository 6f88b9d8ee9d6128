// The KV cache as the engine sees it: K (after RoPE) and V of the tokens a sequence keeps, per
// model layer (mapped onto storage layers by the version's sharing), batch row and KV head,
// stored as the version says (core/versions.h). Each backend implements it in its own memory
// (backend/cpu/kv_cache.h) and its attention reads it. Sized once, when made; a step's writes,
// and its eviction, never allocate.
#pragma once
#include <cstdint>

#include "core/kv_layout.h"

namespace celer {

class KVCache {
 public:
  explicit KVCache(const KVLayout& layout) : layout_(layout) {}
  virtual ~KVCache() = default;
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  const KVLayout& layout() const { return layout_; }
  int64_t length() const { return length_; }  // positions written so far
  virtual void clear() { length_ = 0; }       // a new sequence; the memory stays
  // Whether model layer l computes and writes K/V (a Reuse pair's odd layer reads its partner's).
  bool computes_kv(int64_t layer) const { return layout_.computes_kv(layer); }

  // Stores tokens [p0, p0 + n) of every row b < batch for model layer `layer`: k and v hold rows
  // (b * n + i) of kv_heads * head_dim floats (backend memory); valid[b * valid_stride + p]
  // (host) says which positions are real tokens (0: padding). Quantizes as the version says.
  virtual void write(int64_t layer, int64_t batch, int64_t n, int64_t p0, const float* k, const float* v,
                     const uint8_t* valid, int64_t valid_stride) = 0;
  // After `layer` attended in this step: a cache with eviction drops the tokens its policy
  // gives up, down to its budget.
  virtual void end_layer(int64_t layer, int64_t batch) = 0;

  // Bytes the cache holds now for `rows` rows (scales, residual windows and retained tokens
  // included); bytes allocated.
  virtual uint64_t bytes(int64_t rows) const = 0;
  virtual uint64_t capacity_bytes() const = 0;

 protected:
  KVLayout layout_;
  int64_t length_ = 0;
};

}  // namespace celer
