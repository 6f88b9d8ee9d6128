#include "backend/cpu/quiet_intrinsics.h"
#include "backend/cpu/linear.h"

#include <Eigen/Core>
#include <algorithm>

#include "backend/cpu/gemm.h"
#include "backend/cpu/gemv.h"
#include "backend/cpu/ops.h"
#include "core/config.h"
#include "core/error.h"
#include "backend/cpu/threadpool.h"

namespace celer::cpu {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Strided = Eigen::OuterStride<>;

size_t LinearScratch::block_bytes() const {
  return sizeof(float) * size_t(std::max({kGemmBlock * max_cols_, kGemmWeightScratch, 2 * kAmxWeightScratch}));
}

size_t LinearScratch::activation_bytes() const {
  return sizeof(float) * size_t(packed_activation_floats(max_rows_, max_cols_));  // >= max_rows_ * max_cols_ floats
}

void LinearScratch::reserve(int threads, int64_t max_cols, int64_t max_rows) {
  if (fits(threads, max_cols, max_rows)) return;
  // The new buffers are made before the sizes change: a failed allocation keeps the old,
  // consistent scratch.
  LinearScratch grown;
  grown.max_cols_ = std::max(max_cols_, max_cols);
  grown.max_rows_ = std::max(max_rows_, max_rows);
  grown.blocks_.resize(std::max(blocks_.size(), size_t(threads)));
  check_allocation(grown.bytes(), "the linear layers' scratch");
  for (auto& b : grown.blocks_) b = zeroed_buffer(grown.block_bytes(), /*huge_pages=*/true);
  grown.activations_ = zeroed_buffer(grown.activation_bytes(), /*huge_pages=*/true);
  *this = std::move(grown);
}

bool LinearScratch::fits(int threads, int64_t max_cols, int64_t max_rows) const {
  return int(blocks_.size()) >= threads && max_cols_ >= max_cols && max_rows_ >= max_rows;
}

namespace {

// Rows [r0, r1) of one output by an Eigen GEMM (the scalar level).
void eigen_block(const LinearOut& o, int64_t r0, int64_t r1, const float* x, int64_t x_stride, int64_t M,
                 float* scratch) {
  const PackedWeight& w = as_packed(*o.w);
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

// The group's weight rows, concatenated and cut into units of `unit` rows (a unit never spans
// two outputs), split between threads: fn(out, r0, r1, thread) for each thread's share.
template <class F>
void for_each_unit(ThreadPool& pool, LinearOuts outs, int64_t unit, int64_t M, F&& fn) {
  int64_t units = 0, work_per_unit = 0;
  for (const LinearOut& o : outs) {
    units += (o.w->rows + unit - 1) / unit;
    work_per_unit = std::max(work_per_unit, unit * o.w->cols * M);
  }
  // A thread gets at least ~64K multiply-adds: below that, waking it costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, work_per_unit));
  pool.parallel_for_threads(units, [&](int64_t u0, int64_t u1, int thread) {
    int64_t first = 0;  // index of the first unit of the current output
    for (const LinearOut& o : outs) {
      const int64_t n_units = (o.w->rows + unit - 1) / unit;
      const int64_t a = std::max(u0, first), b = std::min(u1, first + n_units);
      if (a < b) fn(o, (a - first) * unit, std::min(o.w->rows, (b - first) * unit), thread);
      first += n_units;
    }
  }, grain);
}

// Each thread's share of the group's weight rows through `rows` (gemm_rows_avx512 or _avx2),
// kGemmPanelRows at a time, on activations packed for it.
template <class RowsKernel>
void gemm_packed_rows(ThreadPool& pool, LinearOuts outs, const PackedActivations& xa, LinearScratch& scratch,
                      RowsKernel rows) {
  for_each_unit(pool, outs, kGemmPanelRows, xa.M, [&](const LinearOut& o, int64_t r0, int64_t r1, int thread) {
    for (int64_t r = r0; r < r1; r += kGemmPanelRows)
      rows(as_packed(*o.w), r, std::min(r1, r + kGemmPanelRows), xa, o.y, o.y_stride, o.accumulate,
           scratch.block(thread));
  });
}

void gemm_avx2_group(ThreadPool& pool, LinearOuts outs, const float* x, int64_t x_stride, int64_t M,
                     LinearScratch& scratch) {
  const PackedWeight& w0 = as_packed(*outs.begin()->w);
  float* packed = scratch.activations();
  pool.parallel_for(avx2_panels(M), [&](int64_t p0, int64_t p1) {
    pack_activations_avx2(x, x_stride, M, w0.cols, /*round_bf16=*/w0.format == WeightFormat::BF16, p0, p1, packed);
  });
  gemm_packed_rows(pool, outs, {packed, M, w0.cols, false}, scratch, gemm_rows_avx2);
}

void gemm_avx512_group(ThreadPool& pool, LinearOuts outs, const float* x, int64_t x_stride,
                       int64_t M, LinearScratch& scratch, MatmulPrecision precision) {
  const PackedWeight& w0 = as_packed(*outs.begin()->w);
  const bool split = gemm_splits(w0.format, precision);
  if (split || gemm_uses_amx(w0.format)) {
    uint32_t* packed = reinterpret_cast<uint32_t*>(scratch.activations());
    for (int64_t m0 = 0; m0 < M; m0 += kAmxMaxRows) {  // a K block of x then stays in L2
      const int64_t rows = std::min(kAmxMaxRows, M - m0);
      pool.parallel_for(amx_panels(rows), [&](int64_t p0, int64_t p1) {
        pack_activations_amx(x + m0 * x_stride, x_stride, rows, w0.cols, p0, p1, packed,
                             split ? packed + amx_activation_words(rows, w0.cols) : nullptr);
      });
      for_each_unit(pool, outs, kAmxPanelRows, rows, [&](const LinearOut& o, int64_t r0, int64_t r1, int thread) {
        gemm_rows_amx(as_packed(*o.w), r0, r1, packed, rows, o.y + m0 * o.y_stride, o.y_stride, o.accumulate, split,
                      scratch.block(thread));
      });
    }
    return;
  }
  const bool pairs = gemm_uses_bf16_pairs(w0.format), round = w0.format == WeightFormat::BF16 && !pairs;
  if (!pairs && gemm_f32_tile() == F32Tile::Avx2) return gemm_avx2_group(pool, outs, x, x_stride, M, scratch);
  float* packed = scratch.activations();
  pool.parallel_for(gemm_panels(M), [&](int64_t p0, int64_t p1) {
    pack_activations(x, x_stride, M, w0.cols, pairs, round, p0, p1, packed);
  });
  gemm_packed_rows(pool, outs, {packed, M, w0.cols, pairs}, scratch, gemm_rows_avx512);
}

}  // namespace

void linear_group(LinearOuts outs, const float* x, int64_t x_stride, int64_t M,
                  LinearScratch* scratch, MatmulPrecision precision, ThreadPool* pool_or_null) {
  const PackedWeight& w0 = as_packed(*outs.begin()->w);
  for (const LinearOut& o : outs)  // (no require(): its message would allocate on every call)
    if (o.w->format != w0.format || o.w->cols != w0.cols)
      throw ValueError("linear_group: the outputs differ in weight format or input size");
  std::shared_ptr<ThreadPool> process_pool;  // held for the call: set_num_threads cannot change it midway
  ThreadPool& pool = pool_or_null != nullptr ? *pool_or_null : *(process_pool = thread_pool());
  LinearScratch temporary;
  if (scratch == nullptr) scratch = &temporary;
  scratch->reserve(pool.num_threads(), w0.cols, M);  // nothing to do once sized
  const bool gemv = M <= kGemvMaxRows;
  if (!gemv && gemm_avx512_active()) return gemm_avx512_group(pool, outs, x, x_stride, M, *scratch, precision);
  if (!gemv && gemm_avx2_active()) return gemm_avx2_group(pool, outs, x, x_stride, M, *scratch);
  // Decoding streams bf16 weights with vdpbf16ps on input pairs wherever the CPU has it: it
  // saves widening every weight, and memory, not the multiply-adds, sets the pace.
  if (gemv && gemm_avx512_active() && w0.format == WeightFormat::BF16 && cpu_has_avx512_bf16()) {
    uint32_t* pairs = reinterpret_cast<uint32_t*>(scratch->activations());
    const int64_t stride = (w0.cols + 1) / 2;
    pack_bf16_pair_rows(x, x_stride, M, w0.cols, pairs);
    return for_each_unit(pool, outs, 16, M, [&](const LinearOut& o, int64_t r0, int64_t r1, int) {
      gemv_rows_bf16_pairs(as_packed(*o.w), r0, r1, pairs, stride, M, o.y, o.y_stride, o.accumulate);
    });
  }
  if (w0.format == WeightFormat::BF16) {  // the bf16 format's inputs are bf16 too
    float* rounded = scratch->activations();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < w0.cols; ++k) rounded[m * w0.cols + k] = bf16_to_f32(f32_to_bf16(x[m * x_stride + k]));
    x = rounded;
    x_stride = w0.cols;
  }
  const SimdLevel level = simd_level();
  for_each_unit(pool, outs, gemv ? 16 : kGemmBlock, M, [&](const LinearOut& o, int64_t r0, int64_t r1, int thread) {
    if (gemv) return gemv_rows(as_packed(*o.w), r0, r1, x, x_stride, M, o.y, o.y_stride, o.accumulate, level);
    for (int64_t r = r0; r < r1; r += kGemmBlock)
      eigen_block(o, r, std::min(r1, r + kGemmBlock), x, x_stride, M, scratch->block(thread));
  });
}

void matmul_nt(float* y, const float* x, const float* w, int64_t M, int64_t K, int64_t N, bool accumulate) {
  PackedWeight view;
  view.rows = N;
  view.cols = K;
  view.f32 = w;
  linear(view, x, M, y, accumulate, nullptr);
}

}  // namespace celer::cpu
