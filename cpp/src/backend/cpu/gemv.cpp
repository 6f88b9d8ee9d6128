#include "backend/cpu/gemv.h"

#include <algorithm>
#include <vector>

namespace celer::cpu {

namespace {
// y[m * y_stride + r] = dots + bias (+ old y) for rows [r0, r1): kGemvRowBlock weight rows and
// kGemvRows activation rows at a time; dot(r, nr, m0, mm, dots) fills dots[i * mm + m] for
// weight rows r + i (i < nr) and activation rows m0 + m (m < mm).
template <class Dot>
void gemv_loop(const PackedWeight& w, int64_t r0, int64_t r1, int64_t M, float* y, int64_t y_stride, bool accumulate,
               Dot dot) {
  float dots[kGemvRowBlock * kGemvRows];
  for (int64_t r = r0; r < r1; r += kGemvRowBlock) {
    const int64_t nr = std::min(kGemvRowBlock, r1 - r);
    for (int64_t m0 = 0; m0 < M; m0 += kGemvRows) {
      const int64_t mm = std::min(kGemvRows, M - m0);
      dot(r, nr, m0, mm, dots);
      for (int64_t i = 0; i < nr; ++i) {
        const float bias = w.bias != nullptr ? w.bias[r + i] : 0.0f;
        for (int64_t m = 0; m < mm; ++m) {
          float& out = y[(m0 + m) * y_stride + r + i];
          out = dots[i * mm + m] + bias + (accumulate ? out : 0.0f);
        }
      }
    }
  }
}
}  // namespace

void gemv_rows(const PackedWeight& w, int64_t r0, int64_t r1, const float* x, int64_t x_stride, int64_t M,
               float* y, int64_t y_stride, bool accumulate, SimdLevel level) {
  gemv_rows_with(w, r0, r1, x, x_stride, M, y, y_stride, accumulate, gemv_kernel_level(w.format, level));
}

void gemv_rows_with(const PackedWeight& w, int64_t r0, int64_t r1, const float* x, int64_t x_stride, int64_t M,
                    float* y, int64_t y_stride, bool accumulate, SimdLevel level) {
  if (level == SimdLevel::Avx512)
    return gemv_loop(w, r0, r1, M, y, y_stride, accumulate, [&](int64_t r, int64_t nr, int64_t m0, int64_t mm, float* dots) {
      kernels::dot_rows_avx512(w, r, nr, x + m0 * x_stride, x_stride, mm, dots);
    });
  if (level == SimdLevel::Avx2 && (w.format == WeightFormat::Q4_0 || w.format == WeightFormat::Q4_1)) {
    // each activation row's sums over the weight's blocks of 32, once per call for all its rows
    const int64_t K = w.cols, blocks = (K + 31) / 32;
    thread_local std::vector<float> sums;
    sums.assign(size_t(M * blocks), 0.0f);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) sums[size_t(m * blocks + k / 32)] += x[m * x_stride + k];
    return gemv_loop(w, r0, r1, M, y, y_stride, accumulate, [&](int64_t r, int64_t nr, int64_t m0, int64_t mm, float* dots) {
      for (int64_t i = 0; i < nr; ++i)
        kernels::dot_rows_q4_avx2(w, r + i, x + m0 * x_stride, x_stride, mm, sums.data() + m0 * blocks, dots + i * mm);
    });
  }
  auto dot_row = level == SimdLevel::Avx2 ? kernels::dot_rows_avx2 : kernels::dot_rows_scalar;
  gemv_loop(w, r0, r1, M, y, y_stride, accumulate, [&](int64_t r, int64_t nr, int64_t m0, int64_t mm, float* dots) {
    for (int64_t i = 0; i < nr; ++i) dot_row(w, r + i, x + m0 * x_stride, x_stride, mm, dots + i * mm);
  });
}

void gemv_rows_bf16_pairs(const PackedWeight& w, int64_t r0, int64_t r1, const uint32_t* x_pairs,
                          int64_t pairs_stride, int64_t M, float* y, int64_t y_stride, bool accumulate) {
  gemv_loop(w, r0, r1, M, y, y_stride, accumulate, [&](int64_t r, int64_t nr, int64_t m0, int64_t mm, float* dots) {
    kernels::dot_rows_bf16_pairs_avx512(w, r, nr, x_pairs + m0 * pairs_stride, pairs_stride, mm, dots);
  });
}

void pack_bf16_pair_rows(const float* x, int64_t xs, int64_t M, int64_t K, uint32_t* out) {
  const int64_t pairs = (K + 1) / 2;
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * xs;
    for (int64_t p = 0; p < pairs; ++p) out[m * pairs + p] = bf16_pair(row[2 * p], 2 * p + 1 < K ? row[2 * p + 1] : 0.0f);
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
    } else if (w.format == WeightFormat::Int8) {
      const int8_t* q = w.int8_row(row);
      const uint16_t* s = w.int8_scales(row);
      for (int64_t b0 = 0; b0 < K; b0 += kInt8Block) {
        float block = 0.0f;
        for (int64_t k = b0; k < std::min(K, b0 + kInt8Block); ++k) block += float(q[k]) * xm[k];
        acc += block * f16_to_f32(s[b0 / kInt8Block]);
      }
    } else {  // Q4_0, Q4_1: each value dequantized exactly (q * d + m; Q4_0's m is -8 d)
      const uint8_t* q = w.q4_row(row);
      for (int64_t b = 0, b0 = 0; b0 < K; ++b, b0 += 32) {
        const float d = f16_to_f32(w.q4_scales(row)[b]);
        const float mn = w.format == WeightFormat::Q4_1 ? f16_to_f32(w.q4_mins(row)[b]) : -8.0f * d;
        for (int64_t j = 0; j < 32 && b0 + j < K; ++j) {
          const int nibble = j < 16 ? q[b * 16 + j] & 0xF : q[b * 16 + j - 16] >> 4;
          acc += (float(nibble) * d + mn) * xm[b0 + j];
        }
      }
    }
    dots[m] = acc;
  }
}

}  // namespace kernels
}  // namespace celer::cpu
