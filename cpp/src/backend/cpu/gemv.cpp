#include "backend/cpu/gemv.h"

#include <algorithm>

namespace celer::cpu {

void gemv_rows(const PackedWeight& w, int64_t r0, int64_t r1, const float* x, int64_t x_stride, int64_t M,
               float* y, int64_t y_stride, bool accumulate, SimdLevel level) {
  auto dot_rows = level == SimdLevel::Avx512 ? kernels::dot_rows_avx512
                  : level == SimdLevel::Avx2 ? kernels::dot_rows_avx2
                                             : kernels::dot_rows_scalar;
  float dots[kGemvRows];
  for (int64_t r = r0; r < r1; ++r) {
    const float bias = w.bias != nullptr ? w.bias[r] : 0.0f;
    for (int64_t m0 = 0; m0 < M; m0 += kGemvRows) {
      const int64_t mm = std::min(kGemvRows, M - m0);
      dot_rows(w, r, x + m0 * x_stride, x_stride, mm, dots);
      for (int64_t i = 0; i < mm; ++i) {
        float& out = y[(m0 + i) * y_stride + r];
        out = dots[i] + bias + (accumulate ? out : 0.0f);
      }
    }
  }
}

namespace kernels {

void dot_rows_scalar(const PackedWeight& w, int64_t row, const float* x, int64_t x_stride, int64_t M, float* dots) {
  const int64_t K = w.cols;
  for (int64_t m = 0; m < M; ++m) {
    const float* xm = x + m * x_stride;
    float acc = 0.0f;
    if (w.format == WeightFormat::F32) {
      const float* wr = w.f32 + row * K;
      for (int64_t k = 0; k < K; ++k) acc += wr[k] * xm[k];
    } else if (w.format == WeightFormat::BF16) {
      const uint16_t* wr = w.bf16_row(row);
      for (int64_t k = 0; k < K; ++k) acc += bf16_to_f32(wr[k]) * xm[k];
    } else {
      const int8_t* q = w.q8_row(row);
      const uint16_t* s = w.q8_scales(row);
      for (int64_t b0 = 0; b0 < K; b0 += kQ8Block) {
        float block = 0.0f;
        for (int64_t k = b0; k < std::min(K, b0 + kQ8Block); ++k) block += float(q[k]) * xm[k];
        acc += block * f16_to_f32(s[b0 / kQ8Block]);
      }
    }
    dots[m] = acc;
  }
}

}  // namespace kernels
}  // namespace celer::cpu
