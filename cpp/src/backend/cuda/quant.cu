// INT8 row quantization / dequantization and the fp16 / bf16 conversions.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/quant.cuh"

namespace celer::cuda {
namespace {

__global__ void quantize_rows_kernel(int8_t* q, float* scale, const float* x, int64_t D) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const float s = quantize_row_int8(x + r * D, D, q + r * D, scratch);
  if (threadIdx.x == 0) scale[r] = s;
}

__global__ void dequantize_rows_kernel(float* out, const int8_t* q, const float* scale, int64_t total, int64_t D) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = float(q[i]) * scale[i / D];
}

__global__ void f32_to_f16_kernel(uint16_t* out, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __half_as_ushort(__float2half_rn(x[i]));
}

__global__ void f16_to_f32_kernel(float* out, const uint16_t* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __half2float(__ushort_as_half(x[i]));
}

__global__ void f32_to_bf16_kernel(uint16_t* out, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
}

}  // namespace

void quantize_int8_rows(int8_t* q, float* scale, const float* x, int64_t rows, int64_t D, cudaStream_t stream) {
  if (rows == 0) return;
  quantize_rows_kernel<<<unsigned(rows), kQuantThreads, 0, stream>>>(q, scale, x, D);
  check_launch("quantize_rows_kernel");
}

void dequantize_int8_rows(float* out, const int8_t* q, const float* scale, int64_t rows, int64_t D,
                          cudaStream_t stream) {
  if (rows * D == 0) return;
  dequantize_rows_kernel<<<grid_for(rows * D), kThreads, 0, stream>>>(out, q, scale, rows * D, D);
  check_launch("dequantize_rows_kernel");
}

void f32_to_f16(uint16_t* out, const float* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  f32_to_f16_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, x, n);
  check_launch("f32_to_f16_kernel");
}

void f16_to_f32(float* out, const uint16_t* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  f16_to_f32_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, x, n);
  check_launch("f16_to_f32_kernel");
}

void f32_to_bf16(uint16_t* out, const float* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, x, n);
  check_launch("f32_to_bf16_kernel");
}

}  // namespace celer::cuda
