// The prefill GEMMs at the avx512 and avx2 levels: y (M, N) = x (M, K) @ W^T, our own kernels.
//  - x is packed once per call into panels of kGemmMr rows, K-block by K-block;
//  - each thread packs kGemmPanelRows weight rows x kGemmKc units at a time (transposed, widened
//    from bf16/int8 as needed) into its own scratch, where they stay in L1/L2 while every
//    activation panel streams past;
//  - a register tile of kGemmMr x kGemmNr outputs (24 of the 32 zmm registers) accumulates
//    with one FMA per loaded value.
// The avx2 level (gemm_avx2.cpp) runs the same scheme in 16 ymm registers: a kAvx2Mr x kAvx2Nr
// tile, every format's weights widened to f32 by the pack (its cost is shared by every
// activation panel: ~1% of the multiply-adds at 512 rows), f32 FMAs.
// The bf16 format multiplies bf16 activations by bf16 weights, as llama.cpp's BF16 type
// does, on one of three paths (Bf16Gemm): AMX tiles (tdpbf16ps, 16x16 outputs x 32 inputs per
// instruction) where the CPU and the OS allow them; else vdpbf16ps on pairs of inputs where
// that outruns f32 FMAs; else the plain f32 tile on the same rounded values. Products of two
// bf16 values are exact in f32, so the paths differ only in the order of the f32 sums.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/matmul_precision.h"
#include "backend/cpu/packed_weight.h"

namespace celer::cpu {

constexpr int64_t kGemmMr = 12;   // activation rows per register tile
constexpr int64_t kGemmNr = 32;   // weight rows per register tile (two zmm of outputs)
constexpr int64_t kGemmKc = 256;  // 32-bit units per K block: f32 inputs, or bf16 pairs
constexpr int64_t kGemmPanelRows = 64;  // weight rows a thread packs at a time (2 tiles wide)

// x (M, K) packed for the kernels; `pairs` when the values are bf16 pairs (dot-product form).
struct PackedActivations {
  const void* data = nullptr;
  int64_t M = 0, K = 0;
  bool pairs = false;
};

// Whether the AVX-512 GEMM runs (the CPU has AVX-512 and the SIMD level is avx512).
bool gemm_avx512_active();
// How the GEMM multiplies bf16 weights (at the avx512 level).
enum class Bf16Gemm {
  Widened,  // the pack widens the weights to f32; f32 FMAs
  Pairs,    // vdpbf16ps on bf16 input pairs (AVX512_BF16)
  Amx,      // AMX tiles (gemm_amx.cpp)
};
std::string bf16_gemm_name(Bf16Gemm path);  // "widened", "pairs", "amx"
// The paths this CPU can run, Widened first.
std::vector<Bf16Gemm> bf16_gemm_paths();
// The path in use: the one set_gemm_bf16_path() forced, else AMX where available, else pairs
// where vdpbf16ps outruns f32 FMAs (timed once), else widened.
Bf16Gemm gemm_bf16_path();
// For tests and measurements: forces `path` (ValueError when the CPU cannot run it); null
// (the default) leaves the choice to gemm_bf16_path().
void set_gemm_bf16_path(const Bf16Gemm* path);
// Whether the GEMM packs weights of `format` as bf16 pairs (the pairs and the AMX paths).
bool gemm_uses_bf16_pairs(WeightFormat format);
bool gemm_uses_amx(WeightFormat format);
// Whether the GEMM runs weights of `format` split into bf16 parts on AMX tiles (bf16x3) at
// `precision` (matmul_precision.h).
bool gemm_splits(WeightFormat format, MatmulPrecision precision);

// Floats of space the packed activations of an (M, K) input take, in any layout (the AMX one
// included, with its residual for the split form).
int64_t packed_activation_floats(int64_t M, int64_t K);
int64_t gemm_panels(int64_t M);  // number of kGemmMr-row panels
// Packs the row panels [p0, p1) of x (M, K), row stride xs, into `out` (sized by
// packed_activation_floats). `round_bf16`: round the values to bf16 (ties to even) first.
void pack_activations(const float* x, int64_t xs, int64_t M, int64_t K, bool pairs, bool round_bf16, int64_t p0,
                      int64_t p1, float* out);

// Floats of per-thread space for one packed weight block.
constexpr int64_t kGemmWeightScratch = kGemmPanelRows * kGemmKc;

// Outputs y[m * y_stride + r] for r in [r0, r1) (r1 - r0 <= kGemmPanelRows) and all m < x.M:
// the dot products, plus the bias, plus the old y when `accumulate`. `scratch` holds
// kGemmWeightScratch floats.
void gemm_rows_avx512(const PackedWeight& w, int64_t r0, int64_t r1, const PackedActivations& x, float* y,
                      int64_t y_stride, bool accumulate, float* scratch);

// A block of weight rows [r0, r1) x inputs [k0, k0 + kcb).
struct WeightBlock {
  int64_t r0 = 0, r1 = 0, k0 = 0, kcb = 0;
};
// Packs `block` for the tiles: kGemmNr-wide panels of `units_padded` units each (>= the
// block's units: the AMX tiles take 16 at a time), zeros past r1 and past the block's inputs.
// A unit is an f32 value, or with `pairs` a pair of bf16 values (the bf16 format's own, others
// rounded). `residual_out` (pairs of f32 or int8 weights; null: none) gets, laid out the same,
// what that rounding leaves out: the split form of MatmulPrecision::High. Meanwhile it asks for
// the rows of `next` (the block the caller packs next; empty: none) in L2: the pack reads each
// row in a short run, rows far apart, and the hardware prefetcher does not see those runs coming.
void pack_weight_block(const PackedWeight& w, const WeightBlock& block, bool pairs, int64_t units_padded, float* out,
                       const WeightBlock& next, float* residual_out = nullptr);

// The multiply-add instruction the GEMM runs for weights of `format`: f32 FMAs (Widened) for
// f32, int8 and widened bf16; else the bf16 path's.
Bf16Gemm gemm_instruction(WeightFormat format);
// That instruction's ceiling on one thread: `iterations` rounds of independent multiply-adds
// in registers, nothing loaded. Returns the flops done; writes a sum to *sink so nothing is
// optimized away. Only at the avx512 level.
double multiply_add_peak_loop(Bf16Gemm instruction, int64_t iterations, float* sink);

// --- AVX2 (gemm_avx2.cpp): activations in panels of kAvx2Mr rows, K block by K block (of
// kGemmKc inputs); weights packed per thread kGemmPanelRows rows at a time, in panels of
// kAvx2Nr rows (all of it within the sizes of the AVX-512 layout: the same scratch serves).
constexpr int64_t kAvx2Mr = 6;   // activation rows per register tile
constexpr int64_t kAvx2Nr = 16;  // weight rows per register tile (two ymm of outputs)
bool gemm_avx2_active();         // the SIMD level is avx2
int64_t avx2_panels(int64_t M);  // number of kAvx2Mr-row panels
// Packs the row panels [p0, p1) of x (M, K), row stride xs, into `out` (sized by
// packed_activation_floats); `round_bf16`: round the values to bf16 (ties to even) first.
void pack_activations_avx2(const float* x, int64_t xs, int64_t M, int64_t K, bool round_bf16, int64_t p0, int64_t p1,
                           float* out);
// As gemm_rows_avx512, on x packed by pack_activations_avx2 (x.pairs false).
void gemm_rows_avx2(const PackedWeight& w, int64_t r0, int64_t r1, const PackedActivations& x, float* y,
                    int64_t y_stride, bool accumulate, float* scratch);
// The ymm FMA ceiling on one thread (multiply_add_peak_loop's at the avx2 level).
double fma_peak_loop_avx2(int64_t iterations, float* sink);

// Which tile the avx512 level runs where it multiplies f32 values (every format but bf16 on
// the pairs or AMX paths): the AVX-512 one, unless the AVX2 one is measured faster on this CPU
// (gemm_choice.cpp, timed once per process: CPUs that split 512-bit FMAs, AMD Zen 4, run both at
// about one rate).
enum class F32Tile { Avx512, Avx2 };
F32Tile gemm_f32_tile();
std::string f32_tile_name(F32Tile tile);  // "avx512", "avx2"
// For tests and measurements: forces `tile` (ValueError on a CPU without AVX-512); null (the
// default) leaves the choice to gemm_f32_tile().
void set_gemm_f32_tile(const F32Tile* tile);
// Makes every measured kernel choice of the current SIMD level now (this one and the 4-bit
// GEMV's in gemv.h; a few ms, once per process), so that none is timed inside a timed step.
void make_kernel_choices();

// --- AMX (gemm_amx.cpp): activations in rows of 16 x 32 bf16 tiles, weights as for pairs.
constexpr int64_t kAmxRows = 16;        // activation rows per tile
constexpr int64_t kAmxKc = 512;         // 32-bit units (bf16 pairs) per K block
constexpr int64_t kAmxPanelRows = 128;  // weight rows packed at a time
constexpr int64_t kAmxMaxRows = 512;    // activation rows per call (linear.cpp cuts longer inputs)
// Floats of per-thread space: a packed weight block, and its residual (split) after it.
constexpr int64_t kAmxWeightScratch = kAmxPanelRows * kAmxKc;
int64_t amx_panels(int64_t M);    // number of kAmxRows-row panels
// 32-bit words the AMX layout of an (M, K) input takes.
int64_t amx_activation_words(int64_t M, int64_t K);
// Packs the row panels [p0, p1) of x (M, K), row stride xs, rounded to bf16 pairs, into `out`;
// and into `residual_out` (null: none), laid out the same, what that rounding leaves out
// (split_bf16_pairs).
void pack_activations_amx(const float* x, int64_t xs, int64_t M, int64_t K, int64_t p0, int64_t p1, uint32_t* out,
                          uint32_t* residual_out = nullptr);
// As gemm_rows_avx512, on x packed by pack_activations_amx, for any rows [r0, r1) (a thread's
// whole share: each K block of x is then read once). `split` (MatmulPrecision::High, bf16x3):
// x's residual follows x (amx_activation_words(M, K) words on), the weights are split the same
// way, and each product is x w ~ x w + x w' + x' w (primes: residuals). `scratch` holds
// 2 * kAmxWeightScratch floats.
void gemm_rows_amx(const PackedWeight& w, int64_t r0, int64_t r1, const uint32_t* x, int64_t M, float* y,
                   int64_t y_stride, bool accumulate, bool split, float* scratch);
// The tiles' ceiling on one thread (multiply_add_peak_loop for bf16 on the AMX path).
double amx_peak_loop(int64_t iterations, float* sink);

}  // namespace celer::cpu
