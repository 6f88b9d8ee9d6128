// Matrix-vector products over packed weights (packed_weight.h) for a few activation rows at
// once: each weight row is read from memory once and used for every activation row, so a
// decode step streams the weights exactly once. One kernel per SIMD level (simd.h).
#pragma once
#include <cstdint>

#include "backend/cpu/packed_weight.h"
#include "backend/cpu/simd.h"

namespace celer::cpu {

// Activation rows handled per pass over a weight row (more rows: several passes, the row
// then comes from cache).
constexpr int64_t kGemvRows = 4;

// Weight rows per avx512 kernel call: one dispatch (format, M) per block of rows, not per row.
constexpr int64_t kGemvRowBlock = 8;

// For weight rows r in [r0, r1) and activation rows m < M:
//   y[m * y_stride + r] = dot(x[m * x_stride ...], row r) + bias[r] (+ the old y when accumulate).
// Each dot product is summed by one thread in a fixed order: results do not depend on how
// rows are split between threads.
void gemv_rows(const PackedWeight& w, int64_t r0, int64_t r1, const float* x, int64_t x_stride, int64_t M,
               float* y, int64_t y_stride, bool accumulate, SimdLevel level);

// gemv_rows on the kernels of `level` itself, whatever gemv_kernel_level would choose.
void gemv_rows_with(const PackedWeight& w, int64_t r0, int64_t r1, const float* x, int64_t x_stride, int64_t M,
                    float* y, int64_t y_stride, bool accumulate, SimdLevel level);
// The level whose kernel gemv_rows runs for `format` at `level`: `level`, except that at avx512
// the 4-bit formats run the avx2 kernel where that one was measured faster on this CPU
// (kernel_choice.cpp: each 4-bit value costs a few vector instructions whatever their width,
// and 512-bit ones issue on fewer ports on some cores, or split in two), or where
// set_q4_gemv_level forced it.
SimdLevel gemv_kernel_level(WeightFormat format, SimdLevel level);
// For tests and measurements: the level of the avx512 level's 4-bit GEMV (avx2 or avx512;
// ValueError otherwise, or on a CPU without AVX-512); null: the measured choice.
void set_q4_gemv_level(const SimdLevel* level);

// The same for bf16 weights on inputs already rounded to bf16 pairs (bf16_pair in tensor.h):
// x_pairs holds M rows of (K + 1) / 2 pairs, row stride pairs_stride. vdpbf16ps: only for a
// CPU with AVX512_BF16 at the avx512 level (cpu_has_avx512_bf16).
void gemv_rows_bf16_pairs(const PackedWeight& w, int64_t r0, int64_t r1, const uint32_t* x_pairs,
                          int64_t pairs_stride, int64_t M, float* y, int64_t y_stride, bool accumulate);
// x (M, K), row stride xs, as bf16 pairs into out (M rows of (K + 1) / 2; an odd K's last pair
// has a zero high half).
void pack_bf16_pair_rows(const float* x, int64_t xs, int64_t M, int64_t K, uint32_t* out);

// The per-level kernels for M <= kGemvRows activation rows. Scalar and avx2, one weight row:
// dots[m] = dot(x_m, row). avx512, nrows <= kGemvRowBlock weight rows from `row`:
// dots[i * M + m] = dot(x_m, row + i).
namespace kernels {
void dot_rows_scalar(const PackedWeight& w, int64_t row, const float* x, int64_t x_stride, int64_t M, float* dots);
void dot_rows_avx2(const PackedWeight& w, int64_t row, const float* x, int64_t x_stride, int64_t M, float* dots);
// Q4_0 / Q4_1 at avx2 with each activation row's sums over the weight's blocks of 32 given
// (x_sums[m * blocks + b], blocks = ceil(K / 32)): sum (q d + m) x = d sum q x + m sum x, so the
// block's minimum costs one scalar multiply-add instead of a vector one per value.
void dot_rows_q4_avx2(const PackedWeight& w, int64_t row, const float* x, int64_t x_stride, int64_t M,
                      const float* x_sums, float* dots);
void dot_rows_avx512(const PackedWeight& w, int64_t row, int64_t nrows, const float* x, int64_t x_stride, int64_t M,
                     float* dots);
void dot_rows_bf16_pairs_avx512(const PackedWeight& w, int64_t row, int64_t nrows, const uint32_t* x_pairs,
                                int64_t pairs_stride, int64_t M, float* dots);
}  // namespace kernels

}  // namespace celer::cpu
