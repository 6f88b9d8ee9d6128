#include <cmath>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backend/cpu/quant.h"
#include "backend/cpu/simd.h"
#include "core/tensor.h"

namespace celer::cpu {

float quantize_int8(const float* x, int64_t n, int64_t stride, int8_t* q, int64_t q_stride) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i * stride]));
  const float scale = amax / 127.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float r = scale > 0.0f ? std::nearbyint(x[i * stride] / scale) : 0.0f;
    q[i * q_stride] = int8_t(std::fmin(127.0f, std::fmax(-127.0f, r)));
  }
  return scale;
}

void dequantize_int8(const int8_t* q, float scale, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(q[i]) * scale;
}

void dequantize_int8(const int8_t* q, const float* scale, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(q[i]) * scale[i];
}

namespace {
// F16C converts 8 values per instruction, rounding to nearest even like f32_to_f16; the fp16
// cache converts every tile it reads, so this sits on the decode path.
#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) void f32_to_f16_f16c(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) out[i] = f32_to_f16(x[i]);
}
__attribute__((target("avx2,f16c"))) void f16_to_f32_f16c(const uint16_t* x, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  for (; i < n; ++i) out[i] = f16_to_f32(x[i]);
}
#endif
bool use_f16c() {
#if defined(__x86_64__)
  return simd_level() >= SimdLevel::Avx2;  // that level requires F16C
#else
  return false;
#endif
}
}  // namespace

void f32_to_f16_row(const float* x, int64_t n, uint16_t* out) {
#if defined(__x86_64__)
  if (use_f16c()) return f32_to_f16_f16c(x, n, out);
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

void f16_to_f32_row(const uint16_t* x, int64_t n, float* out) {
#if defined(__x86_64__)
  if (use_f16c()) return f16_to_f32_f16c(x, n, out);
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(x[i]);
}

}  // namespace celer::cpu
