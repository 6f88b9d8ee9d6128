// The prefill GEMM at the avx512 level: y (M, N) = x (M, K) @ W^T, our own kernels.
//  - x is packed once per call into panels of kGemmMr rows, K-block by K-block;
//  - each thread packs kGemmPanelRows weight rows x kGemmKc units at a time (transposed, widened
//    from bf16/int8 as needed) into its own scratch, where they stay in L1/L2 while every
//    activation panel streams past;
//  - a register tile of kGemmMr x kGemmNr outputs (24 of the 32 zmm registers) accumulates
//    with one FMA per loaded value.
// The bf16 format multiplies bf16 activations by bf16 weights, as llama.cpp's BF16 type
// does: with AVX512_BF16 the tile runs vdpbf16ps on pairs of inputs (twice the FMA rate),
// otherwise the plain f32 tile on the same rounded values. Products of two bf16 values are
// exact in f32, so the two differ only in the order of the f32 sums.
#pragma once
#include <cstdint>

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

// Whether the AVX-512 GEMM runs for weights of `format` (the CPU has AVX-512; level avx512).
bool gemm_avx512_active();
// Whether the GEMM multiplies bf16 weights by bf16 input pairs with vdpbf16ps (a CPU with
// AVX512_BF16 where that outruns f32 FMAs; else the pack widens the weights to f32).
bool gemm_uses_bf16_pairs(WeightFormat format);
// For tests: 1 or 0 forces that choice (1 still needs AVX512_BF16), -1 (the default) leaves
// it to the timing.
void set_gemm_bf16_pairs(int choice);

// Floats of space the packed activations of an (M, K) input take (pairs take half of it).
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

// The tiles' ceiling: `iterations` rounds of 12 independent multiply-adds per register on one
// thread, nothing loaded: f32 FMAs (32 flops each), or vdpbf16ps (64 flops each) when `pairs`.
// Writes a sum to *sink so nothing is optimized away. Only at the avx512 level.
void multiply_add_peak_loop(bool pairs, int64_t iterations, float* sink);
constexpr int64_t kPeakLoopAccumulators = 12;

}  // namespace celer::cpu
