// RMSNorm and LayerNorm: one block per row, fp32 sums reduced across the block.
#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/reduce.cuh"

namespace celer::cuda {
namespace {

__global__ void rmsnorm_kernel(float* out, const float* x, const float* w, int64_t H, float eps) {
  __shared__ float scratch[32];
  const float* in = x + blockIdx.x * H;
  float* o = out + blockIdx.x * H;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) ss += in[i] * in[i];
  const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / float(H) + eps);
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) o[i] = in[i] * inv * w[i];
}

// Two passes (mean, then squared deviations) like the CPU op: no E[x^2] - E[x]^2 cancellation.
__global__ void layernorm_kernel(float* out, const float* x, const float* w, const float* b, int64_t H, float eps) {
  __shared__ float scratch[32];
  const float* in = x + blockIdx.x * H;
  float* o = out + blockIdx.x * H;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) s += in[i];
  const float mean = block_sum(s, scratch) / float(H);
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) ss += (in[i] - mean) * (in[i] - mean);
  const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / float(H) + eps);
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) o[i] = (in[i] - mean) * inv * w[i] + b[i];
}

}  // namespace

void rmsnorm(float* out, const float* x, const float* weight, int64_t rows, int64_t H, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_kernel<<<unsigned(rows), kThreads, 0, stream>>>(out, x, weight, H, eps);
  check_launch("rmsnorm_kernel");
}

void layernorm(float* out, const float* x, const float* weight, const float* bias, int64_t rows, int64_t H, float eps,
               cudaStream_t stream) {
  if (rows == 0) return;
  layernorm_kernel<<<unsigned(rows), kThreads, 0, stream>>>(out, x, weight, bias, H, eps);
  check_launch("layernorm_kernel");
}

}  // namespace celer::cuda
