// AVX-512 kernels of decode attention (attention_kernels.h).
#if defined(__x86_64__)
#include "backend/cpu/quiet_intrinsics.h"
#include "backend/cpu/attention_kernels.h"
#include <algorithm>
#include <type_traits>

#include "backend/cpu/avx512.h"
#include "backend/cpu/lane_masks.h"

namespace celer::cpu {
namespace {

constexpr int kHeadsPerPass = 8;  // accumulators per pass: one zmm per query head

// Scores of query heads [g0, g0 + G) for the 16 keys whose columns kt holds (kt[d * 16 + j] =
// key j's value d): one broadcast multiply-add per (d, head), no horizontal sums.
template <int G>
CELER_AVX512 void score_block(const float* q, int64_t D, const float* kt, float scale, float* S, int64_t lds,
                              __mmask16 keys) {
  __m512 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    const __m512 column = _mm512_loadu_ps(kt + d * 16);
    for (int g = 0; g < G; ++g) acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * D + d]), column, acc[g]);
  }
  for (int g = 0; g < G; ++g) _mm512_mask_storeu_ps(S + g * lds, keys, _mm512_mul_ps(acc[g], _mm512_set1_ps(scale)));
}

template <int G>
CELER_AVX512 void value_pass(const float* P, int64_t ldp, const float* v, int64_t T, int64_t D, float* O, int64_t ldo) {
  for (int64_t c = 0; c < D; c += 16) {  // 16 output dims of every head at a time
    __m512 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
    for (int64_t t = 0; t < T; ++t) {
      const __m512 row = _mm512_loadu_ps(v + t * D + c);
      for (int g = 0; g < G; ++g) acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(P[g * ldp + t]), row, acc[g]);
    }
    for (int g = 0; g < G; ++g) _mm512_storeu_ps(O + g * ldo + c, _mm512_add_ps(_mm512_loadu_ps(O + g * ldo + c), acc[g]));
  }
}

// f(g0, heads) over chunks of at most kHeadsPerPass heads, each with its compile-time count.
template <class F>
CELER_AVX512 void for_head_chunks(int64_t G, F&& f) {
  for (int64_t g0 = 0; g0 < G; g0 += kHeadsPerPass) {
    switch (std::min<int64_t>(kHeadsPerPass, G - g0)) {
      case 1: f(g0, std::integral_constant<int, 1>{}); break;
      case 2: f(g0, std::integral_constant<int, 2>{}); break;
      case 3: f(g0, std::integral_constant<int, 3>{}); break;
      case 4: f(g0, std::integral_constant<int, 4>{}); break;
      case 5: f(g0, std::integral_constant<int, 5>{}); break;
      case 6: f(g0, std::integral_constant<int, 6>{}); break;
      case 7: f(g0, std::integral_constant<int, 7>{}); break;
      default: f(g0, std::integral_constant<int, 8>{}); break;
    }
  }
}

}  // namespace

CELER_AVX512 void attention_scores_avx512(const float* q, int64_t G, const float* k, int64_t T, int64_t D,
                                          float scale, float* S, int64_t lds, float* kt) {
  for (int64_t t0 = 0; t0 < T; t0 += kAttentionKeyBlock) {
    const int64_t n = std::min(kAttentionKeyBlock, T - t0);
    for (int64_t c = 0; c < D; c += 16) {  // the block's keys as columns, 16 dims at a time
      __m512 r[16];
      for (int64_t j = 0; j < 16; ++j) r[j] = j < n ? _mm512_loadu_ps(k + (t0 + j) * D + c) : _mm512_setzero_ps();
      transpose16(r);
      for (int j = 0; j < 16; ++j) _mm512_storeu_ps(kt + (c + j) * 16, r[j]);
    }
    const __mmask16 keys = first_lanes16(n);
    for_head_chunks(G, [&](int64_t g0, auto heads) CELER_AVX512 {
      score_block<decltype(heads)::value>(q + g0 * D, D, kt, scale, S + g0 * lds + t0, lds, keys);
    });
  }
}

CELER_AVX512 void attention_values_avx512(const float* P, int64_t ldp, int64_t G, const float* v, int64_t T,
                                          int64_t D, float* O, int64_t ldo) {
  for_head_chunks(G, [&](int64_t g0, auto heads) CELER_AVX512 {
    value_pass<decltype(heads)::value>(P + g0 * ldp, ldp, v, T, D, O + g0 * ldo, ldo);
  });
}

}  // namespace celer::cpu
#else
#include <stdexcept>

#include "backend/cpu/attention_kernels.h"
namespace celer::cpu {
void attention_scores_avx512(const float*, int64_t, const float*, int64_t, int64_t, float, float*, int64_t, float*) {
  throw std::logic_error("AVX-512 attention is not built for this architecture");  // never chosen
}
void attention_values_avx512(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t) {
  throw std::logic_error("AVX-512 attention is not built for this architecture");  // never chosen
}
}  // namespace celer::cpu
#endif
