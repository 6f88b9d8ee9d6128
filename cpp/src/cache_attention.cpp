#include "cache_attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

namespace celer {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::OuterStride<>;

void AttentionScratch::reserve(int64_t n, int64_t group, int64_t D) {
  k_tile.resize(size_t(kAttentionTile * D));
  v_tile.resize(size_t(kAttentionTile * D));
  scores.resize(size_t(n * kAttentionTile));
  row_max.resize(size_t(group * n));
  row_sum.resize(size_t(group * n));
}

void cache_attention(const KVCache& cache, int64_t layer, int64_t b, int64_t kv_head, int64_t group, int64_t D,
                     const float* q, float* out, int64_t q_stride, int64_t n, int64_t p0, const uint8_t* key_valid,
                     AttentionScratch& s) {
  const float scale = 1.0f / std::sqrt(float(D));
  const int64_t keys = p0 + n;
  // (n, D) rows of query head g of this group, in q and in out.
  auto offset = [&](int64_t g) { return b * n * q_stride + (kv_head * group + g) * D; };
  auto q_rows = [&](int64_t g) { return Eigen::Map<const RowMat, 0, Strided>(q + offset(g), n, D, Strided(q_stride)); };
  auto out_rows = [&](int64_t g) { return Eigen::Map<RowMat, 0, Strided>(out + offset(g), n, D, Strided(q_stride)); };
  for (int64_t g = 0; g < group; ++g) out_rows(g).setZero();
  std::fill(s.row_max.begin(), s.row_max.begin() + group * n, -INFINITY);
  std::fill(s.row_sum.begin(), s.row_sum.begin() + group * n, 0.0f);

  for (int64_t t0 = 0; t0 < keys; t0 += kAttentionTile) {
    const int64_t t1 = std::min(keys, t0 + kAttentionTile), T = t1 - t0;
    // One dequantization per tile, shared by the group's query heads.
    const KVCache::Rows kv = cache.read(layer, b, kv_head, t0, t1, s.k_tile.data(), s.v_tile.data());
    Eigen::Map<const RowMat> K(kv.k, T, D), V(kv.v, T, D);
    // Causal: query i sees keys t <= p0 + i, so queries before `first` see none of this tile.
    const int64_t first = std::max<int64_t>(0, t0 - p0), rows = n - first;
    Eigen::Map<RowMat> S(s.scores.data(), rows, T);
    for (int64_t g = 0; g < group; ++g) {
      auto O = out_rows(g).bottomRows(rows);
      float* m = s.row_max.data() + g * n + first;
      float* l = s.row_sum.data() + g * n + first;
      S.noalias() = (q_rows(g).bottomRows(rows) * K.transpose()) * scale;
      for (int64_t i = 0; i < rows; ++i) {  // online softmax: rescale what earlier tiles summed
        const int64_t visible = std::min(T, p0 + first + i + 1 - t0);
        float* row = S.row(i).data();
        float tile_max = -INFINITY;
        for (int64_t j = 0; j < T; ++j) {
          if (j >= visible || !key_valid[t0 + j]) row[j] = -INFINITY;
          tile_max = std::max(tile_max, row[j]);
        }
        if (tile_max == -INFINITY) {  // nothing visible in this tile
          std::fill(row, row + T, 0.0f);
          continue;
        }
        const float new_max = std::max(m[i], tile_max);
        const float correction = std::exp(m[i] - new_max);  // 0 on the first visible tile
        float sum = 0.0f;
        for (int64_t j = 0; j < T; ++j) sum += (row[j] = std::exp(row[j] - new_max));
        l[i] = l[i] * correction + sum;
        m[i] = new_max;
        O.row(i) *= correction;
      }
      O.noalias() += S * V;
    }
  }
  for (int64_t g = 0; g < group; ++g) {
    auto O = out_rows(g);
    const float* l = s.row_sum.data() + g * n;
    for (int64_t i = 0; i < n; ++i)
      if (l[i] > 0.0f) O.row(i) /= l[i];  // l == 0: the query saw no key, its output stays 0
  }
}

}  // namespace celer
