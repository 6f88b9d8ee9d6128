// What the AVX-512 kernels share: their target attributes (each kernel file is compiled for
// AVX-512 whatever the build's flags and runs only when simd.h reports the CPU has it) and a
// register transpose. x86-64 only.
#pragma once
#include <immintrin.h>

#define CELER_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define CELER_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")))

namespace celer::cpu {

// Transposes 16 rows of 16 32-bit values in place.
CELER_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // Per 128-bit lane L, u[4g + c] holds column 4L + c of rows 4g..4g+3.
  __m512 u[16];
  for (int g = 0; g < 16; g += 4) {
    const __m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 1]);
    const __m512d c = _mm512_castps_pd(t[g + 2]), d = _mm512_castps_pd(t[g + 3]);
    u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // A 4x4 transpose of 128-bit lanes for each c.
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
}

// 16 floats rounded to bf16 as f32_to_bf16 does (ties to even, NaN kept quiet), in 16 lanes.
CELER_AVX512 inline __m256i round_to_bf16(__m512 v) {
  const __m512i x = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(x, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
  const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_or_epi32(r, nan, x, _mm512_set1_epi32(0x400000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

// 16 bf16 values (round_to_bf16's form) back to f32, exactly.
CELER_AVX512 inline __m512 widen_bf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// 32 floats (lo: inputs 0-15, hi: 16-31) rounded to bf16 as 16 pairs, the pair of inputs 2j
// and 2j + 1 in 32-bit lane j (bf16_pair's layout).
CELER_AVX512 inline __m512i bf16_pairs(__m512 lo, __m512 hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(round_to_bf16(lo)), round_to_bf16(hi), 1);
}

// bf16_pairs(lo, hi), and in *residual what that rounding leaves out (v - bf16(v), rounded to
// bf16), as pairs too: the two together carry ~17 of f32's 24 significant bits
// (|v - bf16(v) - residual| <= 2^-18 |v|), the split form of MatmulPrecision::High.
CELER_AVX512 inline __m512i split_bf16_pairs(__m512 lo, __m512 hi, __m512i* residual) {
  const __m256i rounded_lo = round_to_bf16(lo), rounded_hi = round_to_bf16(hi);
  *residual = bf16_pairs(_mm512_sub_ps(lo, widen_bf16(rounded_lo)), _mm512_sub_ps(hi, widen_bf16(rounded_hi)));
  return _mm512_inserti64x4(_mm512_castsi256_si512(rounded_lo), rounded_hi, 1);
}

}  // namespace celer::cpu
