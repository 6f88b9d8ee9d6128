// The bf16 prefill GEMM on AMX tiles (gemm.h): y (M, N) = x (M, K) @ W^T with tdpbf16ps, which
// adds a 16 x 32 bf16 tile of activations times a 32 x 16 tile of weight pairs into a 16 x 16
// f32 tile in one instruction (16x the work of a vdpbf16ps).
//  - x is rounded to bf16 and packed once per call: K block by K block, 16-row panel by panel,
//    as a run of 1 KiB tiles (16 rows x 16 input pairs), so each tile load reads one block;
//  - the weights are packed as for the vdpbf16ps tile (pack_weight_block, pairs), whose panel of
//    32 rows x 16 units holds two B tiles side by side (a row stride of 128 bytes);
//  - the kernel keeps a 32 x 32 block of outputs in four of the eight tile registers, with two
//    activation and two weight tiles, and adds it to y through a small buffer at the end of each
//    K block (bias and old y as gemm_rows_avx512 does).
// The blocking was measured on a 2-core Sapphire-Rapids-class virtual machine, where tile loads
// that miss L1 cost far more than vector loads: K blocks of 1024 inputs (the activations'
// block, 2 KiB per row, stays in L2 for M <= kAmxMaxRows), the K block outermost so each block
// of activations is read from memory once, 128 weight rows packed at a time, and each pair of
// activation panels kept while the four weight panels pass. All buffers sit on huge pages
// (LinearScratch): on 4 KiB pages TLB misses cut the tiles' rate by up to 3x.
// Compiled for AMX whatever the build's flags; linear.cpp calls it only when cpu_has_amx_bf16().
#include "backend/cpu/quiet_intrinsics.h"
#include "backend/cpu/gemm.h"

#include <algorithm>
#include <stdexcept>

namespace celer::cpu {

namespace {
constexpr int64_t kUnitsPerTile = 16;  // input pairs (32-bit units) per tile row: 64 bytes
int64_t padded_units(int64_t units) { return (units + kUnitsPerTile - 1) / kUnitsPerTile * kUnitsPerTile; }
constexpr int64_t kBlockInputs = 2 * kAmxKc;
static_assert(kAmxKc % kUnitsPerTile == 0, "full K blocks need no padding");
}  // namespace

int64_t amx_panels(int64_t M) { return (M + kAmxRows - 1) / kAmxRows; }

int64_t amx_activation_words(int64_t M, int64_t K) {
  const int64_t full = K / kBlockInputs, last = K % kBlockInputs;
  return amx_panels(M) * kAmxRows * (full * kAmxKc + padded_units((last + 1) / 2));
}

}  // namespace celer::cpu

#if defined(__x86_64__)
#include "backend/cpu/avx512.h"
#include "backend/cpu/lane_masks.h"

#define CELER_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c,amx-tile,amx-bf16")))

namespace celer::cpu {
namespace {

// Palette 1, all eight tiles 16 rows x 64 bytes: C0..C3 = tiles 0-3, A0/A1 = 4/5, B0/B1 = 6/7.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

CELER_AMX void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) config.bytes_per_row[t] = 64, config.rows[t] = 16;
  _tile_loadconfig(&config);
}

// One 16 x 16 output tile's sums (in `c`, row by row) into y: the first K block adds the bias
// and, when accumulating, the old y; later blocks add to y.
CELER_AVX512 void store_tile(const float* c, float* y, int64_t ys, int64_t rows, int64_t cols, bool add_old,
                             const float* bias) {
  const __mmask16 mask = first_lanes16(cols);
  const __m512 b = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias) : _mm512_setzero_ps();
  for (int64_t i = 0; i < rows; ++i, y += ys) {
    __m512 v = _mm512_add_ps(_mm512_load_ps(c + 16 * i), b);
    if (add_old) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, y));
    _mm512_mask_storeu_ps(y, mask, v);
  }
}

// Tiles C0..C3 (or C0, C1 when !Two) over `groups` steps of 16 units: C(2i + j) += A_i B_j,
// A_i the activation panel i (a, then a + a_next), B_j the weight panel's half j. Split (the
// bf16x3 form of MatmulPrecision::High): also += A_i B'_j + A'_i B_j, the primes the residual
// parts (a + a_residual, b + b_residual); 12 products on 10 tile loads per step.
template <bool Two, bool Split>
CELER_AMX void multiply_tiles(const uint32_t* a, int64_t a_next, int64_t a_residual, const float* b,
                              int64_t b_residual, int64_t groups, float (*c)[256]) {
  _tile_zero(0);
  _tile_zero(1);
  if constexpr (Two) {
    _tile_zero(2);
    _tile_zero(3);
  }
  // (tile numbers are part of the instruction: no loops over them)
  auto multiply = [&]() CELER_AMX {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if constexpr (Two) {
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  };
  for (int64_t g = 0; g < groups; ++g, a += kAmxRows * kUnitsPerTile, b += kUnitsPerTile * kGemmNr) {
    _tile_loadd(6, b, kGemmNr * 4);
    _tile_loadd(7, b + 16, kGemmNr * 4);
    _tile_loadd(4, a, 64);
    if constexpr (Two) _tile_loadd(5, a + a_next, 64);
    multiply();
    if constexpr (Split) {
      _tile_loadd(6, b + b_residual, kGemmNr * 4);
      _tile_loadd(7, b + b_residual + 16, kGemmNr * 4);
      multiply();
      _tile_loadd(6, b, kGemmNr * 4);
      _tile_loadd(7, b + 16, kGemmNr * 4);
      _tile_loadd(4, a + a_residual, 64);
      if constexpr (Two) _tile_loadd(5, a + a_next + a_residual, 64);
      multiply();
    }
  }
  _tile_stored(0, c[0], 64);
  _tile_stored(1, c[1], 64);
  if constexpr (Two) {
    _tile_stored(2, c[2], 64);
    _tile_stored(3, c[3], 64);
  }
}

}  // namespace

CELER_AVX512_BF16 void pack_activations_amx(const float* x, int64_t xs, int64_t M, int64_t K, int64_t p0, int64_t p1,
                                            uint32_t* out, uint32_t* residual_out) {
  const int64_t P = amx_panels(M);
  for (int64_t k0 = 0; k0 < K; k0 += kBlockInputs) {
    const int64_t kcb = std::min(kBlockInputs, K - k0), units = padded_units((kcb + 1) / 2);
    uint32_t* block = out + P * kAmxRows * (k0 / 2);  // earlier blocks are all full
    for (int64_t p = p0; p < p1; ++p) {
      uint32_t* tile = block + p * kAmxRows * units;
      for (int64_t u0 = 0; u0 < units; u0 += kUnitsPerTile, tile += kAmxRows * kUnitsPerTile) {
        const int64_t n = kcb - 2 * u0;  // inputs left in the block (32 per tile row)
        for (int64_t i = 0; i < kAmxRows; ++i) {
          const int64_t m = p * kAmxRows + i;
          __m512i pairs = _mm512_setzero_si512(), rest = _mm512_setzero_si512();
          if (m < M) {
            const float* row = x + m * xs + k0 + 2 * u0;
            const __m512 lo = _mm512_maskz_loadu_ps(first_lanes16(n), row);
            const __m512 hi = _mm512_maskz_loadu_ps(first_lanes16(n - 16), row + 16);
            pairs = residual_out != nullptr ? split_bf16_pairs(lo, hi, &rest) : bf16_pairs(lo, hi);
          }
          _mm512_storeu_si512(tile + i * kUnitsPerTile, pairs);
          if (residual_out != nullptr) _mm512_storeu_si512(residual_out + (tile - out) + i * kUnitsPerTile, rest);
        }
      }
    }
  }
}

CELER_AMX void gemm_rows_amx(const PackedWeight& w, int64_t r0, int64_t r1, const uint32_t* x, int64_t M, float* y,
                             int64_t y_stride, bool accumulate, bool split, float* scratch) {
  configure_tiles();  // (tile state is per thread)
  const int64_t K = w.cols, P = amx_panels(M);
  const int64_t x_residual = amx_activation_words(M, K);  // split: the residual x follows x
  float* const w_residual = scratch + kAmxWeightScratch;
  // Two activation panels at a time, or the last one alone (which ignores a_next); the residual
  // offsets go unused unless split.
  const auto pair_kernel = split ? multiply_tiles<true, true> : multiply_tiles<true, false>;
  const auto single_kernel = split ? multiply_tiles<false, true> : multiply_tiles<false, false>;
  alignas(64) float c[4][256];
  for (int64_t k0 = 0; k0 < K; k0 += kBlockInputs) {
    const int64_t kcb = std::min(kBlockInputs, K - k0), units = padded_units((kcb + 1) / 2);
    const uint32_t* block = x + P * kAmxRows * (k0 / 2);  // earlier blocks are all full
    for (int64_t rb = r0; rb < r1; rb += kAmxPanelRows) {
      const int64_t re = std::min(r1, rb + kAmxPanelRows), Q = (re - rb + kGemmNr - 1) / kGemmNr;
      // The block packed next: the next rows of this K block, else the first of the next block.
      WeightBlock next{re, std::min(r1, re + kAmxPanelRows), k0, kcb};
      if (re == r1 && k0 + kcb < K)
        next = {r0, std::min(r1, r0 + kAmxPanelRows), k0 + kcb, std::min(kBlockInputs, K - k0 - kcb)};
      else if (re == r1)
        next = {};
      pack_weight_block(w, {rb, re, k0, kcb}, /*pairs=*/true, units, scratch, next, split ? w_residual : nullptr);
      for (int64_t p = 0; p < P; p += 2) {
        const uint32_t* a = block + p * kAmxRows * units;
        const bool two = p + 1 < P;
        for (int64_t q = 0; q < Q; ++q) {
          const int64_t c0 = rb + q * kGemmNr, cols = std::min(kGemmNr, re - c0);
          const float* b = scratch + q * units * kGemmNr;
          (two ? pair_kernel : single_kernel)(a, kAmxRows * units, x_residual, b, kAmxWeightScratch,
                                              units / kUnitsPerTile, c);
          for (int i = 0; i < (two ? 2 : 1); ++i)
            for (int j = 0; j < 2 && 16 * j < cols; ++j) {
              const int64_t m0 = (p + i) * kAmxRows;
              store_tile(c[2 * i + j], y + m0 * y_stride + c0 + 16 * j, y_stride, std::min(kAmxRows, M - m0),
                         cols - 16 * j, k0 > 0 || accumulate,
                         k0 == 0 && w.bias != nullptr ? w.bias + c0 + 16 * j : nullptr);
            }
        }
      }
    }
  }
  _tile_release();  // a thread holding no tile state saves and restores less on a switch
}

CELER_AMX double amx_peak_loop(int64_t iterations, float* sink) {
  configure_tiles();
  alignas(64) uint32_t operand[kAmxRows * kUnitsPerTile] = {};
  alignas(64) float c[256];
  _tile_zero(0);  // (tile numbers are part of the instruction: no loops over them)
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, operand, 64);
  _tile_loadd(5, operand, 64);
  _tile_loadd(6, operand, 64);
  _tile_loadd(7, operand, 64);
  for (int64_t n = 0; n < iterations; ++n) {  // four independent accumulators
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  *sink = c[0];
  _tile_release();
  return double(iterations) * 4 * (2.0 * 16 * 16 * 32);
}

}  // namespace celer::cpu
#else
namespace celer::cpu {
void pack_activations_amx(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, uint32_t*, uint32_t*) {
  throw std::logic_error("the AMX GEMM is not built for this architecture");  // never chosen: no AMX here
}
void gemm_rows_amx(const PackedWeight&, int64_t, int64_t, const uint32_t*, int64_t, float*, int64_t, bool, bool, float*) {
  throw std::logic_error("the AMX GEMM is not built for this architecture");
}
double amx_peak_loop(int64_t, float*) { throw std::logic_error("the AMX GEMM is not built for this architecture"); }
}  // namespace celer::cpu
#endif
