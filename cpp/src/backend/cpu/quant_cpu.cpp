#include <cmath>

#include "backend/cpu/quant.h"
#include "tensor.h"

namespace celer::cpu {

float quantize_int8(const float* x, int64_t n, int64_t stride, int8_t* q) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i * stride]));
  const float scale = amax / 127.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float r = scale > 0.0f ? std::nearbyint(x[i * stride] / scale) : 0.0f;
    q[i * stride] = int8_t(std::fmin(127.0f, std::fmax(-127.0f, r)));
  }
  return scale;
}

void dequantize_int8(const int8_t* q, float scale, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(q[i]) * scale;
}

void dequantize_int8(const int8_t* q, const float* scale, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(q[i]) * scale[i];
}

void f32_to_f16_row(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

void f16_to_f32_row(const uint16_t* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(x[i]);
}

}  // namespace celer::cpu
