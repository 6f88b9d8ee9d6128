// The numeric ops of the CPU backend (fp32). Row-major throughout; `rows` are tokens.
// Each op has one job and checks nothing: the engine validates sizes before calling.
#pragma once
#include <cstdint>

namespace celer::cpu {

// y (M, N) = x (M, K) @ w (N, K)^T, or y += ... when accumulate. Threaded over N; the f32
// case of linear.h (defined there), so calibration measures the GEMM prefill runs.
void matmul_nt(float* y, const float* x, const float* w, int64_t M, int64_t K, int64_t N, bool accumulate = false);
// The same, one dot product at a time: the reference the tests hold the fast one to.
void matmul_nt_naive(float* y, const float* x, const float* w, int64_t M, int64_t K, int64_t N, bool accumulate = false);

// out (rows, H) = x * rsqrt(mean(x^2) + eps) * weight
void rmsnorm(float* out, const float* x, const float* weight, int64_t rows, int64_t H, float eps);

// out (rows, H) = (x - mean) / sqrt(var + eps) * weight + bias (GPT-2's LayerNorm; biased variance)
void layernorm(float* out, const float* x, const float* weight, const float* bias, int64_t rows, int64_t H, float eps);

// Rotate-half RoPE in place on x (rows, heads * D); row r is at position pos[r].
// cos/sin tables are (max_pos, D).
void rope(float* x, int64_t rows, int64_t heads, int64_t D, const int64_t* pos, const float* cos, const float* sin);
// The same rotation on adjacent pairs (2i, 2i + 1) at frequency i (GGML's llama RoPE; the
// tables are the same rotate-half tables).
void rope_interleaved(float* x, int64_t rows, int64_t heads, int64_t D, const int64_t* pos, const float* cos,
                      const float* sin);

// out = silu(gate) * up, elementwise over n values.
void swiglu(float* out, const float* gate, const float* up, int64_t n);

// x = gelu(x) in place over n values: the tanh approximation ("gelu_new") or the exact erf form.
void gelu(float* x, int64_t n, bool tanh_form);

// out (rows, H) = table[ids[r]]
void embedding(float* out, const float* table, const int64_t* ids, int64_t rows, int64_t H);

}  // namespace celer::cpu
