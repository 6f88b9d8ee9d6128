// AVX2 kernels of attention over a cache tile (attention_kernels.h): the AVX-512 kernels'
// scheme in 8-lane registers (16 of them), for the CPUs without AVX-512. Compiled for
// AVX2 + FMA whatever the build's flags; cache_attention calls them only at the avx2 level.
#if defined(__x86_64__)
#include "backend/cpu/quiet_intrinsics.h"
#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/avx2.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

namespace celer::cpu {
namespace {

constexpr int kScoreRows = 6;  // rows per score block: 6 rows x 16 keys = 12 accumulators
constexpr int kValueRows = 3;  // rows per value block: 3 rows x 3 vectors of 8 dims = 9 accumulators
constexpr int kValueVecs = 3;

template <int N, class F>
CELER_AVX2 inline void with_count(int64_t n, F&& f) {  // f(integral_constant<n>), 1 <= n <= N
  if constexpr (N > 1) {
    if (n < N) return with_count<N - 1>(n, f);
  }
  f(std::integral_constant<int, N>{});
}


CELER_AVX2 inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

CELER_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// e^x for x <= 0 within ~1 ulp, as the AVX-512 kernel computes it; the power of two is applied
// in two halves so that results below 2^-126 come out as the subnormals std::exp gives.
CELER_AVX2 inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-104.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  for (float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
  const __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1);
  const auto pow2 = [](__m256i e) CELER_AVX2 {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
  };
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2(half)), pow2(_mm256_sub_epi32(ni, half)));
}

// All-ones lanes for keys [t, t + 8) of [0, visible) that valid allows (valid null: all).
CELER_AVX2 inline __m256i counted_keys(int64_t t, int64_t visible, const uint8_t* valid) {
  const __m256i in = first_lanes8(visible - t);
  if (valid == nullptr) return in;
  uint64_t bytes = 0;
  std::memcpy(&bytes, valid + t, size_t(std::clamp<int64_t>(visible - t, 0, 8)));
  const __m256i v = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(bytes)));
  return _mm256_andnot_si256(_mm256_cmpeq_epi32(v, _mm256_setzero_si256()), in);
}

// Scores of R rows against one block of 16 key columns (two registers), one broadcast
// multiply-add per (dim, row, half); lanes past the tile's T are not stored.
template <int R>
CELER_AVX2 void score_block(const float* q, int64_t qs, const float* kt, int64_t D, float scale, float* S,
                            int64_t lds, int64_t keys) {
  __m256 acc[R][2];
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    const __m256 lo = _mm256_loadu_ps(kt + d * 16), hi = _mm256_loadu_ps(kt + d * 16 + 8);
    for (int i = 0; i < R; ++i) {
      const __m256 x = _mm256_broadcast_ss(q + i * qs + d);
      acc[i][0] = _mm256_fmadd_ps(x, lo, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(x, hi, acc[i][1]);
    }
  }
  const __m256 s = _mm256_set1_ps(scale);
  const __m256i m0 = first_lanes8(keys), m1 = first_lanes8(keys - 8);
  for (int i = 0; i < R; ++i) {
    _mm256_maskstore_ps(S + i * lds, m0, _mm256_mul_ps(acc[i][0], s));
    _mm256_maskstore_ps(S + i * lds + 8, m1, _mm256_mul_ps(acc[i][1], s));
  }
}

// O rows += P rows x V over keys [0, T), for R rows and V vectors of 8 dims.
template <int R, int V>
CELER_AVX2 void value_block(const float* P, int64_t ldp, const float* v, int64_t T, int64_t D, float* O,
                            int64_t ldo) {
  __m256 acc[R][V];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < V; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t t = 0; t < T; ++t) {
    __m256 row[V];
    for (int j = 0; j < V; ++j) row[j] = _mm256_loadu_ps(v + t * D + 8 * j);
    for (int i = 0; i < R; ++i) {
      const __m256 p = _mm256_broadcast_ss(P + i * ldp + t);
      for (int j = 0; j < V; ++j) acc[i][j] = _mm256_fmadd_ps(p, row[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < V; ++j)
      _mm256_storeu_ps(O + i * ldo + 8 * j, _mm256_add_ps(_mm256_loadu_ps(O + i * ldo + 8 * j), acc[i][j]));
}

}  // namespace

CELER_AVX2 float softmax_tile_row_avx2(float* s, int64_t T, int64_t visible, const uint8_t* valid, float* max,
                                      float* sum) {
  __m256 top = _mm256_set1_ps(-INFINITY);
  for (int64_t t = 0; t < visible; t += 8) {
    const __m256 keys = _mm256_castsi256_ps(counted_keys(t, visible, valid));
    top = _mm256_max_ps(top, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(s + t, _mm256_castps_si256(keys)), keys));
  }
  const float tile_max = hmax(top);
  if (tile_max == -INFINITY) {  // nothing counts in this tile
    for (int64_t t = 0; t < T; t += 8) _mm256_maskstore_ps(s + t, first_lanes8(T - t), _mm256_setzero_ps());
    return 1.0f;
  }
  const float new_max = std::max(*max, tile_max), correction = std::exp(*max - new_max);
  const __m256 shift = _mm256_set1_ps(new_max);
  __m256 total = _mm256_setzero_ps();
  for (int64_t t = 0; t < T; t += 8) {
    const __m256i stored = first_lanes8(T - t), keys = counted_keys(t, visible, valid);
    const __m256 x = _mm256_sub_ps(_mm256_maskload_ps(s + t, stored), shift);
    const __m256 e = _mm256_and_ps(exp_nonpositive(_mm256_min_ps(x, _mm256_setzero_ps())), _mm256_castsi256_ps(keys));
    total = _mm256_add_ps(total, e);
    _mm256_maskstore_ps(s + t, stored, e);
  }
  *sum = *sum * correction + hsum(total);
  *max = new_max;
  return correction;
}

CELER_AVX2 void transpose_keys_avx2(const float* k, int64_t T, int64_t D, float* kt) {
  for (int64_t t0 = 0; t0 < T; t0 += kAttentionKeyBlock) {
    const int64_t n = std::min(kAttentionKeyBlock, T - t0);
    float* block = kt + t0 * D;
    for (int64_t half = 0; half < 2; ++half)  // keys t0 + 8 * half .. + 8
      for (int64_t c = 0; c < D; c += 8) {
        __m256 r[8];
        for (int64_t j = 0; j < 8; ++j) {
          const int64_t key = 8 * half + j;
          r[j] = key < n ? _mm256_loadu_ps(k + (t0 + key) * D + c) : _mm256_setzero_ps();
        }
        transpose8(r);
        for (int j = 0; j < 8; ++j) _mm256_storeu_ps(block + (c + j) * 16 + 8 * half, r[j]);
      }
  }
}

CELER_AVX2 void attention_scores_avx2(const float* q, int64_t qs, int64_t R, const float* kt, int64_t T, int64_t D,
                                      int64_t causal, float scale, float* S, int64_t lds) {
  for (int64_t i0 = 0; i0 < R; i0 += kScoreRows) {
    const int64_t rows = std::min<int64_t>(kScoreRows, R - i0), end = visible_keys(i0, rows, causal, T);
    for (int64_t t = 0; t < end; t += kAttentionKeyBlock)
      with_count<kScoreRows>(rows, [&](auto r) CELER_AVX2 {
        score_block<decltype(r)::value>(q + i0 * qs, qs, kt + t * D, D, scale, S + i0 * lds + t, lds, T - t);
      });
  }
}

CELER_AVX2 void attention_values_avx2(const float* P, int64_t ldp, int64_t R, const float* v, int64_t T, int64_t D,
                                      int64_t causal, float* O, int64_t ldo) {
  for (int64_t i0 = 0; i0 < R; i0 += kValueRows) {
    const int64_t rows = std::min<int64_t>(kValueRows, R - i0), end = visible_keys(i0, rows, causal, T);
    if (end == 0) continue;
    for (int64_t c = 0; c < D; c += 8 * kValueVecs)
      with_count<kValueRows>(rows, [&](auto r) CELER_AVX2 {
        with_count<kValueVecs>(std::min<int64_t>(kValueVecs, (D - c) / 8), [&](auto vecs) CELER_AVX2 {
          value_block<decltype(r)::value, decltype(vecs)::value>(P + i0 * ldp, ldp, v + c, end, D, O + i0 * ldo + c, ldo);
        });
      });
  }
}

}  // namespace celer::cpu
#else
#include <stdexcept>

#include "backend/cpu/attention_kernels.h"
namespace celer::cpu {
[[noreturn]] static void not_built() {
  throw std::logic_error("AVX2 attention is not built for this architecture");  // never chosen
}
void transpose_keys_avx2(const float*, int64_t, int64_t, float*) { not_built(); }
float softmax_tile_row_avx2(float*, int64_t, int64_t, const uint8_t*, float*, float*) { not_built(); }
void attention_scores_avx2(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float, float*,
                           int64_t) {
  not_built();
}
void attention_values_avx2(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float*, int64_t) {
  not_built();
}
}  // namespace celer::cpu
#endif
