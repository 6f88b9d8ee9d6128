// AVX-512 dot-product kernels (AVX512F/BW/VL + F16C), compiled for that target whatever the
// build's flags; gemv_rows calls them only when the CPU has them (simd.h).
#if defined(__x86_64__)
#include "backend/cpu/quiet_intrinsics.h"
#include <algorithm>
#include <type_traits>

#include "backend/cpu/avx512.h"
#include "backend/cpu/gemv.h"
#include "backend/cpu/lane_masks.h"

namespace celer::cpu::kernels {
namespace {


// 16 bf16 values widened to f32: a bf16 is the top half of an f32.
CELER_AVX512 inline __m512 load_bf16(const uint16_t* p) {
  return widen_bf16(_mm256_loadu_si256((const __m256i*)p));
}
CELER_AVX512 inline __m512 load_bf16_masked(const uint16_t* p, __mmask16 m) {
  return widen_bf16(_mm256_maskz_loadu_epi16(m, p));
}
CELER_AVX512 inline __m512 load_i8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)));
}
CELER_AVX512 inline __m512 load_i8_masked(const int8_t* p, __mmask16 m) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

// Software prefetch distance in bytes: one stream per thread is not enough for the hardware
// prefetcher alone to keep DRAM busy (it stops at page boundaries and runs only so far ahead).
constexpr int64_t kPrefetchBytes = 2048;
inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0); }

// Weight values 16 at a time, widened to f32, for f32 and bf16 rows.
struct F32Row {
  const float* w;
  CELER_AVX512 __m512 load(int64_t k) const { return _mm512_loadu_ps(w + k); }
  CELER_AVX512 __m512 load_masked(int64_t k, __mmask16 m) const { return _mm512_maskz_loadu_ps(m, w + k); }
  void prefetch32(int64_t k) const {  // the 128 bytes of 32 values
    prefetch(w + k);
    prefetch(w + k + 16);
  }
};
struct Bf16Row {
  const uint16_t* w;
  CELER_AVX512 __m512 load(int64_t k) const { return load_bf16(w + k); }
  CELER_AVX512 __m512 load_masked(int64_t k, __mmask16 m) const { return load_bf16_masked(w + k, m); }
  void prefetch32(int64_t k) const { prefetch(w + k); }  // the 64 bytes of 32 values
};

// dots[m] = sum_k row[k] * x_m[k]: two accumulators per activation row (32 values per pass).
template <int M, class Row>
CELER_AVX512 void dot_dense(Row row, int64_t K, const float* x, int64_t xs, float* dots) {
  __m512 acc0[M], acc1[M];
  for (int m = 0; m < M; ++m) acc0[m] = acc1[m] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    row.prefetch32(k);
    const __m512 w0 = row.load(k), w1 = row.load(k + 16);
    for (int m = 0; m < M; ++m) {
      acc0[m] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + m * xs + k), acc0[m]);
      acc1[m] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + m * xs + k + 16), acc1[m]);
    }
  }
  for (; k < K; k += 16) {  // the tail, masked: never reads past a row
    const __mmask16 mask = first_lanes16(K - k);
    const __m512 w0 = row.load_masked(k, mask);
    for (int m = 0; m < M; ++m) acc0[m] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(mask, x + m * xs + k), acc0[m]);
  }
  for (int m = 0; m < M; ++m) dots[m] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[m], acc1[m]));
}

// Q8: per block of 32, the int8 dot in f32, then scaled once by the block's fp16 scale.
// Two accumulators per activation row, alternating between blocks: with one, each block
// waits for the previous block's FMA (4 cycles), more than the block's own work.
template <int M>
CELER_AVX512 void dot_q8(const int8_t* q, const uint16_t* scales, int64_t K, const float* x, int64_t xs, float* dots) {
  __m512 acc[2][M];
  for (int m = 0; m < M; ++m) acc[0][m] = acc[1][m] = _mm512_setzero_ps();
  int64_t k = 0, blk = 0;
  // One full block: the int8 dot in f32, scaled once by the block's scale, into acc[which].
  auto block = [&](__m512 s, int which) CELER_AVX512 {
    const __m512 q0 = load_i8(q + k), q1 = load_i8(q + k + 16);
    for (int m = 0; m < M; ++m) {
      const __m512 t = _mm512_fmadd_ps(q1, _mm512_loadu_ps(x + m * xs + k + 16),
                                       _mm512_mul_ps(q0, _mm512_loadu_ps(x + m * xs + k)));
      acc[which][m] = _mm512_fmadd_ps(t, s, acc[which][m]);
    }
  };
  // 16 blocks at a time: their scales widened in one instruction, then broadcast from memory
  // (a load, not a shuffle: the shuffle port is busy sign-extending the int8 values).
  for (; k + 16 * kInt8Block <= K; ) {
    alignas(64) float sc[16];
    _mm512_store_ps(sc, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(scales + blk))));
    for (int j = 0; j < 16; j += 2) {
      prefetch(q + k);  // one 64-byte line per two blocks
      block(_mm512_set1_ps(sc[j]), 0);
      k += kInt8Block, ++blk;
      block(_mm512_set1_ps(sc[j + 1]), 1);
      k += kInt8Block, ++blk;
    }
  }
  for (; k + kInt8Block <= K; k += kInt8Block, ++blk) block(_mm512_set1_ps(_cvtsh_ss(scales[blk])), 0);
  if (k < K) {  // a short last block
    const int64_t n = K - k;
    const __mmask16 m0 = first_lanes16(n), m1 = first_lanes16(n - 16);
    const __m512 q0 = load_i8_masked(q + k, m0), q1 = load_i8_masked(q + k + 16, m1);
    const __m512 s = _mm512_set1_ps(_cvtsh_ss(scales[blk]));
    for (int m = 0; m < M; ++m) {
      const __m512 t = _mm512_fmadd_ps(q1, _mm512_maskz_loadu_ps(m1, x + m * xs + k + 16),
                                       _mm512_mul_ps(q0, _mm512_maskz_loadu_ps(m0, x + m * xs + k)));
      acc[0][m] = _mm512_fmadd_ps(t, s, acc[0][m]);
    }
  }
  for (int m = 0; m < M; ++m) dots[m] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][m], acc[1][m]));
}

// The scales (d) and minimums (m) of up to kQ4Chunk blocks of a 4-bit row, widened to f32
// so that each block broadcasts its own from memory.
constexpr int64_t kQ4Chunk = 128;
struct Q4Scales {
  alignas(64) float d[kQ4Chunk], mn[kQ4Chunk];
  // Blocks [c0, c0 + n) of a row (n <= kQ4Chunk); Q4_0 (mins null): m = -8 d.
  CELER_AVX512 void widen(const uint16_t* scales, const uint16_t* mins, int64_t c0, int64_t n) {
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 live = first_lanes16(n - j);
      const __m512 dv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, scales + c0 + j));
      _mm512_store_ps(d + j, dv);
      _mm512_store_ps(mn + j, mins != nullptr ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, mins + c0 + j))
                                              : _mm512_mul_ps(dv, _mm512_set1_ps(-8.0f)));
    }
  }
};

// Q4_0 / Q4_1: per block of 32, the block's 16 possible weights q * d + m (one FMA on the
// codes 0..15; q * d is exact, Q4_0's m is -8 d) form a table, and each 4-bit code picks its
// weight from it (vpermps reads an index's low 4 bits: the low nibble needs no mask), then
// multiplied by x: float32 activations times the exact weights, the same values as
// converting each code. Two lookups replace two conversions and two multiply-adds a block
// (1.3x the rate); the scales of a chunk of blocks are widened first (the split layout,
// packed_weight.h, gives 16 in one load) and the blocks run in one branch-free loop (a
// per-block test of the row's end cost ~20%).
template <int M, bool kMin>
CELER_AVX512 void dot_q4(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t K, const float* x,
                         int64_t xs, float* dots) {
  // Four accumulators per activation row, named at compile time (an index known only at run
  // time keeps them in memory): the low and high halves of even and odd blocks.
  __m512 acc[4][M];
  for (int i = 0; i < 4; ++i)
    for (int m = 0; m < M; ++m) acc[i][m] = _mm512_setzero_ps();
  const __m512 codes = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  // Block b at inputs k = 32 b: 16 bytes, value j in the low nibble of byte j, j + 16 in the
  // high; x's 32 inputs read through masks m0, m1 (only a short last block has lanes off).
  auto block = [&](int64_t b, float d, float mn, __m512* lo, __m512* hi, __mmask16 m0, __mmask16 m1) CELER_AVX512 {
    const int64_t k = 32 * b;
    const __m512 table = _mm512_fmadd_ps(codes, _mm512_set1_ps(d), _mm512_set1_ps(mn));
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(q + 16 * b)));
    const __m512 w0 = _mm512_permutexvar_ps(v, table);
    const __m512 w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
    for (int m = 0; m < M; ++m) {
      lo[m] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m0, x + m * xs + k), lo[m]);
      hi[m] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(m1, x + m * xs + k + 16), hi[m]);
    }
  };
  const int64_t full = K / 32;  // blocks of 32 inputs; a short last block after them
  const __mmask16 all = 0xFFFF;
  Q4Scales chunk;
  for (int64_t c0 = 0; c0 < full; c0 += kQ4Chunk) {
    const int64_t n = std::min<int64_t>(kQ4Chunk, full - c0);
    chunk.widen(scales, kMin ? mins : nullptr, c0, n);
    const float *d = chunk.d, *mn = chunk.mn;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {  // 4 blocks: one 64-byte line of codes
      prefetch(q + 16 * (c0 + j));
      block(c0 + j, d[j], mn[j], acc[0], acc[1], all, all);
      block(c0 + j + 1, d[j + 1], mn[j + 1], acc[2], acc[3], all, all);
      block(c0 + j + 2, d[j + 2], mn[j + 2], acc[0], acc[1], all, all);
      block(c0 + j + 3, d[j + 3], mn[j + 3], acc[2], acc[3], all, all);
    }
    for (; j < n; ++j) block(c0 + j, d[j], mn[j], acc[0], acc[1], all, all);
  }
  if (full * 32 < K) {  // a short last block: x masked, never read past its row
    const float d = _cvtsh_ss(scales[full]), mn = kMin ? _cvtsh_ss(mins[full]) : -8.0f * d;
    const int64_t left = K - 32 * full;
    block(full, d, mn, acc[2], acc[3], first_lanes16(left), first_lanes16(left - 16));
  }
  for (int m = 0; m < M; ++m)
    dots[m] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0][m], acc[1][m]), _mm512_add_ps(acc[2][m], acc[3][m])));
}

// bf16 weights on bf16 input pairs: one vdpbf16ps per 32 weights and activation row (two
// products per f32 lane), no widening. dots[m] for m < M. One 64-byte line per step and one
// accumulator: on the 1B model's decode this read ~20% more bytes per second than two lines
// per step into two accumulators (the chain of dependent vdpbf16ps still outruns DRAM).
template <int M>
CELER_AVX512_BF16 void dot_bf16_pairs(const uint16_t* w, int64_t K, const uint32_t* x, int64_t xs, float* dots) {
  const int64_t pairs = (K + 1) / 2;
  __m512 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; p += 16) {  // 32 weights, one 64-byte line; the tail masked
    prefetch(w + 2 * p);
    const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(first_lanes32(K - 2 * p), w + 2 * p);
    const __mmask16 xm = first_lanes16(pairs - p);
    for (int m = 0; m < M; ++m)
      acc[m] = _mm512_dpbf16_ps(acc[m], (__m512bh)_mm512_maskz_loadu_epi32(xm, x + m * xs + p), wv);
  }
  for (int m = 0; m < M; ++m) dots[m] = _mm512_reduce_add_ps(acc[m]);
}

// nrows rows from `row`, one at a time.
template <int M>
CELER_AVX512 void dot_rows_m(const PackedWeight& w, int64_t row, int64_t nrows, const float* x, int64_t xs,
                             float* dots) {
  const int64_t K = w.cols;
  for (int64_t r = row; r < row + nrows; ++r, dots += M) {
    switch (w.format) {
      case WeightFormat::F32: dot_dense<M>(F32Row{w.f32 + r * K}, K, x, xs, dots); break;
      case WeightFormat::BF16: dot_dense<M>(Bf16Row{w.bf16_row(r)}, K, x, xs, dots); break;
      case WeightFormat::Int8: dot_q8<M>(w.int8_row(r), w.int8_scales(r), K, x, xs, dots); break;
      case WeightFormat::Q4_0: dot_q4<M, false>(w.q4_row(r), w.q4_scales(r), nullptr, K, x, xs, dots); break;
      case WeightFormat::Q4_1: dot_q4<M, true>(w.q4_row(r), w.q4_scales(r), w.q4_mins(r), K, x, xs, dots); break;
    }
  }
}

}  // namespace

CELER_AVX512 void dot_rows_avx512(const PackedWeight& w, int64_t row, int64_t nrows, const float* x,
                                  int64_t x_stride, int64_t M, float* dots) {
  switch (M) {
    case 1: return dot_rows_m<1>(w, row, nrows, x, x_stride, dots);
    case 2: return dot_rows_m<2>(w, row, nrows, x, x_stride, dots);
    case 3: return dot_rows_m<3>(w, row, nrows, x, x_stride, dots);
    default: return dot_rows_m<4>(w, row, nrows, x, x_stride, dots);
  }
}

CELER_AVX512_BF16 void dot_rows_bf16_pairs_avx512(const PackedWeight& w, int64_t row, int64_t nrows,
                                                 const uint32_t* x, int64_t xs, int64_t M, float* dots) {
  auto rows = [&](auto m) CELER_AVX512_BF16 {
    for (int64_t i = 0; i < nrows; ++i) dot_bf16_pairs<decltype(m)::value>(w.bf16_row(row + i), w.cols, x, xs, dots + i * M);
  };
  switch (M) {
    case 1: return rows(std::integral_constant<int, 1>{});
    case 2: return rows(std::integral_constant<int, 2>{});
    case 3: return rows(std::integral_constant<int, 3>{});
    default: return rows(std::integral_constant<int, 4>{});
  }
}

}  // namespace celer::cpu::kernels
#else
#include <stdexcept>

#include "backend/cpu/gemv.h"
namespace celer::cpu::kernels {
void dot_rows_avx512(const PackedWeight& w, int64_t row, int64_t nrows, const float* x, int64_t xs, int64_t M,
                     float* dots) {
  for (int64_t i = 0; i < nrows; ++i) dot_rows_scalar(w, row + i, x, xs, M, dots + i * M);  // never chosen
}
void dot_rows_bf16_pairs_avx512(const PackedWeight&, int64_t, int64_t, const uint32_t*, int64_t, int64_t, float*) {
  throw std::logic_error("bf16 dot products are not built for this architecture");  // never chosen
}
}  // namespace celer::cpu::kernels
#endif
