// A typed, shaped block of memory. Storage is shared: a tensor may own a heap buffer or view
// a memory-mapped file (safetensors) without copying; `owner` keeps either alive.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace celer {

// Element types, and llama.cpp's block-quantized types (GGML's Q8_0, Q4_0, Q4_1, Q4_K, Q6_K;
// core/block_quant.h defines them): those store a tensor's last dimension in blocks of
// dtype_block_values(dtype) values, dtype_size(dtype) bytes each.
enum class DType { F32, F16, BF16, F64, I8, I32, I64, U8, BOOL, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K };

size_t dtype_size(DType dtype);          // bytes per element, or per block of a block type
int64_t dtype_block_values(DType dtype);  // 1, or the values per block of a block type
inline bool is_block_type(DType dtype) { return dtype_block_values(dtype) > 1; }

std::string dtype_name(DType dtype);            // numpy-style: "float32", "int32", ...
DType dtype_from_name(const std::string& name); // numpy-style names; throws FormatError

using Shape = std::vector<int64_t>;
// Bytes of a tensor of `shape`; for a block type the last dimension must be a whole number of
// blocks (FormatError otherwise).
uint64_t tensor_bytes(DType dtype, const Shape& shape);
std::string shape_str(const Shape& shape);       // "(2, 5)"

// Product of dims with overflow and negative checks (throws FormatError).
int64_t checked_numel(const Shape& shape);

struct Tensor {
  DType dtype = DType::F32;
  Shape shape;
  std::shared_ptr<void> owner;  // keeps the memory alive
  void* data = nullptr;

  bool empty() const { return data == nullptr; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(tensor_bytes(dtype, shape)); }
  int64_t dim(size_t i) const { return shape.at(i); }

  float* f32();
  const float* f32() const;
  template <class T> T* as() { return static_cast<T*>(data); }
  template <class T> const T* as() const { return static_cast<const T*>(data); }

  // Fresh 64-byte aligned, zero-filled storage.
  static Tensor zeros(DType dtype, Shape shape);
  // A view of memory owned by `owner` (no copy).
  static Tensor view(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner);
};

// Copy of `t` converted to float32 (F16, BF16, F64, F32 sources).
Tensor to_f32(const Tensor& t);

// Half-precision conversions (round to nearest even; NaN and Inf kept).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
// bfloat16 is the top half of a float32: inline, so that loops over arrays vectorize.
inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// `bytes` of zeroed memory, 64-byte aligned; with `huge_pages`, 2 MiB aligned and on
// transparent huge pages where the kernel offers them (Tensor::zeros says why).
std::shared_ptr<void> zeroed_buffer(size_t bytes, bool huge_pages);

inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fff + ((x >> 16) & 1);  // round to nearest even
  return uint16_t(x >> 16);
}
// Two values as a pair of bf16 in one 32-bit word, `lo` in the low half: the operand layout of
// bf16 dot-product instructions (vdpbf16ps).
inline uint32_t bf16_pair(float lo, float hi) { return uint32_t(f32_to_bf16(lo)) | uint32_t(f32_to_bf16(hi)) << 16; }

}  // namespace celer
