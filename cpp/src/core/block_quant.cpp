#include "core/block_quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace celer {

void q4_k_scale_min(const uint8_t* s, int g, uint8_t* scale, uint8_t* min) {
  if (g < 4) {  // bytes 0-3: scales, 4-7: mins, low six bits each
    *scale = s[g] & 63;
    *min = s[g + 4] & 63;
  } else {  // low four bits in bytes 8-11, the top two in the spare bits of bytes 0-7
    *scale = uint8_t((s[g + 4] & 0xF) | ((s[g - 4] >> 6) << 4));
    *min = uint8_t((s[g + 4] >> 4) | ((s[g] >> 6) << 4));
  }
}

namespace {

void dequantize_q8_0(const BlockQ8_0& b, float* out) {
  const float d = f16_to_f32(b.d);
  for (int i = 0; i < 32; ++i) out[i] = float(b.qs[i]) * d;
}

void dequantize_q4_0(const BlockQ4_0& b, float* out) {
  const float d = f16_to_f32(b.d);
  for (int j = 0; j < 16; ++j) {
    out[j] = float(int(b.qs[j] & 0xF) - 8) * d;
    out[j + 16] = float(int(b.qs[j] >> 4) - 8) * d;
  }
}

void dequantize_q4_1(const BlockQ4_1& b, float* out) {
  const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
  for (int j = 0; j < 16; ++j) {
    out[j] = float(b.qs[j] & 0xF) * d + m;
    out[j + 16] = float(b.qs[j] >> 4) * d + m;
  }
}

void dequantize_q4_k(const BlockQ4_K& b, float* out) {
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  const uint8_t* q = b.qs;
  for (int g = 0; g < 8; g += 2, q += 32) {  // 64 values per 32 bytes: low nibbles, then high
    uint8_t sc, m;
    q4_k_scale_min(b.scales, g, &sc, &m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    q4_k_scale_min(b.scales, g + 1, &sc, &m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) *out++ = d1 * float(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *out++ = d2 * float(q[l] >> 4) - m2;
  }
}

void dequantize_q6_k(const BlockQ6_K& b, float* out) {
  const float d = f16_to_f32(b.d);
  const uint8_t* ql = b.ql;
  const uint8_t* qh = b.qh;
  const int8_t* sc = b.scales;
  for (int half = 0; half < 2; ++half, out += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * float(sc[is]) * float(q1);
      out[l + 32] = d * float(sc[is + 2]) * float(q2);
      out[l + 64] = d * float(sc[is + 4]) * float(q3);
      out[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
}

// One block's values into out[0, block); the caller copies the ones it wants.
void dequantize_block(DType type, const uint8_t* block, float* out) {
  switch (type) {
    case DType::Q8_0: return dequantize_q8_0(*reinterpret_cast<const BlockQ8_0*>(block), out);
    case DType::Q4_0: return dequantize_q4_0(*reinterpret_cast<const BlockQ4_0*>(block), out);
    case DType::Q4_1: return dequantize_q4_1(*reinterpret_cast<const BlockQ4_1*>(block), out);
    case DType::Q4_K: return dequantize_q4_k(*reinterpret_cast<const BlockQ4_K*>(block), out);
    case DType::Q6_K: return dequantize_q6_k(*reinterpret_cast<const BlockQ6_K*>(block), out);
    default: throw ValueError(dtype_name(type) + " is not a block-quantized type");
  }
}

// llama.cpp's reference quantizers, one block of 32 values each.
void quantize_q8_0(const float* x, BlockQ8_0& b) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = f32_to_f16(d);
  for (int i = 0; i < 32; ++i) b.qs[i] = int8_t(std::round(x[i] * id));
}

void quantize_q4_0(const float* x, BlockQ4_0& b) {
  float amax = 0.0f, max = 0.0f;  // the value of largest magnitude, with its sign
  for (int i = 0; i < 32; ++i)
    if (amax < std::fabs(x[i])) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = f32_to_f16(d);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, int(int8_t(x[j] * id + 8.5f)));
    const int hi = std::min(15, int(int8_t(x[j + 16] * id + 8.5f)));
    b.qs[j] = uint8_t(lo | (hi << 4));
  }
}

void quantize_q4_1(const float* x, BlockQ4_1& b) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int i = 0; i < 32; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
  }
  const float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = f32_to_f16(d);
  b.m = f32_to_f16(min);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, int(int8_t((x[j] - min) * id + 0.5f)));
    const int hi = std::min(15, int(int8_t((x[j + 16] - min) * id + 0.5f)));
    b.qs[j] = uint8_t(lo | (hi << 4));
  }
}

}  // namespace

void dequantize_blocks(DType type, const void* blocks, int64_t n, float* out) {
  const int64_t block = dtype_block_values(type), bytes = int64_t(dtype_size(type));
  if (block <= 1) throw ValueError(dtype_name(type) + " is not a block-quantized type");
  const uint8_t* src = static_cast<const uint8_t*>(blocks);
  float tail[256];
  for (int64_t i = 0; i < n; i += block, src += bytes) {
    if (n - i >= block) {
      dequantize_block(type, src, out + i);
    } else {
      dequantize_block(type, src, tail);
      std::memcpy(out + i, tail, size_t(n - i) * sizeof(float));
    }
  }
}

void quantize_blocks(DType type, const float* x, int64_t n, void* blocks) {
  uint8_t* dst = static_cast<uint8_t*>(blocks);
  const int64_t bytes = int64_t(dtype_size(type));
  if (type != DType::Q8_0 && type != DType::Q4_0 && type != DType::Q4_1)
    throw ValueError("quantizing to " + dtype_name(type) + " is not supported (Q8_0, Q4_0, Q4_1 are)");
  for (int64_t i = 0; i < n; i += 32, dst += bytes) {
    float v[32] = {};  // a short last block is padded with zeros
    std::memcpy(v, x + i, size_t(std::min<int64_t>(32, n - i)) * sizeof(float));
    if (type == DType::Q8_0) quantize_q8_0(v, *reinterpret_cast<BlockQ8_0*>(dst));
    if (type == DType::Q4_0) quantize_q4_0(v, *reinterpret_cast<BlockQ4_0*>(dst));
    if (type == DType::Q4_1) quantize_q4_1(v, *reinterpret_cast<BlockQ4_1*>(dst));
  }
}

int64_t first_nonfinite_block(DType type, const void* blocks, int64_t num_blocks) {
  const uint8_t* p = static_cast<const uint8_t*>(blocks);
  const size_t bytes = dtype_size(type);
  auto finite = [](uint16_t h) { return (h & 0x7c00) != 0x7c00; };  // fp16 exponent all ones: Inf/NaN
  auto half_at = [&](int64_t b, size_t offset) {
    uint16_t h;
    std::memcpy(&h, p + size_t(b) * bytes + offset, 2);
    return h;
  };
  for (int64_t b = 0; b < num_blocks; ++b) {
    bool ok = true;
    switch (type) {
      case DType::Q8_0: case DType::Q4_0: ok = finite(half_at(b, 0)); break;
      case DType::Q4_1: case DType::Q4_K: ok = finite(half_at(b, 0)) && finite(half_at(b, 2)); break;
      case DType::Q6_K: ok = finite(half_at(b, 208)); break;
      default: throw ValueError(dtype_name(type) + " is not a block-quantized type");
    }
    if (!ok) return b;
  }
  return -1;
}

}  // namespace celer
