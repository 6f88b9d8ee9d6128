#include "backend/cpu/packed_weight.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"
#include "backend/cpu/threadpool.h"

namespace celer::cpu {

namespace {
// One block of the int8 format: its fp16 scale, and the n <= 32 int8 values quantized with that scale.
// Plain fixed-size loops over a padded copy, so the compiler vectorizes them.
uint16_t quantize_block_int8(const float* w, int64_t n, int8_t* q) {
  float x[kInt8Block] = {};
  std::memcpy(x, w, size_t(n) * 4);
  float amax = 0.0f;
  for (int i = 0; i < kInt8Block; ++i) amax = std::max(amax, std::fabs(x[i]));
  const uint16_t bits = f32_to_f16(amax / 127.0f);
  const float scale = f16_to_f32(bits);  // quantize against the scale we keep
  const float divisor = scale > 0.0f ? scale : 1.0f;
  int8_t out[kInt8Block];
  for (int i = 0; i < kInt8Block; ++i) {
    // x / scale rounded half to even: adding and subtracting 1.5 * 2^23 rounds any |v| < 2^22
    // in the default rounding mode, and unlike nearbyint it vectorizes.
    // A zero scale (all zeros, or max|w| below fp16's range) leaves |v| < 1e-5: it rounds to 0.
    const float v = x[i] / divisor;
    const float r = (v + 12582912.0f) - 12582912.0f;
    out[i] = int8_t(std::min(127.0f, std::max(-127.0f, r)));
  }
  std::memcpy(q, out, size_t(n));
  return bits;
}

void quantize_row_int8(const float* w, int64_t cols, int8_t* q, uint16_t* scales) {
  for (int64_t b0 = 0, blk = 0; b0 < cols; b0 += kInt8Block, ++blk)
    scales[blk] = quantize_block_int8(w + b0, std::min(kInt8Block, cols - b0), q + b0);
}
}  // namespace

namespace {
constexpr uint64_t kArenaAlign = 64;
uint64_t aligned(uint64_t bytes) { return (bytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign; }

// The buffers pack_weight allocates for a (rows, cols) matrix in `format`: values, then scales.
std::vector<std::pair<DType, Shape>> packed_buffers(int64_t rows, int64_t cols, WeightFormat format) {
  switch (format) {
    case WeightFormat::BF16: return {{DType::U8, {rows, 2 * cols}}};
    case WeightFormat::Int8: return {{DType::I8, {rows, cols}}, {DType::U8, {rows, 2 * ((cols + kInt8Block - 1) / kInt8Block)}}};
    default: return {};  // F32 keeps the model's own rows
  }
}
}  // namespace

uint64_t WeightArena::bytes_for(int64_t rows, int64_t cols, WeightFormat format) {
  uint64_t total = 0;
  for (const auto& [dtype, shape] : packed_buffers(rows, cols, format))
    total += aligned(uint64_t(checked_numel(shape)) * dtype_size(dtype));
  return total;
}

WeightArena::WeightArena(uint64_t bytes) : memory_(zeroed_buffer(size_t(bytes), /*huge_pages=*/true)), capacity_(bytes) {}

Tensor WeightArena::take(DType dtype, const Shape& shape) {
  const uint64_t bytes = aligned(uint64_t(checked_numel(shape)) * dtype_size(dtype));
  require(used_ + bytes <= capacity_, "WeightArena: " + std::to_string(bytes) + " bytes asked, " +
                                          std::to_string(capacity_ - used_) + " left");
  Tensor t = Tensor::view(dtype, shape, static_cast<char*>(memory_.get()) + used_, memory_);
  used_ += bytes;
  return t;
}

PackedWeight pack_weight(const Tensor& w, WeightFormat format, const Tensor* bias, WeightArena* arena) {
  require(w.dtype == DType::F32 && w.shape.size() == 2, "pack_weight: expected a float32 matrix, got " +
                                                             dtype_name(w.dtype) + " " + shape_str(w.shape));
  PackedWeight p;
  p.format = format;
  p.rows = w.dim(0);
  p.cols = w.dim(1);
  p.source = w;
  if (bias != nullptr && !bias->empty()) {
    require(bias->dtype == DType::F32 && bias->numel() == p.rows, "pack_weight: bias must be float32 (" +
                                                                       std::to_string(p.rows) + ")");
    p.bias = bias->f32();
    p.bias_source = *bias;
  }
  const float* src = w.f32();
  const int64_t cols = p.cols;
  std::vector<Tensor> buffers;
  for (const auto& [dtype, shape] : packed_buffers(p.rows, cols, format))
    buffers.push_back(arena != nullptr ? arena->take(dtype, shape) : Tensor::zeros(dtype, shape));
  if (format == WeightFormat::F32) {
    p.f32 = src;
  } else if (format == WeightFormat::BF16) {
    p.values = buffers[0];
    uint16_t* dst = p.values.as<uint16_t>();
    thread_pool()->parallel_for(p.rows, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0 * cols; i < r1 * cols; ++i) dst[i] = f32_to_bf16(src[i]);
    }, 16);
  } else {
    p.values = buffers[0];
    p.scales = buffers[1];
    thread_pool()->parallel_for(p.rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        quantize_row_int8(src + r * cols, cols, p.values.as<int8_t>() + r * cols,
                        p.scales.as<uint16_t>() + r * p.blocks_per_row());
    }, 16);
  }
  return p;
}

void unpack_rows(const PackedWeight& w, int64_t r0, int64_t r1, float* out) {
  // Plain loops the compiler vectorizes: this runs once per weight tile in a prefill.
  const int64_t K = w.cols;
  for (int64_t r = r0; r < r1; ++r, out += K) {
    if (w.format == WeightFormat::F32) {
      std::memcpy(out, w.f32 + r * K, size_t(K) * 4);
    } else if (w.format == WeightFormat::BF16) {
      const uint16_t* src = w.bf16_row(r);
      for (int64_t i = 0; i < K; ++i) out[i] = bf16_to_f32(src[i]);
    } else {
      const int8_t* q = w.int8_row(r);
      const uint16_t* s = w.int8_scales(r);
      for (int64_t b0 = 0; b0 < K; b0 += kInt8Block) {
        const float scale = f16_to_f32(s[b0 / kInt8Block]);
        const int64_t n = std::min(kInt8Block, K - b0);
        for (int64_t i = 0; i < n; ++i) out[b0 + i] = float(q[b0 + i]) * scale;
      }
    }
  }
}

}  // namespace celer::cpu
