// The CPU backend: host memory, weights packed for the SIMD kernels (packed_weight.h, on huge
// pages), the GEMV/GEMM kernels of linear.h, the tiled attention of attention.h over the
// CpuKVCache, and the process thread pool, held for the length of each call.
#pragma once
#include <memory>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/linear.h"
#include "backend/cpu/threadpool.h"
#include "engine/backend.h"

namespace celer::cpu {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool host_memory() const override { return true; }

  DeviceBuffer allocate(uint64_t bytes, const std::string& what) override;
  DeviceBuffer adopt(const Tensor& tensor) override;
  void copy_to_host(void* host, const void* device, uint64_t bytes) override;
  std::vector<std::unique_ptr<Weight>> pack_weights(const std::vector<WeightSource>& sources) override;

  void prepare(const ScratchSizes& sizes) override;
  uint64_t scratch_bytes() const override;
  std::unique_ptr<KVCache> make_kv_cache(const KVLayout& layout) override;
  void begin_step(const StepInputs& inputs) override { step_ = inputs; }

  void embed(float* x, const DeviceBuffer& table, DType table_dtype, int64_t H) override;
  void add_positions(float* x, const DeviceBuffer& table, int64_t H) override;
  void rmsnorm(float* out, const float* x, const DeviceBuffer& w, int64_t rows, int64_t H, float eps) override;
  void layernorm(float* out, const float* x, const DeviceBuffer& w, const DeviceBuffer& b, int64_t rows, int64_t H,
                 float eps) override;
  void linear(std::initializer_list<LinearOut> outs, const float* x, int64_t x_stride, int64_t M,
              MatmulPrecision precision) override;
  void rope(float* x, int64_t heads, int64_t D, const DeviceBuffer& cos, const DeviceBuffer& sin,
            bool interleaved) override;
  void swiglu(float* gate, const float* up, int64_t rows, int64_t width) override;
  void gelu(float* x, int64_t rows, int64_t width, bool tanh_form) override;
  void attention(KVCache& cache, int64_t layer, int64_t heads, int64_t kv_heads, int64_t D, const float* q,
                 float* out, int64_t q_stride) override;

 private:
  // The pool of the current call, taken by prepare(): set_num_threads during a call builds a
  // new process pool and cannot resize this one under the per-thread scratch.
  std::shared_ptr<ThreadPool> pool_ = thread_pool();
  LinearScratch linear_scratch_;
  std::vector<AttentionScratch> attention_scratch_;  // one per thread of pool_
  ScratchSizes sizes_;
  StepInputs step_;
};

}  // namespace celer::cpu
