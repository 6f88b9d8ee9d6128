// What the AVX2 kernels share: their target attribute (each kernel file is compiled for
// AVX2 + FMA + F16C whatever the build's flags and runs only when simd.h reports the CPU has
// them), lane masks and a register transpose. x86-64 only.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#define CELER_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace celer::cpu {

// Lanes [0, n) set (n clipped to [0, 8]): the mask of maskload / maskstore / blendv.
CELER_AVX2 inline __m256i first_lanes8(int64_t n) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::clamp<int64_t>(n, 0, 8))), iota);
}

// Transposes 8 rows of 8 floats in place.
CELER_AVX2 inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // Per 128-bit half, u[4g + c] holds column c of rows 4g..4g+3.
  for (int g = 0; g < 8; g += 4) {
    u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
    u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
    u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
    u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

}  // namespace celer::cpu
