// Memory bandwidth probes for calibration (STREAM-style copy and triad), vectorized by float4
// when the pointers and n allow it, so they measure DRAM rather than instruction issue.
#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"

namespace celer::cuda {
namespace {

#define CELER_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void copy4_kernel(float4* dst, const float4* src, int64_t n4) { CELER_GRID_STRIDE(i, n4) dst[i] = src[i]; }
__global__ void copy_kernel(float* dst, const float* src, int64_t n) { CELER_GRID_STRIDE(i, n) dst[i] = src[i]; }

__global__ void triad4_kernel(float4* a, const float4* b, const float4* c, float s, int64_t n4) {
  CELER_GRID_STRIDE(i, n4) {
    const float4 x = b[i], y = c[i];
    a[i] = make_float4(x.x + s * y.x, x.y + s * y.y, x.z + s * y.z, x.w + s * y.w);
  }
}
__global__ void triad_kernel(float* a, const float* b, const float* c, float s, int64_t n) {
  CELER_GRID_STRIDE(i, n) a[i] = b[i] + s * c[i];
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

void copy_f32(float* dst, const float* src, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (n % 4 == 0 && aligned16(dst) && aligned16(src))
    copy4_kernel<<<grid_for(n / 4), kThreads, 0, stream>>>(reinterpret_cast<float4*>(dst),
                                                           reinterpret_cast<const float4*>(src), n / 4);
  else
    copy_kernel<<<grid_for(n), kThreads, 0, stream>>>(dst, src, n);
  check_launch("copy_kernel");
}

void triad_f32(float* a, const float* b, const float* c, float s, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (n % 4 == 0 && aligned16(a) && aligned16(b) && aligned16(c))
    triad4_kernel<<<grid_for(n / 4), kThreads, 0, stream>>>(
        reinterpret_cast<float4*>(a), reinterpret_cast<const float4*>(b), reinterpret_cast<const float4*>(c), s, n / 4);
  else
    triad_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, b, c, s, n);
  check_launch("triad_kernel");
}

}  // namespace celer::cuda
