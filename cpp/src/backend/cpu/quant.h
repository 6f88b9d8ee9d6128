// Symmetric INT8 quantization (the KV cache's): scale = max|x| / 127, q = clamp(round(x /
// scale), -127, 127) with round-half-to-even and the division in float32; max|x| = 0 gives
// scale 0 and q = 0. Dequantized value: q * scale.
#pragma once
#include <cstdint>

namespace celer::cpu {

// Quantizes n values x[i * stride] into q[i * q_stride]; returns the scale.
float quantize_int8(const float* x, int64_t n, int64_t stride, int8_t* q, int64_t q_stride);
inline float quantize_int8(const float* x, int64_t n, int64_t stride, int8_t* q) {
  return quantize_int8(x, n, stride, q, stride);
}
// out[i] = q[i] * scale, n contiguous values.
void dequantize_int8(const int8_t* q, float scale, int64_t n, float* out);
// out[i] = q[i] * scale[i], n contiguous values (per-channel scales).
void dequantize_int8(const int8_t* q, const float* scale, int64_t n, float* out);

void f32_to_f16_row(const float* x, int64_t n, uint16_t* out);
void f16_to_f32_row(const uint16_t* x, int64_t n, float* out);

}  // namespace celer::cpu
