// Greedy sampling on the GPU: per row, the first index of the maximum and of any NaN, so only
// one int64 per row (not the logits) has to come back to the host.
#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"

namespace celer::cuda {
namespace {

// (value, index) candidates; the better one is larger, or equal with the smaller index.
// index -1 (nothing seen, or only -inf) loses to everything: the CPU's first_argmax rule.
__device__ __forceinline__ void take_better(float& v, int64_t& i, float ov, int64_t oi) {
  if (oi < 0) return;
  if (i < 0 || ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

__device__ __forceinline__ int64_t min_index(int64_t a, int64_t b) {  // -1 = none
  return a < 0 ? b : (b < 0 ? a : (a < b ? a : b));
}

__global__ void argmax_kernel(int64_t* ids, int64_t* nan_at, const float* x, int64_t V) {
  __shared__ float sv[32];
  __shared__ int64_t si[32], sn[32];
  const float* row = x + blockIdx.x * V;
  float best = -INFINITY;
  int64_t best_i = -1, nan_i = -1;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {  // increasing j: strict > keeps the first
    const float v = row[j];
    if (isnan(v)) {
      if (nan_i < 0) nan_i = j;
    } else if (v > best) {
      best = v;
      best_i = j;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    const int64_t on = __shfl_xor_sync(0xffffffffu, nan_i, o);
    take_better(best, best_i, ov, oi);
    nan_i = min_index(nan_i, on);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = best_i;
    sn[warp] = nan_i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x >> 5); ++w) {
      take_better(best, best_i, sv[w], si[w]);
      nan_i = min_index(nan_i, sn[w]);
    }
    ids[blockIdx.x] = best_i;
    nan_at[blockIdx.x] = nan_i;
  }
}

}  // namespace

void argmax_rows(int64_t* ids, int64_t* nan_at, const float* x, int64_t rows, int64_t V, cudaStream_t stream) {
  if (rows == 0) return;
  argmax_kernel<<<unsigned(rows), kThreads, 0, stream>>>(ids, nan_at, x, V);
  check_launch("argmax_kernel");
}

}  // namespace celer::cuda
