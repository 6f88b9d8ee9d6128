// Token embedding lookup (+ learned position embedding for GPT-2): one block per row.
#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"

namespace celer::cuda {
namespace {

__global__ void embedding_kernel(float* out, const float* table, const int64_t* ids, const float* pos_table,
                                 const int64_t* pos, int64_t H) {
  const int64_t r = blockIdx.x;
  const float* e = table + ids[r] * H;
  const float* p = pos_table ? pos_table + pos[r] * H : nullptr;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) out[r * H + i] = p ? e[i] + p[i] : e[i];
}

}  // namespace

void embedding(float* out, const float* table, const int64_t* ids, const float* pos_table, const int64_t* pos,
               int64_t rows, int64_t H, cudaStream_t stream) {
  if (rows == 0) return;
  embedding_kernel<<<unsigned(rows), kThreads, 0, stream>>>(out, table, ids, pos_table, pos, H);
  check_launch("embedding_kernel");
}

}  // namespace celer::cuda
