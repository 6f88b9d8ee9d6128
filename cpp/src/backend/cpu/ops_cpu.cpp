#include "backend/cpu/quiet_intrinsics.h"
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/ops.h"
#include "backend/cpu/threadpool.h"

namespace celer::cpu {

void matmul_nt_naive(float* y, const float* x, const float* w, int64_t M, int64_t K, int64_t N, bool accumulate) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += double(x[m * K + k]) * double(w[n * K + k]);
      y[m * N + n] = float(acc) + (accumulate ? y[m * N + n] : 0.0f);
    }
}

void rmsnorm(float* out, const float* x, const float* weight, int64_t rows, int64_t H, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    Eigen::Map<const Eigen::ArrayXf> in(x + r * H, H);
    const float inv = 1.0f / std::sqrt(in.square().mean() + eps);
    Eigen::Map<Eigen::ArrayXf>(out + r * H, H) = in * inv * Eigen::Map<const Eigen::ArrayXf>(weight, H);
  }
}

void layernorm(float* out, const float* x, const float* weight, const float* bias, int64_t rows, int64_t H, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    Eigen::Map<const Eigen::ArrayXf> in(x + r * H, H);
    const float mean = in.mean();
    const float inv = 1.0f / std::sqrt((in - mean).square().mean() + eps);
    Eigen::Map<Eigen::ArrayXf>(out + r * H, H) =
        (in - mean) * inv * Eigen::Map<const Eigen::ArrayXf>(weight, H) + Eigen::Map<const Eigen::ArrayXf>(bias, H);
  }
}

void rope(float* x, int64_t rows, int64_t heads, int64_t D, const int64_t* pos, const float* cos, const float* sin) {
  const int64_t half = D / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cos + pos[r] * D;
    const float* s = sin + pos[r] * D;
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (r * heads + h) * D;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];            // x * cos + rotate_half(x) * sin,
        v[i + half] = b * c[i + half] + a * s[i + half];  // rotate_half(x) = (-x2, x1)
      }
    }
  }
}

void rope_interleaved(float* x, int64_t rows, int64_t heads, int64_t D, const int64_t* pos, const float* cos,
                      const float* sin) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cos + pos[r] * D;
    const float* s = sin + pos[r] * D;
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (r * heads + h) * D;
      for (int64_t i = 0; i < D / 2; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * c[i] - b * s[i];
        v[2 * i + 1] = b * c[i] + a * s[i];
      }
    }
  }
}

void swiglu(float* out, const float* gate, const float* up, int64_t n) {
  Eigen::Map<const Eigen::ArrayXf> g(gate, n), u(up, n);
  Eigen::Map<Eigen::ArrayXf>(out, n) = g / (1.0f + (-g).exp()) * u;
}

void gelu(float* x, int64_t n, bool tanh_form) {
  Eigen::Map<Eigen::ArrayXf> v(x, n);
  if (tanh_form)  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
    v = 0.5f * v * (1.0f + (0.7978845608028654f * (v + 0.044715f * v.cube())).tanh());
  else  // 0.5 x (1 + erf(x / sqrt(2)))
    for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.7071067811865476f));
}

void embedding(float* out, const float* table, const int64_t* ids, int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(out + r * H, table + ids[r] * H, size_t(H) * sizeof(float));
}

}  // namespace celer::cpu
