#include "backend/cpu/packed_weight.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "core/block_quant.h"
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

// The buffers pack_weight allocates for a (rows, cols) matrix in `format`: values, then scales
// (and Q4_1's minimums).
std::vector<std::pair<DType, Shape>> packed_buffers(int64_t rows, int64_t cols, WeightFormat format, DType source) {
  const int64_t blocks = (cols + kInt8Block - 1) / kInt8Block;
  switch (format) {
    case WeightFormat::F32:  // the model's own rows, unless they need dequantizing
      if (source == DType::F32) return {};
      return {{DType::F32, {rows, cols}}};
    case WeightFormat::BF16: return {{DType::U8, {rows, 2 * cols}}};
    case WeightFormat::Int8: return {{DType::I8, {rows, cols}}, {DType::U8, {rows, 2 * blocks}}};
    case WeightFormat::Q4_0: return {{DType::U8, {rows, 16 * blocks}}, {DType::U8, {rows, 2 * blocks}}};
    case WeightFormat::Q4_1:
      return {{DType::U8, {rows, 16 * blocks}}, {DType::U8, {rows, 2 * blocks}}, {DType::U8, {rows, 2 * blocks}}};
  }
  return {};
}

// Row r of a float32 or block-quantized matrix as its exact float32 values.
void source_row(const Tensor& w, int64_t r, float* out) {
  const int64_t cols = w.dim(1);
  if (w.dtype == DType::F32) {
    std::memcpy(out, w.f32() + r * cols, size_t(cols) * 4);
    return;
  }
  const uint64_t row_bytes = tensor_bytes(w.dtype, {1, cols});
  dequantize_blocks(w.dtype, static_cast<const uint8_t*>(w.data) + uint64_t(r) * row_bytes, cols, out);
}

// One row of GGML Q4 blocks (Q4_0 or Q4_1) into the split arrays of packed row r.
void split_q4_row(const uint8_t* blocks, int64_t num_blocks, bool has_min, PackedWeight& p, int64_t r) {
  const size_t block_bytes = has_min ? sizeof(BlockQ4_1) : sizeof(BlockQ4_0);
  uint8_t* nibbles = p.values.as<uint8_t>() + r * num_blocks * 16;
  uint16_t* d = p.scales.as<uint16_t>() + r * num_blocks;
  uint16_t* m = has_min ? p.mins.as<uint16_t>() + r * num_blocks : nullptr;
  for (int64_t b = 0; b < num_blocks; ++b, blocks += block_bytes) {
    if (has_min) {
      const auto* q = reinterpret_cast<const BlockQ4_1*>(blocks);
      d[b] = q->d, m[b] = q->m;
      std::memcpy(nibbles + b * 16, q->qs, 16);
    } else {
      const auto* q = reinterpret_cast<const BlockQ4_0*>(blocks);
      d[b] = q->d;
      std::memcpy(nibbles + b * 16, q->qs, 16);
    }
  }
}
}  // namespace

uint64_t WeightArena::bytes_for(int64_t rows, int64_t cols, WeightFormat format, DType source) {
  uint64_t total = 0;
  for (const auto& [dtype, shape] : packed_buffers(rows, cols, format, source))
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
  require((w.dtype == DType::F32 || is_block_type(w.dtype)) && w.shape.size() == 2,
          "pack_weight: expected a float32 or block-quantized matrix, got " + dtype_name(w.dtype) + " " +
              shape_str(w.shape));
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
  const int64_t cols = p.cols, blocks = p.blocks_per_row();
  std::vector<Tensor> buffers;
  for (const auto& [dtype, shape] : packed_buffers(p.rows, cols, format, w.dtype))
    buffers.push_back(arena != nullptr ? arena->take(dtype, shape) : Tensor::zeros(dtype, shape));
  if (format == WeightFormat::F32 && w.dtype == DType::F32) {
    p.f32 = w.f32();
    return p;
  }
  if (!buffers.empty()) p.values = buffers[0];
  if (buffers.size() > 1) p.scales = buffers[1];
  if (buffers.size() > 2) p.mins = buffers[2];
  const uint64_t source_row_bytes = tensor_bytes(w.dtype, {1, cols});
  const auto* source_bytes = static_cast<const uint8_t*>(w.data);
  thread_pool()->parallel_for(p.rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(cols));
    std::vector<uint8_t> requantized(static_cast<size_t>(blocks) * sizeof(BlockQ4_1));
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* src = source_bytes + uint64_t(r) * source_row_bytes;
      switch (format) {
        case WeightFormat::F32:
          source_row(w, r, p.values.as<float>() + r * cols);
          break;
        case WeightFormat::BF16: {
          source_row(w, r, row.data());
          uint16_t* dst = p.values.as<uint16_t>() + r * cols;
          for (int64_t i = 0; i < cols; ++i) dst[i] = f32_to_bf16(row[size_t(i)]);
          break;
        }
        case WeightFormat::Int8:
          if (w.dtype == DType::Q8_0) {  // the same values: q and d as stored
            for (int64_t b = 0; b < blocks; ++b) {
              const auto* q = reinterpret_cast<const BlockQ8_0*>(src) + b;
              std::memcpy(p.values.as<int8_t>() + r * cols + b * kInt8Block, q->qs, kInt8Block);
              p.scales.as<uint16_t>()[r * blocks + b] = q->d;
            }
          } else {
            source_row(w, r, row.data());
            quantize_row_int8(row.data(), cols, p.values.as<int8_t>() + r * cols, p.scales.as<uint16_t>() + r * blocks);
          }
          break;
        case WeightFormat::Q4_0:
        case WeightFormat::Q4_1: {
          const DType type = format == WeightFormat::Q4_0 ? DType::Q4_0 : DType::Q4_1;
          if (w.dtype != type) {  // dequantize exactly, then llama.cpp's quantization
            source_row(w, r, row.data());
            quantize_blocks(type, row.data(), cols, requantized.data());
            src = requantized.data();
          }
          split_q4_row(src, blocks, format == WeightFormat::Q4_1, p, r);
          break;
        }
      }
    }
  }, 16);
  if (format == WeightFormat::F32) p.f32 = p.values.as<float>();
  return p;
}

void unpack_inputs(const PackedWeight& w, int64_t r, int64_t k0, int64_t n, float* out) {
  // Plain loops the compiler vectorizes, a block of 32 at a time where the format has blocks.
  const int64_t k1 = k0 + n;
  switch (w.format) {
    case WeightFormat::F32:
      std::memcpy(out, w.f32 + r * w.cols + k0, size_t(n) * 4);
      return;
    case WeightFormat::BF16: {
      const uint16_t* src = w.bf16_row(r);
      for (int64_t k = k0; k < k1; ++k) out[k - k0] = bf16_to_f32(src[k]);
      return;
    }
    case WeightFormat::Int8:
    case WeightFormat::Q4_0:
    case WeightFormat::Q4_1:
      break;
  }
  static_assert(kInt8Block == 32, "int8 and Q4 blocks share the loop below");
  for (int64_t b = k0 / 32; b * 32 < k1; ++b) {
    const int64_t a = std::max(k0, b * 32), e = std::min(k1, b * 32 + 32);
    float* o = out + (a - k0);
    if (w.format == WeightFormat::Int8) {
      const int8_t* q = w.int8_row(r);
      const float scale = f16_to_f32(w.int8_scales(r)[b]);
      for (int64_t k = a; k < e; ++k) o[k - a] = float(q[k]) * scale;
      continue;
    }
    const uint8_t* q = w.q4_row(r) + 16 * b;  // byte j: value j low, value j + 16 high
    const float d = f16_to_f32(w.q4_scales(r)[b]);
    const float m = w.format == WeightFormat::Q4_1 ? f16_to_f32(w.q4_mins(r)[b]) : -8.0f * d;  // q4_0: (q - 8) d
    for (int64_t k = a; k < e; ++k) {
      const int64_t j = k - b * 32;
      o[k - a] = float(j < 16 ? q[j] & 0xF : q[j - 16] >> 4) * d + m;
    }
  }
}

void unpack_rows(const PackedWeight& w, int64_t r0, int64_t r1, float* out) {
  for (int64_t r = r0; r < r1; ++r, out += w.cols) unpack_inputs(w, r, 0, w.cols, out);
}

}  // namespace celer::cpu
