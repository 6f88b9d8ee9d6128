// Elementwise ops of the MLP and the residual stream: SwiGLU, GELU (both forms), bias, add.
#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"

namespace celer::cuda {
namespace {

#define CELER_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void swiglu_kernel(float* out, const float* gate, const float* up, int64_t n) {
  // expf, not __expf: the fast intrinsic's error would show against the CPU op.
  CELER_GRID_STRIDE(i, n) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

__global__ void gelu_kernel(float* x, int64_t n, bool tanh_form) {
  CELER_GRID_STRIDE(i, n) {
    const float v = x[i];
    x[i] = tanh_form ? 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)))
                     : 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
  }
}

__global__ void add_bias_kernel(float* x, const float* bias, int64_t total, int64_t N) {
  CELER_GRID_STRIDE(i, total) x[i] += bias[i % N];
}

__global__ void add_kernel(float* x, const float* y, int64_t n) { CELER_GRID_STRIDE(i, n) x[i] += y[i]; }

}  // namespace

void swiglu(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  swiglu_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, gate, up, n);
  check_launch("swiglu_kernel");
}

void gelu(float* x, int64_t n, bool tanh_form, cudaStream_t stream) {
  if (n == 0) return;
  gelu_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, n, tanh_form);
  check_launch("gelu_kernel");
}

void add_bias(float* x, const float* bias, int64_t rows, int64_t N, cudaStream_t stream) {
  if (rows * N == 0) return;
  add_bias_kernel<<<grid_for(rows * N), kThreads, 0, stream>>>(x, bias, rows * N, N);
  check_launch("add_bias_kernel");
}

void add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  check_launch("add_kernel");
}

}  // namespace celer::cuda
