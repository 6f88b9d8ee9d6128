// The AVX-512 prefill GEMM (gemm.h), compiled for that target whatever the build's flags;
// linear.cpp calls it only when the CPU has AVX-512 and the level is avx512.
#include "backend/cpu/quiet_intrinsics.h"
#include "backend/cpu/gemm.h"

#include <algorithm>
#include <atomic>

#include "backend/cpu/lane_masks.h"
#include "backend/cpu/simd.h"
#include "backend/cpu/timed_choice.h"
#include "core/error.h"

namespace celer::cpu {

namespace {
// Units of a K block: one input (f32) or a pair of inputs (bf16 pairs, one 32-bit unit).
int64_t block_units(int64_t kcb, bool pairs) { return pairs ? (kcb + 1) / 2 : kcb; }
// Inputs per full K block: the same bytes of packed weights either way.
int64_t block_inputs(bool pairs) { return pairs ? 2 * kGemmKc : kGemmKc; }
constexpr int64_t kPeakLoopAccumulators = 12;  // independent multiply-add chains
}  // namespace

bool gemm_avx512_active() { return simd_level() == SimdLevel::Avx512; }

namespace {
// Whether vdpbf16ps multiply-adds faster than f32 FMAs here: on AMD Zen 4 it does twice as many
// per second (two products per lane, the FMAs' pipes); on Intel Sapphire Rapids half as many
// (one port against the FMAs' two), and widening bf16 to f32 in the weight pack wins. Timed
// once (~0.3 ms runs, timed_choice.h): a context switch cannot flip a factor of two.
bool bf16_pairs_outrun_fmas() {
  static const bool faster = [] {
    constexpr int64_t kIterations = int64_t(1) << 15;
    float sink = 0.0f;
    const double ratio = best_time_ratio([&] { multiply_add_peak_loop(Bf16Gemm::Widened, kIterations, &sink); },
                                         [&] { multiply_add_peak_loop(Bf16Gemm::Pairs, kIterations, &sink); });
    return ratio < 2.0;  // the pairs loop does twice the flops per instruction
  }();
  return faster;
}

std::atomic<int> g_bf16_path{-1};  // set_gemm_bf16_path; -1: not forced
}  // namespace

std::string bf16_gemm_name(Bf16Gemm path) {
  switch (path) {
    case Bf16Gemm::Pairs: return "pairs";
    case Bf16Gemm::Amx: return "amx";
    default: return "widened";
  }
}

std::vector<Bf16Gemm> bf16_gemm_paths() {
  std::vector<Bf16Gemm> out{Bf16Gemm::Widened};
  if (cpu_has_avx512_bf16()) out.push_back(Bf16Gemm::Pairs);
  if (cpu_has_amx_bf16()) out.push_back(Bf16Gemm::Amx);
  return out;
}

void set_gemm_bf16_path(const Bf16Gemm* path) {
  if (path != nullptr) {
    const auto paths = bf16_gemm_paths();
    require(std::find(paths.begin(), paths.end(), *path) != paths.end(),
            "this CPU cannot run the " + bf16_gemm_name(*path) + " bf16 GEMM");
  }
  g_bf16_path.store(path == nullptr ? -1 : int(*path));
}

Bf16Gemm gemm_bf16_path() {
  const int forced = g_bf16_path.load(std::memory_order_relaxed);
  if (forced >= 0) return Bf16Gemm(forced);
  if (cpu_has_amx_bf16()) return Bf16Gemm::Amx;
  return cpu_has_avx512_bf16() && bf16_pairs_outrun_fmas() ? Bf16Gemm::Pairs : Bf16Gemm::Widened;
}

bool gemm_uses_bf16_pairs(WeightFormat format) { return gemm_instruction(format) != Bf16Gemm::Widened; }

bool gemm_uses_amx(WeightFormat format) { return gemm_instruction(format) == Bf16Gemm::Amx; }

bool gemm_splits(WeightFormat format, MatmulPrecision precision) {
  return precision == MatmulPrecision::High && format != WeightFormat::BF16 && cpu_has_amx_bf16();
}

Bf16Gemm gemm_instruction(WeightFormat format) {
  return format == WeightFormat::BF16 ? gemm_bf16_path() : Bf16Gemm::Widened;
}

int64_t gemm_panels(int64_t M) { return (M + kGemmMr - 1) / kGemmMr; }

int64_t packed_activation_floats(int64_t M, int64_t K) {
  return std::max(gemm_panels(M) * kGemmMr * K, 2 * amx_activation_words(M, K));
}

}  // namespace celer::cpu

#if defined(__x86_64__)
#include "backend/cpu/avx512.h"

namespace celer::cpu {
namespace {

constexpr int kNrVecs = int(kGemmNr / 16);  // zmm vectors across a tile

// Inputs [k0 + i0, k0 + i0 + 16) of weight row r (i0 a multiple of 16) as the f32 values the
// kernels use; zeros past the block of kcb inputs.
CELER_AVX512 __m512 load_values(const PackedWeight& w, int64_t r, int64_t k0, int64_t kcb, int64_t i0) {
  const __mmask16 mask = first_lanes16(kcb - i0);
  if (mask == 0) return _mm512_setzero_ps();  // (a Q8 row has no scale that far)
  switch (w.format) {
    case WeightFormat::F32:
      return _mm512_maskz_loadu_ps(mask, w.f32 + r * w.cols + k0 + i0);
    case WeightFormat::BF16:
      return widen_bf16(_mm256_maskz_loadu_epi16(mask, w.bf16_row(r) + k0 + i0));
    case WeightFormat::Int8: {  // 16 values inside one block of 32
      const __m128i q = _mm_maskz_loadu_epi8(mask, w.int8_row(r) + k0 + i0);
      const float scale = _cvtsh_ss(w.int8_scales(r)[(k0 + i0) / kInt8Block]);
      return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(scale));
    }
    case WeightFormat::Q4_0:
    case WeightFormat::Q4_1: {  // half a block: the low (first 16) or high (last 16) nibbles
      const int64_t e = k0 + i0, b = e / 32;
      const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(w.q4_row(r) + 16 * b)));
      const __m512i q = (e / 16) % 2 == 0 ? _mm512_and_si512(v, _mm512_set1_epi32(0xF)) : _mm512_srli_epi32(v, 4);
      const float d = _cvtsh_ss(w.q4_scales(r)[b]);
      const float mn = w.format == WeightFormat::Q4_1 ? _cvtsh_ss(w.q4_mins(r)[b]) : -8.0f * d;
      return _mm512_maskz_mov_ps(mask, _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(d), _mm512_set1_ps(mn)));
    }
  }
  return _mm512_setzero_ps();
}

// Units [u0, u0 + 16) of weight row r in K block k0 (kcb inputs), as 16 32-bit lanes: f32
// values, or bf16 pairs (the bf16 format's own values, others rounded); zeros past the block.
// `residual` (pairs only; null: not wanted): what the rounding leaves out (split_bf16_pairs).
CELER_AVX512 __m512 load_units(const PackedWeight& w, int64_t r, int64_t k0, int64_t kcb, int64_t u0, bool pairs,
                               __m512* residual) {
  if (!pairs) return load_values(w, r, k0, kcb, u0);
  if (w.format == WeightFormat::BF16) {  // its own values are the pairs; nothing is left out
    if (residual != nullptr) *residual = _mm512_setzero_ps();
    return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(first_lanes32(kcb - 2 * u0), w.bf16_row(r) + k0 + 2 * u0));
  }
  const __m512 lo = load_values(w, r, k0, kcb, 2 * u0), hi = load_values(w, r, k0, kcb, 2 * u0 + 16);
  if (residual == nullptr) return _mm512_castsi512_ps(bf16_pairs(lo, hi));
  __m512i rest;
  const __m512i rounded = split_bf16_pairs(lo, hi, &rest);
  *residual = _mm512_castsi512_ps(rest);
  return _mm512_castsi512_ps(rounded);
}

}  // namespace

// Panel q holds, unit by unit, rows r0 + 32q .. r0 + 32q + 31 side by side.
CELER_AVX512 void pack_weight_block(const PackedWeight& w, const WeightBlock& block, bool pairs, int64_t units_padded,
                                    float* out, const WeightBlock& next, float* residual_out) {
  const auto [r0, r1, k0, kcb] = block;
  const int64_t units = block_units(kcb, pairs), groups = (r1 - r0 + 15) / 16;
  const int64_t next_per_group = (next.r1 - next.r0 + groups - 1) / groups;  // next's rows, spread over the groups
  // Units [u0, u0 + 16) of 16 rows, transposed in place, into the panel at `panel`; the
  // lanes past the block are zeros and fill the padding.
  auto store_units = [&](float* panel, int64_t u0, __m512 (&v)[16]) CELER_AVX512 {
    transpose16(v);
    for (int64_t u = u0; u < std::min(units_padded, u0 + 16); ++u) _mm512_storeu_ps(panel + u * kGemmNr, v[u - u0]);
  };
  __m512 v[16], rest[16];
  for (int64_t g = 0; g < groups; ++g) {  // 16 rows at a time
    const int64_t offset = (g / kNrVecs) * units_padded * kGemmNr + (g % kNrVecs) * 16;
    for (int64_t r = next.r0 + g * next_per_group; r < std::min(next.r1, next.r0 + (g + 1) * next_per_group); ++r)
      prefetch_row_inputs(w, r, next.k0, next.kcb);
    for (int64_t u0 = 0; u0 < units; u0 += 16) {
      for (int i = 0; i < 16; ++i) {
        const int64_t r = r0 + g * 16 + i;
        rest[i] = _mm512_setzero_ps();
        v[i] = r < r1 ? load_units(w, r, k0, kcb, u0, pairs, residual_out ? &rest[i] : nullptr) : _mm512_setzero_ps();
      }
      store_units(out + offset, u0, v);
      if (residual_out != nullptr) store_units(residual_out + offset, u0, rest);
    }
    for (float* panel : {out, residual_out})
      if (panel != nullptr)
        for (int64_t u = (units + 15) / 16 * 16; u < units_padded; ++u)
          _mm512_storeu_ps(panel + offset + u * kGemmNr, _mm512_setzero_ps());
  }
}

// Layout: K block by K block; within a block, panel by panel; within a panel, unit by unit,
// the kGemmMr rows' values side by side (zeros past row M or past the block's inputs). Each
// row's next 16 units in a register (f32 values, rounded, or bf16 pairs), then a register
// transpose turns the panel's rows into units.
CELER_AVX512 void pack_activations(const float* x, int64_t xs, int64_t M, int64_t K, bool pairs, bool round_bf16,
                                   int64_t p0, int64_t p1, float* out) {
  const int64_t P = gemm_panels(M);
  for (int64_t k0 = 0; k0 < K; k0 += block_inputs(pairs)) {
    const int64_t kcb = std::min(block_inputs(pairs), K - k0), units = block_units(kcb, pairs);
    float* block = out + P * kGemmMr * block_units(k0, pairs);  // earlier blocks are all full
    for (int64_t p = p0; p < p1; ++p) {
      float* panel = block + p * kGemmMr * units;
      for (int64_t u0 = 0; u0 < units; u0 += 16) {
        __m512 v[16];
        for (int64_t i = 0; i < 16; ++i) {
          const int64_t m = p * kGemmMr + i;
          v[i] = _mm512_setzero_ps();
          if (i >= kGemmMr || m >= M) continue;
          const float* row = x + m * xs + k0;
          if (pairs) {
            const int64_t n = kcb - 2 * u0;  // inputs left (two per unit)
            v[i] = _mm512_castsi512_ps(bf16_pairs(_mm512_maskz_loadu_ps(first_lanes16(n), row + 2 * u0),
                                                  _mm512_maskz_loadu_ps(first_lanes16(n - 16), row + 2 * u0 + 16)));
          } else {
            v[i] = _mm512_maskz_loadu_ps(first_lanes16(kcb - u0), row + u0);
            if (round_bf16)
              v[i] = widen_bf16(round_to_bf16(v[i]));
          }
        }
        transpose16(v);
        constexpr __mmask16 kPanelRows = (1u << kGemmMr) - 1;
        for (int64_t u = u0; u < std::min(units, u0 + 16); ++u) _mm512_mask_storeu_ps(panel + u * kGemmMr, kPanelRows, v[u - u0]);
      }
    }
  }
}

namespace {

// How a tile's sums meet y: the first K block adds the bias and, when accumulating, the old
// y; later blocks add to y.
struct TileStore {
  float* y;
  int64_t ys;
  int rows;                // valid activation rows (<= kGemmMr)
  __mmask16 mask[kNrVecs];  // valid outputs in each vector of the tile
  bool add_old;
  const float* bias;  // null, or the bias of the tile's first output
};

CELER_AVX512 inline void store_tile(const __m512 (&acc)[kGemmMr][kNrVecs], const TileStore& s) {
  __m512 bias[kNrVecs];
  for (int j = 0; j < kNrVecs; ++j)
    bias[j] = s.bias ? _mm512_maskz_loadu_ps(s.mask[j], s.bias + 16 * j) : _mm512_setzero_ps();
#pragma GCC unroll 12
  for (int i = 0; i < kGemmMr; ++i) {  // constant bounds keep acc in registers
    if (i >= s.rows) break;
    float* y = s.y + i * s.ys;
#pragma GCC unroll 4
    for (int j = 0; j < kNrVecs; ++j) {
      __m512 c = _mm512_add_ps(acc[i][j], bias[j]);
      if (s.add_old) c = _mm512_add_ps(c, _mm512_maskz_loadu_ps(s.mask[j], y + 16 * j));
      _mm512_mask_storeu_ps(y + 16 * j, s.mask[j], c);
    }
  }
}

// The kGemmMr x kGemmNr tile over `units` units: f32 FMAs, or over bf16 pairs vdpbf16ps (two
// products per output). Compiled for the wider target; the f32 tile holds FMAs only.
template <bool Pairs>
CELER_AVX512_BF16 void tile(const float* a, const float* b, int64_t units, const TileStore& s) {
  __m512 acc[kGemmMr][kNrVecs];
#pragma GCC unroll 12
  for (int i = 0; i < kGemmMr; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNrVecs; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t u = 0; u < units; ++u, a += kGemmMr, b += kGemmNr) {
    __m512 w[kNrVecs];  // (the packed weights come from L2: ask for them 8 units ahead)
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kGemmNr), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kGemmNr + 16), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int j = 0; j < kNrVecs; ++j) w[j] = _mm512_loadu_ps(b + 16 * j);
#pragma GCC unroll 12
    for (int i = 0; i < kGemmMr; ++i) {
      const __m512 x = _mm512_set1_ps(a[i]);  // a value, or a pair's 32 bits
#pragma GCC unroll 4
      for (int j = 0; j < kNrVecs; ++j) {
        if constexpr (Pairs)
          acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)x, (__m512bh)w[j]);
        else
          acc[i][j] = _mm512_fmadd_ps(x, w[j], acc[i][j]);
      }
    }
  }
  store_tile(acc, s);
}

// `step` is one multiply-add into an accumulator; kPeakLoopAccumulators independent chains
// hide its latency. Compiled for the wider target so that both steps inline into the loop (the
// f32 one contains FMAs only, so it runs on CPUs without AVX512_BF16).
template <class Step>
CELER_AVX512_BF16 void peak_loop(int64_t iterations, float* sink, Step step) {
  __m512 acc[kPeakLoopAccumulators];
#pragma GCC unroll 12
  for (int i = 0; i < kPeakLoopAccumulators; ++i) acc[i] = _mm512_set1_ps(float(i));
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < kPeakLoopAccumulators; ++i) acc[i] = step(acc[i]);
  }
  __m512 sum = _mm512_setzero_ps();
#pragma GCC unroll 12
  for (int i = 0; i < kPeakLoopAccumulators; ++i) sum = _mm512_add_ps(sum, acc[i]);
  *sink = _mm512_reduce_add_ps(sum);
}

CELER_AVX512 void fma_peak_loop(int64_t iterations, float* sink) {
  const __m512 a = _mm512_set1_ps(0.5f), b = _mm512_set1_ps(0.25f);
  peak_loop(iterations, sink, [&](__m512 c) CELER_AVX512 { return _mm512_fmadd_ps(a, c, b); });
}

CELER_AVX512_BF16 void dpbf16_peak_loop(int64_t iterations, float* sink) {
  const __m512bh a = (__m512bh)_mm512_set1_ps(0.5f), b = (__m512bh)_mm512_set1_ps(0.25f);
  peak_loop(iterations, sink, [&](__m512 c) CELER_AVX512_BF16 { return _mm512_dpbf16_ps(c, a, b); });
}

}  // namespace

double multiply_add_peak_loop(Bf16Gemm instruction, int64_t iterations, float* sink) {
  const double multiply_adds = double(iterations) * double(kPeakLoopAccumulators);
  switch (instruction) {
    case Bf16Gemm::Amx: return amx_peak_loop(iterations, sink);
    case Bf16Gemm::Pairs: return dpbf16_peak_loop(iterations, sink), 64 * multiply_adds;
    default: return fma_peak_loop(iterations, sink), 32 * multiply_adds;
  }
}

CELER_AVX512 void gemm_rows_avx512(const PackedWeight& w, int64_t r0, int64_t r1, const PackedActivations& x,
                                   float* y, int64_t y_stride, bool accumulate, float* scratch) {
  const int64_t K = w.cols, M = x.M, P = gemm_panels(M);
  const bool pairs = x.pairs;
  const float* packed = static_cast<const float*>(x.data);
  for (int64_t k0 = 0; k0 < K; k0 += block_inputs(pairs)) {
    const int64_t kcb = std::min(block_inputs(pairs), K - k0), units = block_units(kcb, pairs);
    const int64_t k1 = k0 + kcb;  // the next K block of the same rows
    pack_weight_block(w, {r0, r1, k0, kcb}, pairs, units, scratch,
                      k1 < K ? WeightBlock{r0, r1, k1, std::min(block_inputs(pairs), K - k1)} : WeightBlock{});
    const float* block = packed + P * kGemmMr * block_units(k0, pairs);
    for (int64_t p = 0; p < P; ++p) {
      const float* a = block + p * kGemmMr * units;
      for (int64_t q = 0; q * kGemmNr < r1 - r0; ++q) {
        const int64_t c0 = r0 + q * kGemmNr, cols = std::min(kGemmNr, r1 - c0);
        TileStore s{y + p * kGemmMr * y_stride + c0, y_stride, int(std::min(kGemmMr, M - p * kGemmMr)), {},
                    k0 > 0 || accumulate, k0 == 0 && w.bias != nullptr ? w.bias + c0 : nullptr};
        for (int j = 0; j < kNrVecs; ++j) s.mask[j] = first_lanes16(cols - 16 * j);
        const float* b = scratch + q * units * kGemmNr;
        if (s.add_old)  // the tile ends by adding to y: have its lines on the way meanwhile
          for (int i = 0; i < s.rows; ++i)
            for (int64_t c = 0; c < cols; c += 16) _mm_prefetch(reinterpret_cast<const char*>(s.y + i * y_stride + c), _MM_HINT_T0);
        if (pairs)
          tile<true>(a, b, units, s);
        else
          tile<false>(a, b, units, s);
      }
    }
  }
}

}  // namespace celer::cpu
#else
#include <stdexcept>
namespace celer::cpu {
double multiply_add_peak_loop(Bf16Gemm, int64_t, float*) {
  throw std::logic_error("the AVX-512 peak loop is not built for this architecture");
}
void pack_activations(const float*, int64_t, int64_t, int64_t, bool, bool, int64_t, int64_t, float*) {
  throw std::logic_error("the AVX-512 GEMM is not built for this architecture");
}
void pack_weight_block(const PackedWeight&, const WeightBlock&, bool, int64_t, float*, const WeightBlock&, float*) {
  throw std::logic_error("the AVX-512 GEMM is not built for this architecture");
}
void gemm_rows_avx512(const PackedWeight&, int64_t, int64_t, const PackedActivations&, float*, int64_t, bool, float*) {
  throw std::logic_error("the AVX-512 GEMM is not built for this architecture");  // never chosen: no AVX-512 here
}
}  // namespace celer::cpu
#endif
