// The KV cache as the engine sees it: K (after RoPE) and V of every position a sequence has
// seen, per cache layer, batch row and KV head, in the storage its layout names. Each backend
// implements it in its own memory (backend/cpu/kv_cache.h); the attention of the same backend
// reads it. Sized once, when made; writes never allocate.
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
  void clear() { length_ = 0; }                // a new sequence; the memory stays

  // Stores tokens [p0, p0 + n) of every row b < batch: k and v hold rows (b * n + i) of
  // kv_heads * head_dim floats (backend memory). Quantizes as the storage says (versions.h).
  virtual void write(int64_t layer, int64_t batch, int64_t n, int64_t p0, const float* k, const float* v) = 0;

  uint64_t bytes_for(int64_t tokens, int64_t rows) const { return layout_.bytes_for(tokens, rows); }
  virtual uint64_t capacity_bytes() const = 0;  // allocated

 protected:
  KVLayout layout_;
  int64_t length_ = 0;
};

}  // namespace celer
