#include "backend/cpu/quiet_intrinsics.h"
#include "backend/cpu/attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/simd.h"

namespace celer::cpu {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::OuterStride<>;

namespace {
constexpr int64_t kDecodeKeyChunk = 2 * kAttentionKeyBlock;  // keys transposed at a time when decoding

// Our own kernels at this SIMD level for this head_dim, or null: Eigen's products then.
const AttentionKernels* attention_kernels(int64_t D) {
  static constexpr AttentionKernels avx512{transpose_keys_avx512, attention_scores_avx512, softmax_tile_row_avx512,
                                           attention_values_avx512};
  static constexpr AttentionKernels avx2{transpose_keys_avx2, attention_scores_avx2, softmax_tile_row_avx2,
                                         attention_values_avx2};
  switch (simd_level()) {
    case SimdLevel::Avx512: return D % 16 == 0 ? &avx512 : nullptr;
    case SimdLevel::Avx2: return D % 8 == 0 ? &avx2 : nullptr;
    default: return nullptr;
  }
}
}  // namespace

void AttentionScratch::reserve(int64_t n, int64_t group, int64_t D) {
  k_tile.resize(size_t(kAttentionTile * D));
  v_tile.resize(size_t(kAttentionTile * D));
  key_columns.resize(size_t(D * kAttentionTile));
  scores.resize(size_t(std::max(n, group) * kAttentionTile));
  row_max.resize(size_t(group * n));
  row_sum.resize(size_t(group * n));
}

namespace {
// H2O's statistic: each key's attention probability, summed over the step's queries and the
// group's query heads, added to scores[t]. A second pass over the keys, with each row's final
// softmax max and sum from the first (row_max, row_sum): the probabilities are exact, not the
// online softmax's partial ones.
void accumulate_attention(const CpuKVCache& cache, int64_t layer, int64_t b, int64_t kv_head, int64_t group,
                          int64_t D, const float* q, int64_t q_stride, int64_t n, const uint8_t* key_valid,
                          AttentionScratch& s, float* scores) {
  const float scale = 1.0f / std::sqrt(float(D));
  const int64_t keys = cache.view_count(layer), p0 = keys - n;
  const bool decode = n == 1;
  const int64_t blocks = decode ? 1 : group, rows = decode ? group : n, stride = decode ? D : q_stride;
  for (int64_t t0 = 0; t0 < keys; t0 += kAttentionTile) {
    const int64_t t1 = std::min(keys, t0 + kAttentionTile);
    const CpuKVCache::Rows kv = cache.read(layer, b, kv_head, t0, t1, s.k_tile.data(), s.v_tile.data());
    for (int64_t blk = 0; blk < blocks; ++blk)
      for (int64_t i = 0; i < rows; ++i) {
        const float m = s.row_max[size_t(blk * rows + i)], l = s.row_sum[size_t(blk * rows + i)];
        if (!(l > 0.0f)) continue;
        const float* qi = q + b * n * q_stride + (kv_head * group + blk) * D + i * stride;
        const int64_t last = std::min(t1, p0 + (decode ? 0 : i) + 1);  // causal
        for (int64_t t = t0; t < last; ++t) {
          if (!key_valid[t]) continue;
          const float* k = kv.k + (t - t0) * D;
          float dot = 0.0f;
          for (int64_t d = 0; d < D; ++d) dot += qi[d] * k[d];
          scores[t] += std::exp(dot * scale - m) / l;
        }
      }
  }
}
}  // namespace

void cache_attention(CpuKVCache& cache, int64_t layer, int64_t b, int64_t kv_head, int64_t group, int64_t D,
                     const float* q, float* out, int64_t q_stride, int64_t n, const uint8_t* position_valid,
                     AttentionScratch& s) {
  const float scale = 1.0f / std::sqrt(float(D));
  // The keys in the cache's order (positions ascending): the step's n tokens are the last n, so
  // query i sees keys [0, p0 + i] with p0 = keys - n (the position of query 0 without eviction).
  const CpuKVCache::View view = cache.view(layer, b, kv_head);
  const int64_t keys = view.count, p0 = keys - n;
  const uint8_t* key_valid = view.valid != nullptr ? view.valid : position_valid;
  // Query rows in blocks that each make one matrix product per tile. Decoding (n = 1), the
  // group's heads are adjacent in q: one block of `group` rows, all at position p0. Otherwise
  // one block per head g: its n rows, row i at position p0 + i.
  const bool decode = n == 1;
  // At the avx512 and avx2 levels our own kernels run the two products (attention_kernels.h).
  const AttentionKernels* kernels = attention_kernels(D);
  const int64_t blocks = decode ? 1 : group, rows = decode ? group : n, stride = decode ? D : q_stride;
  auto offset = [&](int64_t blk) { return b * n * q_stride + (kv_head * group + blk) * D; };
  auto q_rows = [&](int64_t blk) { return Eigen::Map<const RowMat, 0, Strided>(q + offset(blk), rows, D, Strided(stride)); };
  auto out_rows = [&](int64_t blk) { return Eigen::Map<RowMat, 0, Strided>(out + offset(blk), rows, D, Strided(stride)); };
  for (int64_t blk = 0; blk < blocks; ++blk) out_rows(blk).setZero();
  std::fill(s.row_max.begin(), s.row_max.begin() + group * n, -INFINITY);
  std::fill(s.row_sum.begin(), s.row_sum.begin() + group * n, 0.0f);

  for (int64_t t0 = 0; t0 < keys; t0 += kAttentionTile) {
    const int64_t t1 = std::min(keys, t0 + kAttentionTile), T = t1 - t0;
    // One dequantization per tile, shared by the group's query heads.
    const CpuKVCache::Rows kv = cache.read(layer, b, kv_head, t0, t1, s.k_tile.data(), s.v_tile.data());
    Eigen::Map<const RowMat> K(kv.k, T, D), V(kv.v, T, D);
    const bool padded = std::memchr(key_valid + t0, 0, size_t(T)) != nullptr;  // keys to mask out
    // Causal: a row at position p sees keys t <= p, so prefill rows before `first` see none
    // of this tile.
    const int64_t first = decode ? 0 : std::max<int64_t>(0, t0 - p0), live = rows - first;
    // Live row i sees the tile's keys t < i + causal (decoding: all of them).
    const int64_t causal = decode ? T : p0 + first - t0 + 1;
    Eigen::Map<RowMat> S(s.scores.data(), live, T);
    // Prefill: the tile's keys as columns once, for every head of the group. Decoding makes one
    // scores call per tile: 32 keys at a time, so the columns stay in L1.
    if (kernels && !decode) kernels->transpose_keys(kv.k, T, D, s.key_columns.data());
    for (int64_t blk = 0; blk < blocks; ++blk) {
      auto O = out_rows(blk).bottomRows(live);
      float* m = s.row_max.data() + blk * rows + first;
      float* l = s.row_sum.data() + blk * rows + first;
      if (kernels && decode) {
        for (int64_t t = 0; t < T; t += kDecodeKeyChunk) {
          const int64_t keys = std::min(kDecodeKeyChunk, T - t);
          kernels->transpose_keys(kv.k + t * D, keys, D, s.key_columns.data());
          kernels->scores(q + offset(blk), stride, rows, s.key_columns.data(), keys, D, keys, scale, S.data() + t, T);
        }
      } else if (kernels) {
        kernels->scores(q + offset(blk) + first * stride, stride, live, s.key_columns.data(), T, D, causal, scale,
                        S.data(), T);
      } else
        S.noalias() = (q_rows(blk).bottomRows(live) * K.transpose()) * scale;
      for (int64_t i = 0; i < live; ++i) {  // online softmax: rescale what earlier tiles summed
        const int64_t position = p0 + (decode ? 0 : first + i);
        const int64_t visible = std::min(T, position + 1 - t0);
        if (kernels) {
          const float correction = kernels->softmax_tile_row(&S(i, 0), T, visible, padded ? key_valid + t0 : nullptr,
                                                             m + i, l + i);
          if (correction != 1.0f) O.row(i) *= correction;
          continue;
        }
        auto row = S.row(i).array();
        if (padded)
          for (int64_t j = 0; j < visible; ++j)
            if (!key_valid[t0 + j]) row[j] = -INFINITY;
        row.tail(T - visible).setConstant(-INFINITY);
        const float tile_max = row.maxCoeff();
        if (tile_max == -INFINITY) {  // nothing visible in this tile
          row.setZero();
          continue;
        }
        const float new_max = std::max(m[i], tile_max);
        const float correction = std::exp(m[i] - new_max);  // 0 on the first visible tile
        row = (row - new_max).exp();  // vectorized; exp(-inf) = 0 for masked keys
        l[i] = l[i] * correction + row.sum();
        m[i] = new_max;
        O.row(i) *= correction;
      }
      if (kernels)
        kernels->values(S.data(), T, live, kv.v, T, D, causal, out + offset(blk) + first * stride, stride);
      else
        O.noalias() += S * V;
    }
  }
  for (int64_t blk = 0; blk < blocks; ++blk) {
    auto O = out_rows(blk);
    const float* l = s.row_sum.data() + blk * rows;
    for (int64_t i = 0; i < rows; ++i)
      if (l[i] > 0.0f) O.row(i) /= l[i];  // l == 0: the query saw no key, its output stays 0
  }
  if (view.scores != nullptr) accumulate_attention(cache, layer, b, kv_head, group, D, q, q_stride, n, key_valid, s,
                                                   view.scores);
}

}  // namespace celer::cpu
