#include "backend/cpu/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/config.h"
#include "core/error.h"

namespace celer::cpu {

CpuKVCache::CpuKVCache(const KVLayout& layout) : KVCache(layout) {
  const VersionSpec& spec = layout.spec;
  const int64_t rows = layout.batch * layout.kv_heads, cap = layout.capacity, D = layout.head_dim;
  // v0 keeps one fp32 scratch layer; the others store as their spec says.
  const KVQuant key = spec.use_cache ? spec.key : KVQuant{}, value = spec.use_cache ? spec.value : KVQuant{};
  storages_.resize(size_t(layout.storage_layers()));
  for (int64_t l = layout.model_layers - 1; l >= 0; --l) storage(l).first_layer = l;  // each storage's lowest layer
  for (size_t i = 0; i < storages_.size(); ++i) {
    Storage& s = storages_[i];
    const int64_t l = s.first_layer;
    const bool merged = spec.use_cache && spec.sharing == Sharing::Merge && l + 1 < layout.model_layers &&
                        layout.storage_of_layer[size_t(l + 1)] == int64_t(i);
    if (merged) {
      s.mk = std::make_unique<MergedStore>(key.storage, rows, cap, D, layout.longest_step, spec.merge_angle);
      s.mv = std::make_unique<MergedStore>(value.storage, rows, cap, D, layout.longest_step, spec.merge_angle);
    } else {
      s.k = std::make_unique<KVStore>(key, rows, cap, D, spec.residual);
      s.v = std::make_unique<KVStore>(value, rows, cap, D, spec.residual);
    }
    if (evicts()) {
      s.positions = Tensor::zeros(DType::I32, {rows, cap});
      s.valid = Tensor::zeros(DType::U8, {rows, cap});
      s.scores = Tensor::zeros(DType::F32, {rows, cap});
    }
  }
  keep_.reserve(size_t(cap));
}

void CpuKVCache::clear() {
  KVCache::clear();
  for (Storage& s : storages_) {
    s.merged_upto = 0;
    s.count = 0;
    if (s.mk) s.mk->clear(), s.mv->clear();
  }
}

void CpuKVCache::write(int64_t layer, int64_t batch, int64_t n, int64_t p0, const float* k, const float* v,
                       const uint8_t* valid, int64_t valid_stride) {
  const int64_t H = layout_.kv_heads, D = layout_.head_dim, width = H * D;
  if (p0 + n > layout_.max_seq)
    throw ValueError("KV cache overflow: position " + std::to_string(p0 + n) + " > capacity " +
                     std::to_string(layout_.max_seq));
  Storage& s = storage(layer);
  if (evicts() && s.count + n > layout_.capacity)
    throw ValueError("KV cache overflow: " + std::to_string(s.count + n) + " tokens > capacity " +
                     std::to_string(layout_.capacity));
  const bool second = s.mk && layer != s.first_layer;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t r = row(b, h);
      for (int64_t i = 0; i < n; ++i) {
        const float* ks = k + (b * n + i) * width + h * D;
        const float* vs = v + (b * n + i) * width + h * D;
        if (s.mk) {  // a merged pair: the first layer's tokens wait for the second's
          if (second) s.mk->merge(r, p0 + i, i, ks), s.mv->merge(r, p0 + i, i, vs);
          else s.mk->hold_first(r, i, ks), s.mv->hold_first(r, i, vs);
          continue;
        }
        const int64_t t = evicts() ? s.count + i : p0 + i;
        s.k->write(r, t, ks);
        s.v->write(r, t, vs);
        if (evicts()) {
          s.positions.as<int32_t>()[r * layout_.capacity + t] = int32_t(p0 + i);
          s.valid.as<uint8_t>()[r * layout_.capacity + t] = valid[b * valid_stride + p0 + i];
          s.scores.f32()[r * layout_.capacity + t] = 0.0f;
        }
      }
    }
  if (evicts()) s.count += n;
  if (second) s.merged_upto = p0 + n;
  step_p0_ = p0;
  length_ = std::max(length_, p0 + n);
}

CpuKVCache::View CpuKVCache::view(int64_t layer, int64_t b, int64_t head) {
  if (!evicts()) return {length_, nullptr, nullptr};
  Storage& s = storage(layer);
  const int64_t at = row(b, head) * layout_.capacity;
  float* scores = layout_.spec.eviction == Eviction::HeavyHitters ? s.scores.f32() + at : nullptr;
  return {s.count, s.valid.as<uint8_t>() + at, scores};
}

int64_t CpuKVCache::view_count(int64_t layer) const { return evicts() ? storage(layer).count : length_; }

CpuKVCache::Rows CpuKVCache::read(int64_t layer, int64_t b, int64_t head, int64_t t0, int64_t t1, float* k_tmp,
                                  float* v_tmp) const {
  const Storage& s = storage(layer);
  const int64_t r = row(b, head);
  if (s.mk) {
    const int64_t which = layer == s.first_layer ? 0 : 1;
    s.mk->read(r, which, t0, t1, s.merged_upto, step_p0_, k_tmp);
    s.mv->read(r, which, t0, t1, s.merged_upto, step_p0_, v_tmp);
    return {k_tmp, v_tmp};
  }
  const int64_t written = evicts() ? s.count : length_;
  Rows rows{s.k->f32_rows(r, t0), s.v->f32_rows(r, t0)};
  if (rows.k == nullptr) s.k->read(r, t0, t1, written, k_tmp), rows.k = k_tmp;
  if (rows.v == nullptr) s.v->read(r, t0, t1, written, v_tmp), rows.v = v_tmp;
  return rows;
}

void CpuKVCache::end_layer(int64_t layer, int64_t batch) {
  Storage& s = storage(layer);
  if (evicts() && s.count > layout_.spec.budget()) evict(s, batch);
}

void CpuKVCache::evict(Storage& s, int64_t batch) {
  const VersionSpec& spec = layout_.spec;
  const int64_t cap = layout_.capacity, count = s.count, budget = spec.budget(), recent = count - spec.window;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < layout_.kv_heads; ++h) {
      const int64_t r = row(b, h);
      keep_.clear();
      if (spec.eviction == Eviction::Window) {  // the sinks, then the newest window
        for (int64_t t = 0; t < spec.sinks; ++t) keep_.push_back(t);
      } else {  // the heavy hitters among the older tokens: most attention received, older first on ties
        const float* score = s.scores.f32() + r * cap;
        for (int64_t t = 0; t < recent; ++t) keep_.push_back(t);
        std::sort(keep_.begin(), keep_.end(),  // (std::stable_sort would allocate)
                  [&](int64_t a, int64_t c) { return score[a] != score[c] ? score[a] > score[c] : a < c; });
        keep_.resize(size_t(spec.heavy));
        std::sort(keep_.begin(), keep_.end());
      }
      for (int64_t t = recent; t < count; ++t) keep_.push_back(t);
      for (int64_t j = 0; j < int64_t(keep_.size()); ++j) {  // compaction, in position order
        const int64_t from = keep_[size_t(j)];
        if (from == j) continue;
        s.k->move(r, from, j);
        s.v->move(r, from, j);
        s.positions.as<int32_t>()[r * cap + j] = s.positions.as<int32_t>()[r * cap + from];
        s.valid.as<uint8_t>()[r * cap + j] = s.valid.as<uint8_t>()[r * cap + from];
        s.scores.f32()[r * cap + j] = s.scores.f32()[r * cap + from];
      }
    }
  s.count = budget;
}

uint64_t CpuKVCache::bytes(int64_t rows) const {
  uint64_t total = layout_.bytes_for(length_, rows);
  const uint64_t D = uint64_t(layout_.head_dim);
  for (const Storage& s : storages_)
    if (s.mk) {  // a retained token keeps its second vector as well
      const uint64_t k = layout_.spec.key.storage == KVStorage::F32 ? 4 : 2, v = layout_.spec.value.storage == KVStorage::F32 ? 4 : 2;
      total += uint64_t(s.mk->retained()) * D * k + uint64_t(s.mv->retained()) * D * v;
    }
  return total;
}

uint64_t CpuKVCache::capacity_bytes() const {
  uint64_t total = 0;
  for (const Storage& s : storages_) {
    for (const KVStore* st : {s.k.get(), s.v.get()})
      if (st) total += st->capacity_bytes();
    for (const MergedStore* st : {s.mk.get(), s.mv.get()})
      if (st) total += st->capacity_bytes();
    for (const Tensor* t : {&s.positions, &s.valid, &s.scores})
      if (!t->empty()) total += t->nbytes();
  }
  return total;
}

}  // namespace celer::cpu
