#include "core/kv_layout.h"

#include <algorithm>

namespace celer {

KVLayout KVLayout::make(const VersionSpec& spec, int64_t layers, int64_t batch, int64_t max_seq, int64_t longest_step,
                        int64_t kv_heads, int64_t head_dim) {
  KVLayout L;
  L.spec = spec;
  L.model_layers = layers;
  L.batch = batch;
  L.max_seq = max_seq;
  L.capacity = spec.budget() > 0 ? std::min(max_seq, spec.budget() + longest_step) : max_seq;
  L.kv_heads = kv_heads;
  L.head_dim = head_dim;
  L.longest_step = longest_step;
  int64_t next = 0;
  for (int64_t l = 0; l < layers; ++l) {
    if (!spec.use_cache) L.storage_of_layer.push_back(0);  // one scratch layer, overwritten in turn
    else if (spec.shared_odd_layer(l, layers)) L.storage_of_layer.push_back(L.storage_of_layer.back());
    else L.storage_of_layer.push_back(next++);
  }
  return L;
}

int64_t KVLayout::storage_layers() const {
  return storage_of_layer.empty() ? 0 : *std::max_element(storage_of_layer.begin(), storage_of_layer.end()) + 1;
}

bool KVLayout::computes_kv(int64_t l) const {
  return !(spec.use_cache && spec.sharing == Sharing::Reuse && spec.shared_odd_layer(l, model_layers));
}

int64_t KVLayout::held(int64_t written) const {
  return spec.budget() > 0 ? std::min(written, spec.budget()) : written;
}

uint64_t KVLayout::tensor_bytes(const KVQuant& q, int64_t tokens) const {
  const uint64_t D = uint64_t(head_dim), T = uint64_t(tokens), bits = uint64_t(kv_storage_bits(q.storage));
  if (!q.quantized()) return T * D * bits / 8;
  const uint64_t R = uint64_t(spec.residual);
  const uint64_t quantized = R > 0 ? T - T % R : T, fp32 = T - quantized;
  const uint64_t per_scale = q.asymmetric() ? 8 : 4;  // scale (and minimum), float32
  uint64_t bytes = fp32 * D * 4;
  if (q.along == QuantAlong::Token) {
    const uint64_t groups = q.group == 0 || uint64_t(q.group) >= D ? 1 : D / uint64_t(q.group);
    bytes += quantized * ((D * bits + 7) / 8 + groups * per_scale);
  } else {
    const uint64_t G = uint64_t(q.group), blocks = quantized / G;
    bytes += blocks * D * ((G * bits + 7) / 8 + per_scale);
  }
  return bytes;
}

uint64_t KVLayout::bytes_for(int64_t written, int64_t rows) const {
  if (!spec.use_cache) return 0;
  const int64_t t = held(written);
  const uint64_t own = tensor_bytes(spec.key, t) + tensor_bytes(spec.value, t);
  const uint64_t norms = uint64_t(t) * 2 * 4;  // a merged pair: each layer's norm, for K and for V
  uint64_t total = 0;
  for (int64_t l = 0; l < model_layers; ++l) {
    const bool second_of_pair = l > 0 && storage_of_layer[size_t(l)] == storage_of_layer[size_t(l - 1)];
    if (second_of_pair) continue;
    const bool merged = spec.sharing == Sharing::Merge && l + 1 < model_layers &&
                        storage_of_layer[size_t(l + 1)] == storage_of_layer[size_t(l)];
    total += own + (merged ? 2 * norms : 0);
  }
  return total * uint64_t(rows) * uint64_t(kv_heads);
}

}  // namespace celer
