#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "backend/cpu/gemm.h"
#include "backend/cpu/kv_cache.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/packed_weight.h"
#include "core/block_quant.h"
#include "core/config.h"
#include "core/error.h"

namespace celer::cpu {

namespace {
DeviceBuffer buffer_of(const Tensor& t) { return {t.data, t.nbytes(), t.owner}; }
}  // namespace

DeviceBuffer CpuBackend::allocate(uint64_t bytes, const std::string& what) {
  check_allocation(bytes, what);
  return buffer_of(Tensor::zeros(DType::U8, {int64_t(bytes)}));
}

DeviceBuffer CpuBackend::adopt(const Tensor& tensor) { return buffer_of(tensor); }

void CpuBackend::copy_to_host(void* host, const void* device, uint64_t bytes) {
  if (host != device) std::memcpy(host, device, size_t(bytes));
}

std::vector<std::unique_ptr<Weight>> CpuBackend::pack_weights(const std::vector<WeightSource>& sources) {
  // Every packed matrix in one arena (packed_weight.h says why), sized by a first pass.
  uint64_t arena_bytes = 0;
  for (const WeightSource& s : sources)
    if (!s.weight->empty())
      arena_bytes += WeightArena::bytes_for(s.weight->dim(0), s.weight->dim(1), s.format, s.weight->dtype);
  std::optional<WeightArena> arena;
  if (arena_bytes > 0) {
    check_allocation(arena_bytes, "the packed copy of the weights");
    arena.emplace(arena_bytes);
  }
  std::vector<std::unique_ptr<Weight>> out;
  for (const WeightSource& s : sources)
    out.push_back(s.weight->empty() ? nullptr
                                    : std::make_unique<PackedWeight>(
                                          pack_weight(*s.weight, s.format, s.bias, arena ? &*arena : nullptr)));
  return out;
}

void CpuBackend::prepare(const ScratchSizes& sizes) {
  make_kernel_choices();  // (timed once per process: not inside a timed step or the pool)
  pool_ = thread_pool();
  const int threads = pool_->num_threads();
  linear_scratch_.reserve(threads, sizes.max_width, sizes.max_rows);  // keeps what is large enough
  const bool grows = sizes.query_rows > sizes_.query_rows || sizes.group > sizes_.group ||
                     sizes.head_dim > sizes_.head_dim;
  if (grows) {
    sizes_.query_rows = std::max(sizes_.query_rows, sizes.query_rows);
    sizes_.group = std::max(sizes_.group, sizes.group);
    sizes_.head_dim = std::max(sizes_.head_dim, sizes.head_dim);
    attention_scratch_.clear();
  }
  if (int64_t(attention_scratch_.size()) < threads) {
    attention_scratch_.resize(size_t(threads));
    for (AttentionScratch& s : attention_scratch_) s.reserve(sizes_.query_rows, sizes_.group, sizes_.head_dim);
  }
}

uint64_t CpuBackend::scratch_bytes() const {
  uint64_t total = linear_scratch_.bytes();
  for (const AttentionScratch& s : attention_scratch_)
    total += (s.k_tile.size() + s.v_tile.size() + s.key_columns.size() + s.scores.size() + s.row_max.size() +
              s.row_sum.size()) * sizeof(float);
  return total;
}

std::unique_ptr<KVCache> CpuBackend::make_kv_cache(const KVLayout& layout) {
  return std::make_unique<CpuKVCache>(layout);
}

void CpuBackend::embed(float* x, const DeviceBuffer& table, DType table_dtype, int64_t H) {
  for (int64_t b = 0; b < step_.batch; ++b) {
    const int64_t* ids = step_.ids + b * step_.ids_stride;
    float* rows = x + b * step_.n * H;
    if (table_dtype == DType::F32) {
      cpu::embedding(rows, table.f32(), ids, step_.n, H);
      continue;
    }
    const uint64_t row_bytes = tensor_bytes(table_dtype, {1, H});
    for (int64_t i = 0; i < step_.n; ++i)
      dequantize_blocks(table_dtype, static_cast<const uint8_t*>(table.data) + uint64_t(ids[i]) * row_bytes, H,
                        rows + i * H);
  }
}

void CpuBackend::add_positions(float* x, const DeviceBuffer& table, int64_t H) {
  for (int64_t r = 0; r < step_.batch * step_.n; ++r) {
    const float* p = table.f32() + step_.positions[r] * H;
    float* row = x + r * H;
    for (int64_t i = 0; i < H; ++i) row[i] += p[i];
  }
}

void CpuBackend::rmsnorm(float* out, const float* x, const DeviceBuffer& w, int64_t rows, int64_t H, float eps) {
  cpu::rmsnorm(out, x, w.f32(), rows, H, eps);
}

void CpuBackend::layernorm(float* out, const float* x, const DeviceBuffer& w, const DeviceBuffer& b, int64_t rows,
                           int64_t H, float eps) {
  cpu::layernorm(out, x, w.f32(), b.f32(), rows, H, eps);
}

void CpuBackend::linear(std::initializer_list<LinearOut> outs, const float* x, int64_t x_stride, int64_t M,
                        MatmulPrecision precision) {
  // One group per run of outputs in the same format (a GGUF file may store v or down in
  // another format than q and k): each runs as one parallel section.
  const LinearOut* first = outs.begin();
  for (const LinearOut* o = outs.begin(); o <= outs.end(); ++o)
    if (o == outs.end() || o->w->format != first->w->format) {
      linear_group(LinearOuts{first, o}, x, x_stride, M, &linear_scratch_, precision, pool_.get());
      first = o;
    }
}

void CpuBackend::rope(float* x, int64_t heads, int64_t D, const DeviceBuffer& cos, const DeviceBuffer& sin,
                      bool interleaved) {
  (interleaved ? cpu::rope_interleaved : cpu::rope)(x, step_.batch * step_.n, heads, D, step_.positions, cos.f32(),
                                                    sin.f32());
}

namespace {
int64_t elementwise_grain(int64_t width) { return std::max<int64_t>(1, 16384 / width); }  // rows: >= ~16K values a thread
}  // namespace

void CpuBackend::swiglu(float* gate, const float* up, int64_t rows, int64_t width) {
  pool_->parallel_for(rows, [&](int64_t r0, int64_t r1) {
    cpu::swiglu(gate + r0 * width, gate + r0 * width, up + r0 * width, (r1 - r0) * width);
  }, elementwise_grain(width));
}

void CpuBackend::gelu(float* x, int64_t rows, int64_t width, bool tanh_form) {
  pool_->parallel_for(rows, [&](int64_t r0, int64_t r1) {
    cpu::gelu(x + r0 * width, (r1 - r0) * width, tanh_form);
  }, elementwise_grain(width));
}

void CpuBackend::attention(KVCache& cache, int64_t layer, int64_t heads, int64_t kv_heads, int64_t D,
                           const float* q, float* out, int64_t q_stride) {
  auto& cpu_cache = static_cast<CpuKVCache&>(cache);  // made by make_kv_cache
  const int64_t group = heads / kv_heads;
  pool_->parallel_for_threads(step_.batch * kv_heads, [&](int64_t i0, int64_t i1, int thread) {
    for (int64_t i = i0; i < i1; ++i)
      cache_attention(cpu_cache, layer, i / kv_heads, i % kv_heads, group, D, q, out, q_stride, step_.n,
                      step_.valid + (i / kv_heads) * step_.valid_stride, attention_scratch_[size_t(thread)]);
  });
}

}  // namespace celer::cpu
