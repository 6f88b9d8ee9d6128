#include "core/kv_layout.h"

namespace celer {

uint64_t KVLayout::bytes_for(int64_t tokens, int64_t rows) const {
  const uint64_t slots = uint64_t(layers * rows * kv_heads), D = uint64_t(head_dim), T = uint64_t(tokens);
  switch (storage) {
    case KVStorage::None: return 0;
    case KVStorage::F32: return slots * T * D * 4 * 2;
    case KVStorage::F16: return slots * T * D * 2 * 2;
    case KVStorage::Int8Token: return slots * T * (D + 4) * 2;  // int8 values + a float scale per token
    case KVStorage::Int8Channel: {  // full blocks quantized, the unfinished one in fp32
      const uint64_t G = kKiviBlock, blocks = T / G, recent = T % G;
      return slots * (blocks * (G * D + D * 4) + blocks * G * (D + 4) + recent * D * 4 * 2);
    }
  }
  return 0;
}

}  // namespace celer
