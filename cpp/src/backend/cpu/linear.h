// Linear layers over packed weights: y (M, N) = x (M, K) @ W^T (+ bias) (+ y), threaded.
//  - A few activation rows (decode): the SIMD GEMV kernels (gemv.h) stream each weight once.
//  - Many rows (prefill): blocks of 64 weight rows, each one Eigen GEMM; bf16/int8 blocks are
//    widened to f32 into per-thread scratch first, so the conversion is paid once per block.
// Several weights that read the same x (Q/K/V, gate/up) run as one group: one parallel
// section, x read once per block. Results do not depend on the number of threads.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "backend/cpu/packed_weight.h"

namespace celer::cpu {

// At most this many activation rows take the GEMV kernels; more take the blocked GEMM.
constexpr int64_t kGemvMaxRows = 8;
// Weight rows per GEMM block.
constexpr int64_t kGemmBlock = 64;

// Per-thread space for widened weight blocks; sized before a decode loop, never per token.
class LinearScratch {
 public:
  void reserve(int threads, int64_t max_cols);
  float* block(int thread) { return buffers_[size_t(thread)].data(); }
  uint64_t bytes() const;
  bool fits(int threads, int64_t max_cols) const;

 private:
  std::vector<std::vector<float>> buffers_;
  int64_t max_cols_ = 0;
};

// One output of a group: y (M, w.rows) with row stride y_stride.
struct LinearOut {
  const PackedWeight* w;
  float* y;
  int64_t y_stride;
  bool accumulate = false;
};

// Runs every output on the same x (M, K), K = each w.cols, row stride x_stride. `scratch`
// must fit the threads and K when a weight is not f32 and M > kGemvMaxRows (may be null
// otherwise).
void linear_group(std::initializer_list<LinearOut> outs, const float* x, int64_t x_stride, int64_t M,
                  LinearScratch* scratch);

inline void linear(const PackedWeight& w, const float* x, int64_t M, float* y, bool accumulate,
                   LinearScratch* scratch) {
  linear_group({LinearOut{&w, y, w.rows, accumulate}}, x, w.cols, M, scratch);
}

}  // namespace celer::cpu
