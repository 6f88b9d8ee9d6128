// AVX-512 kernels of attention over a cache tile (attention_kernels.h).
#if defined(__x86_64__)
#include "backend/cpu/quiet_intrinsics.h"
#include "backend/cpu/attention_kernels.h"
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "backend/cpu/avx512.h"
#include "backend/cpu/lane_masks.h"

namespace celer::cpu {
namespace {

constexpr int kScoreRows = 8;   // query rows per score block: 8 x 2 key blocks = 16 accumulators
constexpr int kValueRows = 4;   // rows per value block: 4 x 4 vectors of 16 dims = 16 accumulators
constexpr int kValueVecs = 4;

// f(std::integral_constant<int, n>) for 1 <= n <= N: register blocks need their sizes at
// compile time.
template <int N, class F>
CELER_AVX512 inline void with_count(int64_t n, F&& f) {
  if constexpr (N > 1) {
    if (n < N) return with_count<N - 1>(n, f);
  }
  f(std::integral_constant<int, N>{});
}

// Scores of R rows against KB blocks of 16 key columns (kt: the first block's columns), one
// broadcast multiply-add per (dim, row, block); `keys` masks each block's lanes past T.
template <int R, int KB>
CELER_AVX512 void score_block(const float* q, int64_t qs, const float* kt, int64_t D, float scale, float* S,
                              int64_t lds, const __mmask16 (&keys)[2]) {
  __m512 acc[R][KB];
  for (int i = 0; i < R; ++i)
    for (int b = 0; b < KB; ++b) acc[i][b] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    __m512 column[KB];
    for (int b = 0; b < KB; ++b) column[b] = _mm512_loadu_ps(kt + b * D * kAttentionKeyBlock + d * 16);
    for (int i = 0; i < R; ++i) {
      const __m512 x = _mm512_set1_ps(q[i * qs + d]);
      for (int b = 0; b < KB; ++b) acc[i][b] = _mm512_fmadd_ps(x, column[b], acc[i][b]);
    }
  }
  const __m512 s = _mm512_set1_ps(scale);
  for (int i = 0; i < R; ++i)
    for (int b = 0; b < KB; ++b) _mm512_mask_storeu_ps(S + i * lds + 16 * b, keys[b], _mm512_mul_ps(acc[i][b], s));
}

// O rows += P rows x V over keys [0, T) for R rows and V vectors of 16 dims from column c.
template <int R, int V>
CELER_AVX512 void value_block(const float* P, int64_t ldp, const float* v, int64_t T, int64_t D, float* O,
                              int64_t ldo) {
  __m512 acc[R][V];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < V; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t t = 0; t < T; ++t) {
    __m512 row[V];
    for (int j = 0; j < V; ++j) row[j] = _mm512_loadu_ps(v + t * D + 16 * j);
    for (int i = 0; i < R; ++i) {
      const __m512 p = _mm512_set1_ps(P[i * ldp + t]);
      for (int j = 0; j < V; ++j) acc[i][j] = _mm512_fmadd_ps(p, row[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < V; ++j)
      _mm512_storeu_ps(O + i * ldo + 16 * j, _mm512_add_ps(_mm512_loadu_ps(O + i * ldo + 16 * j), acc[i][j]));
}

// e^x for x <= 0 within ~1 ulp: x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor series to
// r^7 (error < 1e-8), then scaled by 2^n. Below -104 (where e^x is 0 in float) it gives 0.
CELER_AVX512 inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln2 in two parts: exact n * hi
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  for (float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, n);
}

// Lanes [t, t + 16) of keys [0, visible) that valid allows.
CELER_AVX512 inline __mmask16 counted_keys(int64_t t, int64_t visible, const uint8_t* valid) {
  const __mmask16 in = first_lanes16(visible - t);
  if (valid == nullptr) return in;
  const __m128i bytes = _mm_maskz_loadu_epi8(in, valid + t);
  return _mm_test_epi8_mask(bytes, bytes);
}

}  // namespace

CELER_AVX512 float softmax_tile_row_avx512(float* s, int64_t T, int64_t visible, const uint8_t* valid, float* max,
                                          float* sum) {
  __m512 top = _mm512_set1_ps(-INFINITY);
  for (int64_t t = 0; t < visible; t += 16)
    top = _mm512_mask_max_ps(top, counted_keys(t, visible, valid), top, _mm512_loadu_ps(s + t));
  const float tile_max = _mm512_reduce_max_ps(top);
  if (tile_max == -INFINITY) {  // nothing counts in this tile
    for (int64_t t = 0; t < T; t += 16) _mm512_mask_storeu_ps(s + t, first_lanes16(T - t), _mm512_setzero_ps());
    return 1.0f;
  }
  const float new_max = std::max(*max, tile_max), correction = std::exp(*max - new_max);
  const __m512 shift = _mm512_set1_ps(new_max);
  __m512 total = _mm512_setzero_ps();
  for (int64_t t = 0; t < T; t += 16) {
    const __mmask16 keys = counted_keys(t, visible, valid);
    const __m512 e = keys ? _mm512_maskz_mov_ps(keys, exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + t), shift)))
                          : _mm512_setzero_ps();
    total = _mm512_add_ps(total, e);
    _mm512_mask_storeu_ps(s + t, first_lanes16(T - t), e);
  }
  *sum = *sum * correction + _mm512_reduce_add_ps(total);
  *max = new_max;
  return correction;
}

CELER_AVX512 void transpose_keys_avx512(const float* k, int64_t T, int64_t D, float* kt) {
  for (int64_t t0 = 0; t0 < T; t0 += kAttentionKeyBlock) {
    const int64_t n = std::min(kAttentionKeyBlock, T - t0);
    float* block = kt + t0 * D;
    for (int64_t c = 0; c < D; c += 16) {  // 16 dims of the block's keys at a time
      __m512 r[16];
      for (int64_t j = 0; j < 16; ++j) r[j] = j < n ? _mm512_loadu_ps(k + (t0 + j) * D + c) : _mm512_setzero_ps();
      transpose16(r);
      for (int j = 0; j < 16; ++j) _mm512_storeu_ps(block + (c + j) * 16, r[j]);
    }
  }
}

CELER_AVX512 void attention_scores_avx512(const float* q, int64_t qs, int64_t R, const float* kt, int64_t T,
                                          int64_t D, int64_t causal, float scale, float* S, int64_t lds) {
  for (int64_t i0 = 0; i0 < R; i0 += kScoreRows) {
    const int64_t rows = std::min<int64_t>(kScoreRows, R - i0), end = visible_keys(i0, rows, causal, T);
    for (int64_t t = 0; t < end; t += 2 * kAttentionKeyBlock) {
      const __mmask16 keys[2] = {first_lanes16(T - t), first_lanes16(T - t - 16)};
      with_count<kScoreRows>(rows, [&](auto r) CELER_AVX512 {
        const float* qi = q + i0 * qs;
        float* s = S + i0 * lds + t;
        if (end - t > kAttentionKeyBlock)
          score_block<decltype(r)::value, 2>(qi, qs, kt + t * D, D, scale, s, lds, keys);
        else
          score_block<decltype(r)::value, 1>(qi, qs, kt + t * D, D, scale, s, lds, keys);
      });
    }
  }
}

CELER_AVX512 void attention_values_avx512(const float* P, int64_t ldp, int64_t R, const float* v, int64_t T,
                                          int64_t D, int64_t causal, float* O, int64_t ldo) {
  for (int64_t i0 = 0; i0 < R; i0 += kValueRows) {
    const int64_t rows = std::min<int64_t>(kValueRows, R - i0), end = visible_keys(i0, rows, causal, T);
    if (end == 0) continue;
    for (int64_t c = 0; c < D; c += 16 * kValueVecs) {
      with_count<kValueRows>(rows, [&](auto r) CELER_AVX512 {
        with_count<kValueVecs>(std::min<int64_t>(kValueVecs, (D - c) / 16), [&](auto vecs) CELER_AVX512 {
          value_block<decltype(r)::value, decltype(vecs)::value>(P + i0 * ldp, ldp, v + c, end, D, O + i0 * ldo + c, ldo);
        });
      });
    }
  }
}

}  // namespace celer::cpu
#else
#include <stdexcept>

#include "backend/cpu/attention_kernels.h"
namespace celer::cpu {
[[noreturn]] static void not_built() {
  throw std::logic_error("AVX-512 attention is not built for this architecture");  // never chosen
}
void transpose_keys_avx512(const float*, int64_t, int64_t, float*) { not_built(); }
float softmax_tile_row_avx512(float*, int64_t, int64_t, const uint8_t*, float*, float*) { not_built(); }
void attention_scores_avx512(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float, float*,
                             int64_t) {
  not_built();
}
void attention_values_avx512(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float*,
                             int64_t) {
  not_built();
}
}  // namespace celer::cpu
#endif
