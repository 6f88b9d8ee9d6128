#include "backend/cpu/quiet_intrinsics.h"
#include "backend/cpu/linear.h"

#include <Eigen/Core>
#include <algorithm>

#include "backend/cpu/gemv.h"
#include "backend/cpu/ops.h"
#include "threadpool.h"

namespace celer::cpu {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::OuterStride<>;

void LinearScratch::reserve(int threads, int64_t max_cols) {
  if (fits(threads, max_cols)) return;
  max_cols_ = std::max(max_cols_, max_cols);
  buffers_.resize(std::max(buffers_.size(), size_t(threads)));
  for (auto& b : buffers_) b.resize(size_t(kGemmBlock * max_cols_));
}

bool LinearScratch::fits(int threads, int64_t max_cols) const {
  return int(buffers_.size()) >= threads && max_cols_ >= max_cols;
}

uint64_t LinearScratch::bytes() const {
  uint64_t total = 0;
  for (const auto& b : buffers_) total += b.size() * sizeof(float);
  return total;
}

namespace {

// Rows [r0, r1) of one output by the blocked GEMM.
void gemm_block(const LinearOut& o, int64_t r0, int64_t r1, const float* x, int64_t x_stride, int64_t M,
                float* scratch) {
  const PackedWeight& w = *o.w;
  const int64_t K = w.cols, nn = r1 - r0;
  const float* rows = w.f32 != nullptr ? w.f32 + r0 * K : scratch;
  if (w.f32 == nullptr) unpack_rows(w, r0, r1, scratch);
  Eigen::Map<const RowMat, 0, Strided> X(x, M, K, Strided(x_stride));
  Eigen::Map<const RowMat> W(rows, nn, K);
  Eigen::Map<RowMat, 0, Strided> Y(o.y + r0, M, nn, Strided(o.y_stride));
  if (o.accumulate)
    Y.noalias() += X * W.transpose();
  else
    Y.noalias() = X * W.transpose();
  if (w.bias != nullptr) Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(w.bias + r0, nn);
}

}  // namespace

void linear_group(std::initializer_list<LinearOut> outs, const float* x, int64_t x_stride, int64_t M,
                  LinearScratch* scratch) {
  // The group's rows, concatenated, cut into units: a unit never spans two outputs.
  const bool gemv = M <= kGemvMaxRows;
  const int64_t unit = gemv ? 16 : kGemmBlock;
  int64_t units = 0, work_per_unit = 0;
  for (const LinearOut& o : outs) {
    units += (o.w->rows + unit - 1) / unit;
    work_per_unit = std::max(work_per_unit, unit * o.w->cols * M);
  }
  // A thread gets at least ~64K multiply-adds: below that, waking it costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, work_per_unit));
  const SimdLevel level = simd_level();
  thread_pool()->parallel_for_threads(units, [&](int64_t u0, int64_t u1, int thread) {
    int64_t first = 0;  // index of the first unit of the current output
    for (const LinearOut& o : outs) {
      const int64_t n_units = (o.w->rows + unit - 1) / unit;
      const int64_t a = std::max(u0, first), b = std::min(u1, first + n_units);
      if (a < b) {
        const int64_t r0 = (a - first) * unit, r1 = std::min(o.w->rows, (b - first) * unit);
        if (gemv) {
          gemv_rows(*o.w, r0, r1, x, x_stride, M, o.y, o.y_stride, o.accumulate, level);
        } else {
          float* tile = o.w->f32 == nullptr ? scratch->block(thread) : nullptr;
          for (int64_t r = r0; r < r1; r += kGemmBlock)
            gemm_block(o, r, std::min(r1, r + kGemmBlock), x, x_stride, M, tile);
        }
      }
      first += n_units;
    }
  }, grain);
}

void matmul_nt(float* y, const float* x, const float* w, int64_t M, int64_t K, int64_t N, bool accumulate) {
  PackedWeight view;
  view.rows = N;
  view.cols = K;
  view.f32 = w;
  linear(view, x, M, y, accumulate, nullptr);
}

}  // namespace celer::cpu
