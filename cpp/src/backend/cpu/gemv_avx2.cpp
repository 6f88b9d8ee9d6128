// AVX2 + FMA + F16C dot-product kernels, compiled for that target whatever the build's flags;
// gemv_rows calls them only when the CPU has them (simd.h). Tails run scalar.
#if defined(__x86_64__)
#include "backend/cpu/avx2.h"

#include "backend/cpu/gemv.h"


namespace celer::cpu::kernels {
namespace {

CELER_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
CELER_AVX2 inline __m256 load_i8(const int8_t* p) {  // 8 int8 -> 8 f32
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p)));
}
CELER_AVX2 inline float bf16(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// Software prefetch distance in bytes (as in gemv_avx512.cpp): one stream per thread is not
// enough for the hardware prefetcher alone to keep DRAM busy; without it int8 rows streamed at
// ~9 GB/s on a 2-core Xeon whose triad is ~30.
constexpr int64_t kPrefetchBytes = 2048;
inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0); }

struct F32Row {
  const float* w;
  void prefetch16(int64_t k) const { prefetch(w + k); }  // the 64 bytes of 16 values
  CELER_AVX2 __m256 load(int64_t k) const { return _mm256_loadu_ps(w + k); }
  CELER_AVX2 float at(int64_t k) const { return w[k]; }
};
struct Bf16Row {
  const uint16_t* w;
  void prefetch16(int64_t k) const { if ((k & 31) == 0) prefetch(w + k); }  // one line per 32 values
  CELER_AVX2 __m256 load(int64_t k) const {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(w + k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  CELER_AVX2 float at(int64_t k) const { return bf16(w[k]); }
};

template <int M, class Row>
CELER_AVX2 void dot_dense(Row row, int64_t K, const float* x, int64_t xs, float* dots) {
  __m256 acc0[M], acc1[M];
  for (int m = 0; m < M; ++m) acc0[m] = acc1[m] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    row.prefetch16(k);
    const __m256 w0 = row.load(k), w1 = row.load(k + 8);
    for (int m = 0; m < M; ++m) {
      acc0[m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * xs + k), acc0[m]);
      acc1[m] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + m * xs + k + 8), acc1[m]);
    }
  }
  for (int m = 0; m < M; ++m) {
    float tail = 0.0f;
    for (int64_t j = k; j < K; ++j) tail += row.at(j) * x[m * xs + j];
    dots[m] = hsum(_mm256_add_ps(acc0[m], acc1[m])) + tail;
  }
}

// Int8: per block of 32, the int8 dot in f32 (one chain of four multiply-adds: the blocks'
// chains overlap), then scaled once by the block's fp16 scale. The scales of 8 blocks at a
// time are widened in one instruction and broadcast from memory (a scalar conversion per
// block cost ~20% of the kernel's rate).
template <int M>
CELER_AVX2 void dot_q8(const int8_t* q, const uint16_t* scales, int64_t K, const float* x, int64_t xs, float* dots) {
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  auto block = [&](int64_t k, const float* s) CELER_AVX2 {
    const __m256 q0 = load_i8(q + k), q1 = load_i8(q + k + 8), q2 = load_i8(q + k + 16), q3 = load_i8(q + k + 24);
    for (int m = 0; m < M; ++m) {
      const float* xm = x + m * xs + k;
      __m256 t = _mm256_mul_ps(q0, _mm256_loadu_ps(xm));
      t = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xm + 8), t);
      t = _mm256_fmadd_ps(q2, _mm256_loadu_ps(xm + 16), t);
      t = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xm + 24), t);
      acc[m] = _mm256_fmadd_ps(t, _mm256_broadcast_ss(s), acc[m]);
    }
  };
  const int64_t full = K / kInt8Block;
  int64_t blk = 0;
  alignas(32) float s8[8];
  for (; blk + 8 <= full; blk += 8) {
    _mm256_store_ps(s8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(scales + blk))));
    for (int j = 0; j < 8; ++j) {
      const int64_t k = (blk + j) * kInt8Block;
      if ((j & 1) == 0) prefetch(q + k);  // one 64-byte line per two blocks
      block(k, s8 + j);
    }
  }
  for (; blk < full; ++blk) {
    const float s = _cvtsh_ss(scales[blk]);
    block(blk * kInt8Block, &s);
  }
  const int64_t k = full * kInt8Block;
  for (int m = 0; m < M; ++m) {
    float tail = 0.0f;  // a short last block
    for (int64_t j = k; j < K; ++j) tail += float(q[j]) * x[m * xs + j];
    dots[m] = hsum(acc[m]) + (k < K ? tail * _cvtsh_ss(scales[full]) : 0.0f);
  }
}

// Q4_0 / Q4_1 (gemv_rows computes x's block sums once per call): per block of 32, t = sum q x
// with the 4-bit codes as floats, acc += d t, and the block's offset m sum(x)
// (Q4_0: m = -8 d); the same products as (q d + m) x, regrouped. The scales (and mins) of 8
// blocks at a time are widened in one instruction and their offsets added in one multiply-add,
// so a block costs no scalar work. A short last block runs scalar on the dequantized values.
template <int M>
CELER_AVX2 inline void q4_block(const uint8_t* qb, __m256 dv, const float* x, int64_t xs, int64_t k, __m256* acc) {
  const __m256i low = _mm256_set1_epi32(0xF);
  const __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)qb));
  const __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(qb + 8)));
  const __m256 c0 = _mm256_cvtepi32_ps(_mm256_and_si256(v0, low)), c1 = _mm256_cvtepi32_ps(_mm256_and_si256(v1, low));
  const __m256 c2 = _mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), c3 = _mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4));
  for (int m = 0; m < M; ++m) {
    const float* xm = x + m * xs + k;
    // one chain of four: five vector operations a block, not six (the kernel is bound by
    // their rate, ~16 a block, not by memory; the blocks' chains overlap)
    __m256 t = _mm256_mul_ps(c0, _mm256_loadu_ps(xm));
    t = _mm256_fmadd_ps(c1, _mm256_loadu_ps(xm + 8), t);
    t = _mm256_fmadd_ps(c2, _mm256_loadu_ps(xm + 16), t);
    t = _mm256_fmadd_ps(c3, _mm256_loadu_ps(xm + 24), t);
    acc[m] = _mm256_fmadd_ps(t, dv, acc[m]);
  }
}

template <int M, bool kMin>
CELER_AVX2 void dot_q4_sums(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t K,
                            const float* x, int64_t xs, const float* x_sums, float* dots) {
  const int64_t blocks = (K + 31) / 32, full = K / 32;
  __m256 acc[M], offsets[M];
  float offset[M] = {}, tail[M] = {};
  for (int m = 0; m < M; ++m) acc[m] = offsets[m] = _mm256_setzero_ps();
  int64_t b = 0;
  alignas(32) float d8[8];
  for (; b + 8 <= full; b += 8) {  // 8 blocks: scales, mins and offsets as vectors
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(scales + b)));
    const __m256 mn = kMin ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(mins + b)))
                           : _mm256_mul_ps(d, _mm256_set1_ps(-8.0f));
    for (int m = 0; m < M; ++m) offsets[m] = _mm256_fmadd_ps(mn, _mm256_loadu_ps(x_sums + m * blocks + b), offsets[m]);
    _mm256_store_ps(d8, d);
    prefetch(q + 16 * b);  // the 128 bytes of 8 blocks
    prefetch(q + 16 * b + 64);
    for (int j = 0; j < 8; ++j) q4_block<M>(q + 16 * (b + j), _mm256_broadcast_ss(d8 + j), x, xs, 32 * (b + j), acc);
  }
  for (; b < blocks; ++b) {  // the last few blocks one by one
    const int64_t k = 32 * b;
    const float d = _cvtsh_ss(scales[b]), mn = kMin ? _cvtsh_ss(mins[b]) : -8.0f * d;
    const uint8_t* qb = q + 16 * b;
    if (k + 32 > K) {  // a short last block
      for (int m = 0; m < M; ++m)
        for (int64_t j = 0; k + j < K; ++j)
          tail[m] += (float(j < 16 ? qb[j] & 0xF : qb[j - 16] >> 4) * d + mn) * x[m * xs + k + j];
      break;
    }
    q4_block<M>(qb, _mm256_set1_ps(d), x, xs, k, acc);
    for (int m = 0; m < M; ++m) offset[m] += mn * x_sums[m * blocks + b];
  }
  for (int m = 0; m < M; ++m) dots[m] = hsum(_mm256_add_ps(acc[m], offsets[m])) + offset[m] + tail[m];
}

template <int M>
CELER_AVX2 void dot_q4_rows_m(const PackedWeight& w, int64_t row, const float* x, int64_t xs, const float* x_sums,
                              float* dots) {
  if (w.format == WeightFormat::Q4_1)
    return dot_q4_sums<M, true>(w.q4_row(row), w.q4_scales(row), w.q4_mins(row), w.cols, x, xs, x_sums, dots);
  dot_q4_sums<M, false>(w.q4_row(row), w.q4_scales(row), nullptr, w.cols, x, xs, x_sums, dots);
}

template <int M>
CELER_AVX2 void dot_rows_m(const PackedWeight& w, int64_t row, const float* x, int64_t xs, float* dots) {
  const int64_t K = w.cols;
  switch (w.format) {
    case WeightFormat::F32: return dot_dense<M>(F32Row{w.f32 + row * K}, K, x, xs, dots);
    case WeightFormat::BF16: return dot_dense<M>(Bf16Row{w.bf16_row(row)}, K, x, xs, dots);
    case WeightFormat::Int8: return dot_q8<M>(w.int8_row(row), w.int8_scales(row), K, x, xs, dots);
    case WeightFormat::Q4_0:  // gemv_rows sends 4-bit rows to dot_rows_q4_avx2 with x's block sums
    case WeightFormat::Q4_1: return dot_rows_scalar(w, row, x, xs, M, dots);
  }
}

}  // namespace

CELER_AVX2 void dot_rows_avx2(const PackedWeight& w, int64_t row, const float* x, int64_t x_stride, int64_t M,
                              float* dots) {
  switch (M) {
    case 1: return dot_rows_m<1>(w, row, x, x_stride, dots);
    case 2: return dot_rows_m<2>(w, row, x, x_stride, dots);
    case 3: return dot_rows_m<3>(w, row, x, x_stride, dots);
    default: return dot_rows_m<4>(w, row, x, x_stride, dots);
  }
}

CELER_AVX2 void dot_rows_q4_avx2(const PackedWeight& w, int64_t row, const float* x, int64_t x_stride, int64_t M,
                                 const float* x_sums, float* dots) {
  switch (M) {
    case 1: return dot_q4_rows_m<1>(w, row, x, x_stride, x_sums, dots);
    case 2: return dot_q4_rows_m<2>(w, row, x, x_stride, x_sums, dots);
    case 3: return dot_q4_rows_m<3>(w, row, x, x_stride, x_sums, dots);
    default: return dot_q4_rows_m<4>(w, row, x, x_stride, x_sums, dots);
  }
}

}  // namespace celer::cpu::kernels
#else
#include "backend/cpu/gemv.h"
namespace celer::cpu::kernels {
void dot_rows_avx2(const PackedWeight& w, int64_t row, const float* x, int64_t xs, int64_t M, float* dots) {
  dot_rows_scalar(w, row, x, xs, M, dots);  // never chosen: simd.h reports no AVX2 here
}
void dot_rows_q4_avx2(const PackedWeight& w, int64_t row, const float* x, int64_t xs, int64_t M, const float*,
                      float* dots) {
  dot_rows_scalar(w, row, x, xs, M, dots);
}
}  // namespace celer::cpu::kernels
#endif
