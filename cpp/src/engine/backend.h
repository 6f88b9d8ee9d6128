// The numeric operations an engine step is written against (engine.cpp): a backend owns its
// memory, its packed weights, its KV cache and its threads; the engine decides which op runs
// on which buffer in which order, and nothing else. The CPU backend (backend/cpu/cpu_backend.h)
// implements it today; a GPU backend implements the same list over device memory.
//
// Pointers that ops take (float* x, ...) point into buffers the same backend allocated or
// adopted (DeviceBuffer): device memory for a GPU, so only the backend dereferences them. Host
// data per step (token ids, positions, key masks) comes through begin_step.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/kv_layout.h"
#include "core/matmul_precision.h"
#include "core/tensor.h"
#include "core/weight_format.h"
#include "engine/kv_cache.h"

namespace celer {

// Memory a backend allocated (or, for model tensors, adopted without a copy where it can).
struct DeviceBuffer {
  void* data = nullptr;
  uint64_t bytes = 0;
  std::shared_ptr<void> owner;  // keeps the memory alive
  float* f32() const { return static_cast<float*>(data); }
  bool empty() const { return data == nullptr; }
};

// A weight matrix (rows out, cols in) in a backend's packed form, with its optional bias: each
// backend derives its own (the CPU's cpu::PackedWeight) and is the only one to look inside.
struct Weight {
  WeightFormat format = WeightFormat::F32;
  int64_t rows = 0, cols = 0;
  virtual ~Weight() = default;
  // Bytes one pass over the matrix reads (what a decode step streams), bias excluded.
  uint64_t nbytes() const { return weight_format_bytes(format, rows, cols); }
};

// A (rows, cols) model tensor (float32 or block-quantized) to pack into `format`, and its
// optional (rows) bias.
struct WeightSource {
  const Tensor* weight;
  const Tensor* bias = nullptr;
  WeightFormat format = WeightFormat::F32;
};

// One output of a grouped linear: y (M, w.rows) with row stride y_stride, y += when accumulate.
struct LinearOut {
  const Weight* w;
  float* y;
  int64_t y_stride;
  bool accumulate = false;
};

// The host data of one engine step, read by embed, add_positions, rope and attention: `batch`
// rows of `n` new tokens each, at positions p0 .. p0 + n - 1 (positions[b * n + i]); token
// ids[b * ids_stride + i]; row b sees cache keys t < p0 + n with valid[b * valid_stride + t] != 0.
struct StepInputs {
  int64_t batch = 0, n = 0, p0 = 0;
  const int64_t* ids = nullptr;
  int64_t ids_stride = 0;
  const int64_t* positions = nullptr;
  const uint8_t* valid = nullptr;
  int64_t valid_stride = 0;
};

// What the engine asks a backend to be ready for before a call (generate, forward, score):
// scratch for up to max_rows activation rows of up to max_width values, and attention for
// query blocks of up to query_rows rows over `group` query heads per KV head of head_dim.
struct ScratchSizes {
  int64_t max_rows = 0, max_width = 0, query_rows = 0, group = 1, head_dim = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", ...
  // Whether this backend's buffers are host memory: the engine then lets ops write the
  // caller's host arrays directly instead of copying them back.
  virtual bool host_memory() const = 0;

  // --- memory
  virtual DeviceBuffer allocate(uint64_t bytes, const std::string& what) = 0;  // zeroed
  virtual DeviceBuffer adopt(const Tensor& tensor) = 0;  // a model tensor on the backend (CPU: no copy)
  virtual void copy_to_host(void* host, const void* device, uint64_t bytes) = 0;

  // --- weights: one per source (null for an empty tensor), each in its source's format.
  virtual std::vector<std::unique_ptr<Weight>> pack_weights(const std::vector<WeightSource>& sources) = 0;

  // --- per call and per step
  // Sizes the backend's scratch (kept when large enough) and fixes the resources this call
  // uses (the CPU's thread pool), so that nothing changes under a running call.
  virtual void prepare(const ScratchSizes& sizes) = 0;
  virtual uint64_t scratch_bytes() const = 0;
  virtual std::unique_ptr<KVCache> make_kv_cache(const KVLayout& layout) = 0;
  virtual void begin_step(const StepInputs& inputs) = 0;

  // --- ops; `rows` are tokens, every array row-major.
  // x (batch * n, H) = table[ids]; the table (vocab, H) float32 or block-quantized (dequantized
  // exactly, row by row)
  virtual void embed(float* x, const DeviceBuffer& table, DType table_dtype, int64_t H) = 0;
  // x (batch * n, H) += table[positions] (learned positions, gpt2)
  virtual void add_positions(float* x, const DeviceBuffer& table, int64_t H) = 0;
  // out = x * rsqrt(mean(x^2) + eps) * w
  virtual void rmsnorm(float* out, const float* x, const DeviceBuffer& w, int64_t rows, int64_t H, float eps) = 0;
  // out = (x - mean) / sqrt(var + eps) * w + b
  virtual void layernorm(float* out, const float* x, const DeviceBuffer& w, const DeviceBuffer& b, int64_t rows,
                         int64_t H, float eps) = 0;
  // Every output on the same x (M, K), row stride x_stride; the outputs share format and K.
  virtual void linear(std::initializer_list<LinearOut> outs, const float* x, int64_t x_stride, int64_t M,
                      MatmulPrecision precision) = 0;
  // RoPE in place on x (batch * n, heads * D) at the step's positions; cos/sin (positions, D)
  // in rotate-half layout (cat(freqs, freqs)). Rotate-half pairs dimension i with i + D/2;
  // `interleaved` pairs 2i with 2i + 1 (GGUF llama files), at the same frequency i.
  virtual void rope(float* x, int64_t heads, int64_t D, const DeviceBuffer& cos, const DeviceBuffer& sin,
                    bool interleaved) = 0;
  // gate (rows, width) = silu(gate) * up
  virtual void swiglu(float* gate, const float* up, int64_t rows, int64_t width) = 0;
  // x (rows, width) = gelu(x): the tanh approximation or the exact erf form
  virtual void gelu(float* x, int64_t rows, int64_t width, bool tanh_form) = 0;
  // The step's queries q (batch * n, heads * D, row stride q_stride) attend over what the cache
  // holds for model layer `layer` (causal, and masked as StepInputs says); out has q's layout.
  // A query that sees no key gets zeros. The cache may record what the keys received (H2O).
  virtual void attention(KVCache& cache, int64_t layer, int64_t heads, int64_t kv_heads, int64_t D, const float* q,
                         float* out, int64_t q_stride) = 0;
};

// The backend for `device` ("cpu"; "cuda" where built and implemented). ValueError otherwise.
std::unique_ptr<Backend> make_backend(const std::string& device);
// Whether this build compiled the CUDA sources (nvcc was found: CMake's CELER_CUDA).
bool built_with_cuda();

}  // namespace celer
