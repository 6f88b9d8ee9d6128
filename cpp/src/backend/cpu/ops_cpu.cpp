#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/ops.h"
#include "threadpool.h"

namespace celer::cpu {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::OuterStride<>;

void matmul_nt(float* y, const float* x, const float* w, int64_t M, int64_t K, int64_t N, bool accumulate) {
  // Output columns (= rows of w) in fixed blocks, each one Eigen product: every weight is read
  // once, and the result does not depend on how many threads share the blocks.
  constexpr int64_t kBlock = 64;
  // A thread gets at least ~64K multiply-adds: below that, waking it costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, M * kBlock * K));
  auto pool = thread_pool();
  Eigen::Map<const RowMat> X(x, M, K);
  pool->parallel_for((N + kBlock - 1) / kBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * kBlock, nn = std::min(N - n0, kBlock);
      Eigen::Map<const RowMat> W(w + n0 * K, nn, K);
      Eigen::Map<RowMat, 0, Strided> Y(y + n0, M, nn, Strided(N));
      if (accumulate)
        Y.noalias() += X * W.transpose();
      else
        Y.noalias() = X * W.transpose();
    }
  }, grain);
}

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

void swiglu(float* out, const float* gate, const float* up, int64_t n) {
  Eigen::Map<const Eigen::ArrayXf> g(gate, n), u(up, n);
  Eigen::Map<Eigen::ArrayXf>(out, n) = g / (1.0f + (-g).exp()) * u;
}

void embedding(float* out, const float* table, const int64_t* ids, int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(out + r * H, table + ids[r] * H, size_t(H) * sizeof(float));
}

}  // namespace celer::cpu
