// The AVX2 prefill GEMM (gemm.h), compiled for that target whatever the build's flags;
// linear.cpp calls it only when the SIMD level is avx2. The AVX-512 scheme in 16 ymm registers:
// a kAvx2Mr x kAvx2Nr tile is 12 accumulators, two weight vectors and one broadcast input.
#include "backend/cpu/quiet_intrinsics.h"
#include "backend/cpu/gemm.h"

#include <algorithm>

#include "backend/cpu/simd.h"
#include "core/tensor.h"

namespace celer::cpu {

bool gemm_avx2_active() { return simd_level() == SimdLevel::Avx2; }

int64_t avx2_panels(int64_t M) { return (M + kAvx2Mr - 1) / kAvx2Mr; }

}  // namespace celer::cpu

#if defined(__x86_64__)
#include "backend/cpu/avx2.h"

namespace celer::cpu {
namespace {

constexpr int kNrVecs = int(kAvx2Nr / 8);  // ymm vectors across a tile
// The AVX-512 layout's sizes bound this one's: packed_activation_floats and kGemmWeightScratch serve both.
static_assert(kGemmMr % kAvx2Mr == 0 && kGemmPanelRows % kAvx2Nr == 0);

// Inputs [e, e + 8) of weight row r (e a multiple of 8) as f32 values; zeros past the first
// n (n < 8 near the end of a K block: scalar, so that nothing past the row is read).
CELER_AVX2 __m256 load8(const PackedWeight& w, int64_t r, int64_t e, int64_t n) {
  if (n <= 0) return _mm256_setzero_ps();
  if (n < 8) {
    alignas(32) float tail[8] = {};
    unpack_inputs(w, r, e, n, tail);
    return _mm256_load_ps(tail);
  }
  switch (w.format) {
    case WeightFormat::F32:
      return _mm256_loadu_ps(w.f32 + r * w.cols + e);
    case WeightFormat::BF16: {
      const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.bf16_row(r) + e)));
      return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
    case WeightFormat::Int8: {  // 8 values inside one block of 32
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.int8_row(r) + e));
      const float scale = _cvtsh_ss(w.int8_scales(r)[e / kInt8Block]);
      return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(scale));
    }
    case WeightFormat::Q4_0:
    case WeightFormat::Q4_1: {  // a quarter of a block: 8 low or 8 high nibbles
      const int64_t b = e / 32, j = e % 32;
      const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.q4_row(r) + 16 * b + j % 16)));
      const __m256i q = j < 16 ? _mm256_and_si256(v, _mm256_set1_epi32(0xF)) : _mm256_srli_epi32(v, 4);
      const float d = _cvtsh_ss(w.q4_scales(r)[b]);
      const float mn = w.format == WeightFormat::Q4_1 ? _cvtsh_ss(w.q4_mins(r)[b]) : -8.0f * d;
      return _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_set1_ps(d), _mm256_set1_ps(mn));
    }
  }
  return _mm256_setzero_ps();
}

// Panel q of the block holds, input by input, rows r0 + 16q .. r0 + 16q + 15 side by side;
// 8 rows x 8 inputs at a time through a register transpose. Rows past r1 are zeros. Meanwhile
// it asks for the rows of `next` in L2 (pack_weight_block in gemm.h says why).
CELER_AVX2 void pack_weight_block_avx2(const PackedWeight& w, const WeightBlock& block, float* out,
                                       const WeightBlock& next) {
  const auto [r0, r1, k0, kcb] = block;
  const int64_t groups = (r1 - r0 + 7) / 8;
  const int64_t next_per_group = (next.r1 - next.r0 + groups - 1) / groups;  // next's rows, spread over the groups
  __m256 v[8];
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t r = next.r0 + g * next_per_group; r < std::min(next.r1, next.r0 + (g + 1) * next_per_group); ++r)
      prefetch_row_inputs(w, r, next.k0, next.kcb);
    float* panel = out + (g / kNrVecs) * kcb * kAvx2Nr + (g % kNrVecs) * 8;
    for (int64_t u0 = 0; u0 < kcb; u0 += 8) {
      for (int i = 0; i < 8; ++i) {
        const int64_t r = r0 + g * 8 + i;
        v[i] = r < r1 ? load8(w, r, k0 + u0, kcb - u0) : _mm256_setzero_ps();
      }
      transpose8(v);
      for (int64_t u = u0; u < std::min(kcb, u0 + 8); ++u) _mm256_storeu_ps(panel + u * kAvx2Nr, v[u - u0]);
    }
  }
  if (groups % kNrVecs != 0)  // the last panel's second half: no rows
    for (int64_t u = 0; u < kcb; ++u)
      _mm256_storeu_ps(out + (groups / kNrVecs) * kcb * kAvx2Nr + u * kAvx2Nr + 8, _mm256_setzero_ps());
}

// How a tile's sums meet y: the first K block adds the bias and, when accumulating, the old
// y; later blocks add to y.
struct TileStore {
  float* y;
  int64_t ys;
  int rows;                 // valid activation rows (<= kAvx2Mr)
  __m256i mask[kNrVecs];    // valid outputs in each vector of the tile
  bool add_old;
  const float* bias;  // null, or the bias of the tile's first output
};

// The kAvx2Mr x kAvx2Nr tile over `units` inputs: one FMA per loaded value.
CELER_AVX2 void tile(const float* a, const float* b, int64_t units, const TileStore& s) {
  __m256 acc[kAvx2Mr][kNrVecs];
#pragma GCC unroll 6
  for (int i = 0; i < kAvx2Mr; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < kNrVecs; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t u = 0; u < units; ++u, a += kAvx2Mr, b += kAvx2Nr) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kAvx2Nr), _MM_HINT_T0);  // (from L2)
    __m256 w[kNrVecs];
#pragma GCC unroll 2
    for (int j = 0; j < kNrVecs; ++j) w[j] = _mm256_loadu_ps(b + 8 * j);
#pragma GCC unroll 6
    for (int i = 0; i < kAvx2Mr; ++i) {
      const __m256 x = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 2
      for (int j = 0; j < kNrVecs; ++j) acc[i][j] = _mm256_fmadd_ps(x, w[j], acc[i][j]);
    }
  }
  __m256 bias[kNrVecs];
  for (int j = 0; j < kNrVecs; ++j)
    bias[j] = s.bias ? _mm256_maskload_ps(s.bias + 8 * j, s.mask[j]) : _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int i = 0; i < kAvx2Mr; ++i) {  // constant bounds keep acc in registers
    if (i >= s.rows) break;
    float* y = s.y + i * s.ys;
#pragma GCC unroll 2
    for (int j = 0; j < kNrVecs; ++j) {
      __m256 c = _mm256_add_ps(acc[i][j], bias[j]);
      if (s.add_old) c = _mm256_add_ps(c, _mm256_maskload_ps(y + 8 * j, s.mask[j]));
      _mm256_maskstore_ps(y + 8 * j, s.mask[j], c);
    }
  }
}

}  // namespace

// Layout: K block by K block; within a block, panel by panel; within a panel, input by input,
// the kAvx2Mr rows' values side by side (zeros past row M). 8 inputs of the panel's rows (and
// two rows of zeros) at a time through a register transpose.
CELER_AVX2 void pack_activations_avx2(const float* x, int64_t xs, int64_t M, int64_t K, bool round_bf16, int64_t p0,
                                      int64_t p1, float* out) {
  static_assert(kAvx2Mr <= 8, "a panel's rows fit one transpose");
  const int64_t P = avx2_panels(M);
  const __m256i panel_rows = first_lanes8(kAvx2Mr);
  for (int64_t k0 = 0; k0 < K; k0 += kGemmKc) {
    const int64_t kcb = std::min(kGemmKc, K - k0);
    float* block = out + P * kAvx2Mr * k0;  // earlier blocks are all full
    for (int64_t p = p0; p < p1; ++p) {
      float* panel = block + p * kAvx2Mr * kcb;
      for (int64_t u0 = 0; u0 < kcb; u0 += 8) {
        __m256 v[8];
        for (int64_t i = 0; i < 8; ++i) {
          const int64_t m = p * kAvx2Mr + i;
          v[i] = i < kAvx2Mr && m < M ? _mm256_maskload_ps(x + m * xs + k0 + u0, first_lanes8(kcb - u0))
                                      : _mm256_setzero_ps();
          if (round_bf16 && i < kAvx2Mr && m < M) {
            alignas(32) float values[8];
            _mm256_store_ps(values, v[i]);
            for (float& f : values) f = bf16_to_f32(f32_to_bf16(f));
            v[i] = _mm256_load_ps(values);
          }
        }
        transpose8(v);
        for (int64_t u = u0; u < std::min(kcb, u0 + 8); ++u) _mm256_maskstore_ps(panel + u * kAvx2Mr, panel_rows, v[u - u0]);
      }
    }
  }
}

CELER_AVX2 void gemm_rows_avx2(const PackedWeight& w, int64_t r0, int64_t r1, const PackedActivations& x, float* y,
                               int64_t y_stride, bool accumulate, float* scratch) {
  const int64_t K = w.cols, M = x.M, P = avx2_panels(M);
  const float* packed = static_cast<const float*>(x.data);
  for (int64_t k0 = 0; k0 < K; k0 += kGemmKc) {
    const int64_t kcb = std::min(kGemmKc, K - k0), k1 = k0 + kcb;  // k1: the next K block of the same rows
    pack_weight_block_avx2(w, {r0, r1, k0, kcb}, scratch,
                           k1 < K ? WeightBlock{r0, r1, k1, std::min(kGemmKc, K - k1)} : WeightBlock{});
    const float* block = packed + P * kAvx2Mr * k0;
    for (int64_t p = 0; p < P; ++p) {
      const float* a = block + p * kAvx2Mr * kcb;
      for (int64_t q = 0; q * kAvx2Nr < r1 - r0; ++q) {
        const int64_t c0 = r0 + q * kAvx2Nr, cols = std::min(kAvx2Nr, r1 - c0);
        TileStore s{y + p * kAvx2Mr * y_stride + c0, y_stride, int(std::min(kAvx2Mr, M - p * kAvx2Mr)), {},
                    k0 > 0 || accumulate, k0 == 0 && w.bias != nullptr ? w.bias + c0 : nullptr};
        for (int j = 0; j < kNrVecs; ++j) s.mask[j] = first_lanes8(cols - 8 * j);
        tile(a, scratch + q * kcb * kAvx2Nr, kcb, s);
      }
    }
  }
}

CELER_AVX2 double fma_peak_loop_avx2(int64_t iterations, float* sink) {
  constexpr int kChains = 12;  // independent FMA chains: more than latency x throughput
  const __m256 a = _mm256_set1_ps(0.5f), b = _mm256_set1_ps(0.25f);
  __m256 acc[kChains];
#pragma GCC unroll 12
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(float(i));
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(a, acc[i], b);
  }
  __m256 sum = _mm256_setzero_ps();
  for (int i = 0; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  *sink = lanes[0] + lanes[7];
  return 16.0 * double(kChains) * double(iterations);
}

}  // namespace celer::cpu
#else
#include <stdexcept>
namespace celer::cpu {
void pack_activations_avx2(const float*, int64_t, int64_t, int64_t, bool, int64_t, int64_t, float*) {
  throw std::logic_error("the AVX2 GEMM is not built for this architecture");
}
void gemm_rows_avx2(const PackedWeight&, int64_t, int64_t, const PackedActivations&, float*, int64_t, bool, float*) {
  throw std::logic_error("the AVX2 GEMM is not built for this architecture");  // never chosen: no AVX2 here
}
double fma_peak_loop_avx2(int64_t, float*) { throw std::logic_error("the AVX2 peak loop is not built for this architecture"); }
}  // namespace celer::cpu
#endif
