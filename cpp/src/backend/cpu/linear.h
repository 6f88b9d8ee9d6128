// Linear layers over packed weights: y (M, N) = x (M, K) @ W^T (+ bias) (+ y), threaded.
//  - A few activation rows (decode): the SIMD GEMV kernels (gemv.h) stream each weight once.
//  - Many rows (prefill): at the avx512 level our own packed GEMM (gemm.h); below it, blocks of
//    64 weight rows, each one Eigen GEMM over the block widened to f32 in per-thread scratch.
// The bf16 format rounds its inputs to bf16 as well (gemm.h says why): every path computes on
// the same rounded values, so the paths differ only in the order of f32 sums.
// Several weights that read the same x (Q/K/V, gate/up) run as one group: one parallel
// section, x read once per block. Results do not depend on the number of threads.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "core/matmul_precision.h"
#include "backend/cpu/packed_weight.h"
#include "backend/cpu/threadpool.h"

namespace celer::cpu {

// At most this many activation rows take the GEMV kernels; more take the blocked GEMM.
constexpr int64_t kGemvMaxRows = 8;
// Weight rows per GEMM block.
constexpr int64_t kGemmBlock = 64;

// Space for packed or rounded activations (max_rows x max_cols) and per-thread weight
// blocks; sized before a decode loop, never per token. On huge pages: the GEMM's tiles read
// these buffers over and over, and on 4 KiB pages their TLB misses (two-level walks in a
// virtual machine) cost the AMX kernel up to 3x.
class LinearScratch {
 public:
  void reserve(int threads, int64_t max_cols, int64_t max_rows);
  bool fits(int threads, int64_t max_cols, int64_t max_rows) const;
  float* block(int thread) { return static_cast<float*>(blocks_[size_t(thread)].get()); }
  float* activations() { return static_cast<float*>(activations_.get()); }
  uint64_t bytes() const { return activation_bytes() + blocks_.size() * block_bytes(); }

 private:
  size_t block_bytes() const;       // per thread, for max_cols_
  size_t activation_bytes() const;  // for max_rows_ x max_cols_
  std::vector<std::shared_ptr<void>> blocks_;
  std::shared_ptr<void> activations_;
  int64_t max_cols_ = 0, max_rows_ = 0;
};

// The outputs of a group are the engine's LinearOut (engine/backend.h); their weights are
// PackedWeights (the CPU backend packed them).
inline const PackedWeight& as_packed(const Weight& w) { return static_cast<const PackedWeight&>(w); }

// A run of outputs [first, last).
struct LinearOuts {
  const LinearOut *first, *last;
  const LinearOut* begin() const { return first; }
  const LinearOut* end() const { return last; }
};

// Runs every output on the same x (M, K), K = each w.cols, row stride x_stride; the outputs
// share one weight format. `scratch` is grown when it does not fit the threads, M and K
// (null: a temporary one). `precision`: how the GEMM multiplies (matmul_precision.h).
// `pool`: the threads to split over (null: the process pool, taken once for the whole call).
void linear_group(LinearOuts outs, const float* x, int64_t x_stride, int64_t M,
                  LinearScratch* scratch, MatmulPrecision precision = MatmulPrecision::Highest,
                  ThreadPool* pool = nullptr);
inline void linear_group(std::initializer_list<LinearOut> outs, const float* x, int64_t x_stride, int64_t M,
                         LinearScratch* scratch, MatmulPrecision precision = MatmulPrecision::Highest,
                         ThreadPool* pool = nullptr) {
  linear_group(LinearOuts{outs.begin(), outs.end()}, x, x_stride, M, scratch, precision, pool);
}

inline void linear(const PackedWeight& w, const float* x, int64_t M, float* y, bool accumulate,
                   LinearScratch* scratch, MatmulPrecision precision = MatmulPrecision::Highest,
                   ThreadPool* pool = nullptr) {
  linear_group({LinearOut{&w, y, w.rows, accumulate}}, x, w.cols, M, scratch, precision, pool);
}

}  // namespace celer::cpu
