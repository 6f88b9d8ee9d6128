#include "core/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace celer {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::F64: case DType::I64: return 8;
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
    case DType::Q8_0: return 34;   // fp16 scale, 32 int8
    case DType::Q4_0: return 18;   // fp16 scale, 32 nibbles
    case DType::Q4_1: return 20;   // fp16 scale and minimum, 32 nibbles
    case DType::Q4_K: return 144;  // fp16 scale and minimum, 12 bytes of 6-bit sub-scales, 256 nibbles
    case DType::Q6_K: return 210;  // 256 x (4 + 2 bits), 16 int8 sub-scales, fp16 scale
  }
  return 0;
}

int64_t dtype_block_values(DType dtype) {
  switch (dtype) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: return 32;
    case DType::Q4_K: case DType::Q6_K: return 256;
    default: return 1;
  }
}

uint64_t tensor_bytes(DType dtype, const Shape& shape) {
  const int64_t n = checked_numel(shape), block = dtype_block_values(dtype);
  if (block > 1 && (shape.empty() || shape.back() % block != 0))
    throw FormatError("a " + dtype_name(dtype) + " tensor's last dimension must be a multiple of " +
                      std::to_string(block) + ", got shape " + shape_str(shape));
  return uint64_t(n / block) * dtype_size(dtype);
}

namespace {
const struct { DType dtype; const char* name; } kDTypeNames[] = {
    {DType::F32, "float32"}, {DType::F16, "float16"}, {DType::BF16, "bfloat16"}, {DType::F64, "float64"},
    {DType::I8, "int8"},     {DType::I32, "int32"},   {DType::I64, "int64"},     {DType::U8, "uint8"},
    {DType::BOOL, "bool"},   {DType::Q8_0, "q8_0"},   {DType::Q4_0, "q4_0"},     {DType::Q4_1, "q4_1"},
    {DType::Q4_K, "q4_k"},   {DType::Q6_K, "q6_k"},
};
}  // namespace

std::string dtype_name(DType dtype) {
  for (auto& e : kDTypeNames)
    if (e.dtype == dtype) return e.name;
  return "unknown";
}

DType dtype_from_name(const std::string& name) {
  for (auto& e : kDTypeNames)
    if (name == e.name) return e.dtype;
  throw FormatError("unknown dtype '" + name + "'");
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

int64_t checked_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw FormatError("negative dimension in shape " + shape_str(shape));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / 8 / d)
      throw FormatError("shape " + shape_str(shape) + " is too large");
    n *= d;
  }
  return n;
}

int64_t Tensor::numel() const { return checked_numel(shape); }

float* Tensor::f32() {
  if (dtype != DType::F32) throw ValueError("expected a float32 tensor, got " + dtype_name(dtype));
  return static_cast<float*>(data);
}
const float* Tensor::f32() const { return const_cast<Tensor*>(this)->f32(); }

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
size_t round_to_huge_pages(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }
bool huge_pages_pay_off(size_t bytes) { return bytes >= kHugePage && round_to_huge_pages(bytes) - bytes <= bytes / 8; }
}  // namespace

std::shared_ptr<void> zeroed_buffer(size_t bytes, bool huge_pages) {
  const size_t align = huge_pages ? kHugePage : 64;
  const size_t rounded = (std::max<size_t>(bytes, 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (!p) throw ValueError("out of memory allocating " + std::to_string(bytes) + " bytes");
#ifdef MADV_HUGEPAGE
  if (huge_pages) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  std::memset(p, 0, rounded);
  return std::shared_ptr<void>(p, std::free);
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  const size_t bytes = std::max<size_t>(t.nbytes(), 1);
  // Large tensors (weights, caches) on transparent huge pages where the kernel offers them
  // and the rounding up to whole 2 MiB pages wastes at most 1/8 of the size: 512x fewer page
  // faults when they are first written, and weight streams without a TLB miss every 4 KiB
  // (INT8 decode of a 1B model: +17% with its 4 MiB matrices on huge pages).
  t.owner = zeroed_buffer(bytes, huge_pages_pay_off(bytes));
  t.data = t.owner.get();
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = data;
  t.owner = std::move(owner);
  return t;
}

namespace {
// The bits of one 32-bit type read as another (std::bit_cast before C++20).
template <class To, class From>
To bit_cast32(From from) {
  static_assert(sizeof(To) == 4 && sizeof(From) == 4);
  To to;
  std::memcpy(&to, &from, 4);
  return to;
}
}  // namespace

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // Inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do { ++e; mant <<= 1; } while (!(mant & 0x400));
    bits = sign | uint32_t(112 - e) << 23 | ((mant & 0x3ff) << 13);
  }
  return bit_cast32<float>(bits);
}

uint16_t f32_to_f16(float f) {
  const uint32_t x = bit_cast32<uint32_t>(f);
  uint32_t sign = (x >> 16) & 0x8000, absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return uint16_t(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
  if (absx >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // rounds to >= 65520: Inf
  if (absx < 0x38800000u) {  // subnormal half (or zero): scale into the 10-bit mantissa
    return uint16_t(sign | uint32_t(std::nearbyint(bit_cast32<float>(absx) * 16777216.0f)));  // |f| / 2^-24
  }
  uint32_t mant = absx & 0x7fffff, exp = (absx >> 23) - 112;
  uint32_t h = (exp << 10) | (mant >> 13), rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // round to nearest even
  return uint16_t(sign | h);
}

Tensor to_f32(const Tensor& t) {
  if (t.dtype == DType::F32) {
    Tensor out = Tensor::zeros(DType::F32, t.shape);
    std::memcpy(out.data, t.data, t.nbytes());
    return out;
  }
  Tensor out = Tensor::zeros(DType::F32, t.shape);
  float* dst = out.f32();
  int64_t n = t.numel();
  switch (t.dtype) {
    case DType::F16: {
      auto* src = t.as<uint16_t>();
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
      break;
    }
    case DType::BF16: {
      auto* src = t.as<uint16_t>();
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
      break;
    }
    case DType::F64: {
      auto* src = t.as<double>();
      for (int64_t i = 0; i < n; ++i) dst[i] = float(src[i]);
      break;
    }
    default:
      throw FormatError("cannot convert a " + dtype_name(t.dtype) + " tensor to float32");
  }
  return out;
}

}  // namespace celer
