// The numeric ops of the CUDA backend: the CPU backend's op list (backend/cpu/ops.h, quant.h,
// attention.h) with the same semantics, on device pointers, enqueued on `stream`.
// Row-major throughout; `rows` are tokens. Like the CPU ops they check nothing: callers
// validate sizes (the _cuda bindings do, for the tests).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace celer::cuda {

// out (rows, H) = x * rsqrt(mean(x^2) + eps) * weight
void rmsnorm(float* out, const float* x, const float* weight, int64_t rows, int64_t H, float eps, cudaStream_t stream);
// out (rows, H) = (x - mean) / sqrt(var + eps) * weight + bias (biased variance, GPT-2)
void layernorm(float* out, const float* x, const float* weight, const float* bias, int64_t rows, int64_t H, float eps,
               cudaStream_t stream);

// Rotate-half RoPE in place on x (rows, heads * D); row r at position pos[r]; cos/sin (max_pos, D).
void rope(float* x, int64_t rows, int64_t heads, int64_t D, const int64_t* pos, const float* cos, const float* sin,
          cudaStream_t stream);

// out = silu(gate) * up over n values.
void swiglu(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream);
// x = gelu(x) in place: tanh approximation ("gelu_new") or the exact erf form.
void gelu(float* x, int64_t n, bool tanh_form, cudaStream_t stream);
// x (rows, N) += bias (N)
void add_bias(float* x, const float* bias, int64_t rows, int64_t N, cudaStream_t stream);
// x += y over n values (the residual connections).
void add(float* x, const float* y, int64_t n, cudaStream_t stream);

// out (rows, H) = table[ids[r]] (+ pos_table[pos[r]] when pos_table is not null: GPT-2's
// learned positions).
void embedding(float* out, const float* table, const int64_t* ids, const float* pos_table, const int64_t* pos,
               int64_t rows, int64_t H, cudaStream_t stream);

// Symmetric INT8 per row, as the CPU KV cache stores a (token, kv head): scale = max|x| / 127,
// q = clamp(rint(x / scale), -127, 127) (round half to even, fp32 division), scale 0 -> q 0.
void quantize_int8_rows(int8_t* q, float* scale, const float* x, int64_t rows, int64_t D, cudaStream_t stream);
// out = q * scale[row]
void dequantize_int8_rows(float* out, const int8_t* q, const float* scale, int64_t rows, int64_t D,
                          cudaStream_t stream);

// IEEE half / bfloat16 bit patterns (uint16), round to nearest even; and back.
void f32_to_f16(uint16_t* out, const float* x, int64_t n, cudaStream_t stream);
void f16_to_f32(float* out, const uint16_t* x, int64_t n, cudaStream_t stream);
void f32_to_bf16(uint16_t* out, const float* x, int64_t n, cudaStream_t stream);

// Greedy sampling: ids[r] = first index of the largest value of row r of x (rows, V); -1 when
// every value is -inf. nan_at[r] = first index of a NaN in the row, or -1.
void argmax_rows(int64_t* ids, int64_t* nan_at, const float* x, int64_t rows, int64_t V, cudaStream_t stream);

// Memory bandwidth probes for calibration: dst = src (copy), a = b + s * c (triad).
void copy_f32(float* dst, const float* src, int64_t n, cudaStream_t stream);
void triad_f32(float* a, const float* b, const float* c, float s, int64_t n, cudaStream_t stream);

}  // namespace celer::cuda
