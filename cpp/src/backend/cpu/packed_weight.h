// A weight matrix (N output rows, K inputs) in the format the CPU backend computes with
// (core/weight_format.h defines the formats):
//   F32   the model's own float32 rows (no copy);
//   BF16  bfloat16 values (linear.h rounds the layer's inputs too);
//   Int8  int8 values (rows, cols) and one fp16 scale per block of 32 values of a row, in a
//         second array (rows, blocks); a row's last block may be shorter.
// Optionally a float32 bias (N). Packing happens once, when an engine is built.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "core/weight_format.h"
#include "engine/backend.h"

namespace celer::cpu {

struct PackedWeight : Weight {
  const float* f32 = nullptr;  // F32: (rows, cols)
  Tensor values;               // BF16: uint16 (rows, cols); Int8: int8 (rows, cols)
  Tensor scales;               // Int8: fp16 bits (rows, blocks_per_row)
  const float* bias = nullptr;  // (rows) or null
  Tensor source, bias_source;   // keep the F32 rows and the bias alive

  int64_t blocks_per_row() const { return (cols + kInt8Block - 1) / kInt8Block; }
  const uint16_t* bf16_row(int64_t r) const { return values.as<uint16_t>() + r * cols; }
  const int8_t* int8_row(int64_t r) const { return values.as<int8_t>() + r * cols; }
  const uint16_t* int8_scales(int64_t r) const { return scales.as<uint16_t>() + r * blocks_per_row(); }
};

// One zeroed buffer on huge pages holding many packed weights (an engine's), handed out in
// order. Decoding streams every matrix once per token: on 4 KiB pages each page costs a TLB
// miss (a two-level walk in a virtual machine), and per-matrix huge-page buffers would round
// every matrix and every scale table up to 2 MiB. One arena wastes at most one page.
class WeightArena {
 public:
  // Bytes pack_weight takes from an arena for a (rows, cols) matrix in `format`.
  static uint64_t bytes_for(int64_t rows, int64_t cols, WeightFormat format);
  explicit WeightArena(uint64_t bytes);
  Tensor take(DType dtype, const Shape& shape);  // the next bytes, 64-byte aligned

 private:
  std::shared_ptr<void> memory_;
  uint64_t used_ = 0, capacity_ = 0;
};

// Packs a float32 (rows, cols) tensor; `bias` is an optional (rows) float32 tensor. F32 keeps
// a view of `w` (the storage is shared, so `w` itself need not outlive the result). The other
// formats' values and scales come from `arena` when given, else from their own buffers.
PackedWeight pack_weight(const Tensor& w, WeightFormat format, const Tensor* bias = nullptr,
                         WeightArena* arena = nullptr);

// Rows [r0, r1) as float32 into out ((r1 - r0), cols): the exact values the kernels use.
void unpack_rows(const PackedWeight& w, int64_t r0, int64_t r1, float* out);

}  // namespace celer::cpu
