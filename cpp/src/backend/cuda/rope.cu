// Rotate-half RoPE in place: one thread per (row, head, i < D/2) pair of values.
#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"

namespace celer::cuda {
namespace {

__global__ void rope_kernel(float* x, int64_t rows, int64_t heads, int64_t D, const int64_t* pos, const float* cos,
                            const float* sin) {
  const int64_t half = D / 2, total = rows * heads * half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, rh = idx / half, r = rh / heads;
    const float* c = cos + pos[r] * D;
    const float* s = sin + pos[r] * D;
    float* v = x + rh * D;
    const float a = v[i], b = v[i + half];
    v[i] = a * c[i] - b * s[i];  // x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1)
    v[i + half] = b * c[i + half] + a * s[i + half];
  }
}

}  // namespace

void rope(float* x, int64_t rows, int64_t heads, int64_t D, const int64_t* pos, const float* cos, const float* sin,
          cudaStream_t stream) {
  const int64_t total = rows * heads * (D / 2);
  if (total == 0) return;
  rope_kernel<<<grid_for(total), kThreads, 0, stream>>>(x, rows, heads, D, pos, cos, sin);
  check_launch("rope_kernel");
}

}  // namespace celer::cuda
