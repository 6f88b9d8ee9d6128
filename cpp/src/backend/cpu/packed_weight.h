// A weight matrix (N output rows, K inputs) in the format the CPU backend computes with
// (core/weight_format.h defines the formats):
//   F32   the model's own float32 rows (no copy);
//   BF16  bfloat16 values (linear.h rounds the layer's inputs too);
//   Int8  int8 values (rows, cols) and one fp16 scale per block of 32 values of a row, in a
//         second array (rows, blocks); a row's last block may be shorter.
//   Q4_0, Q4_1  llama.cpp's blocks of 32, split into arrays the kernels stream: nibbles
//         (rows, blocks * 16 bytes; byte j of a block: value j low, value j + 16 high), fp16
//         scales d (rows, blocks) and, Q4_1, fp16 minimums m (rows, blocks); a row's last block
//         is padded with zeros.
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
  Tensor values;               // BF16: uint16 (rows, cols); Int8: int8 (rows, cols); Q4: nibbles
  Tensor scales;               // Int8, Q4: fp16 bits (rows, blocks_per_row)
  Tensor mins;                 // Q4_1: fp16 bits (rows, blocks_per_row)
  const float* bias = nullptr;  // (rows) or null
  Tensor source, bias_source;   // keep the F32 rows and the bias alive

  int64_t blocks_per_row() const { return (cols + kInt8Block - 1) / kInt8Block; }
  const uint16_t* bf16_row(int64_t r) const { return values.as<uint16_t>() + r * cols; }
  const int8_t* int8_row(int64_t r) const { return values.as<int8_t>() + r * cols; }
  const uint16_t* int8_scales(int64_t r) const { return scales.as<uint16_t>() + r * blocks_per_row(); }
  const uint8_t* q4_row(int64_t r) const { return values.as<uint8_t>() + r * blocks_per_row() * 16; }
  const uint16_t* q4_scales(int64_t r) const { return scales.as<uint16_t>() + r * blocks_per_row(); }
  const uint16_t* q4_mins(int64_t r) const { return mins.as<uint16_t>() + r * blocks_per_row(); }
};

// One zeroed buffer on huge pages holding many packed weights (an engine's), handed out in
// order. Decoding streams every matrix once per token: on 4 KiB pages each page costs a TLB
// miss (a two-level walk in a virtual machine), and per-matrix huge-page buffers would round
// every matrix and every scale table up to 2 MiB. One arena wastes at most one page.
class WeightArena {
 public:
  // Bytes pack_weight takes from an arena for a (rows, cols) matrix of `source` dtype in `format`.
  static uint64_t bytes_for(int64_t rows, int64_t cols, WeightFormat format, DType source);
  explicit WeightArena(uint64_t bytes);
  Tensor take(DType dtype, const Shape& shape);  // the next bytes, 64-byte aligned

 private:
  std::shared_ptr<void> memory_;
  uint64_t used_ = 0, capacity_ = 0;
};

// Packs a (rows, cols) tensor, float32 or block-quantized (core/block_quant.h); `bias` is an
// optional (rows) float32 tensor. A source whose values the format holds exactly (F32 into
// F32, Q8_0 into Int8, Q4_0 into Q4_0, ...) keeps them exactly; any other source is
// dequantized (exactly) and then rounded or quantized into the format. F32 from F32 keeps a
// view of `w` (the storage is shared). Buffers come from `arena` when given, else their own.
PackedWeight pack_weight(const Tensor& w, WeightFormat format, const Tensor* bias = nullptr,
                         WeightArena* arena = nullptr);

// Asks for weight row r's inputs [k, k + n) in L2 (the GEMMs' weight packs read each row in a
// short run, rows far apart, and the hardware prefetcher does not see those runs coming).
inline void prefetch_row_inputs(const PackedWeight& w, int64_t r, int64_t k, int64_t n) {
  const char* p = nullptr;
  int64_t bytes = 0;
  switch (w.format) {
    case WeightFormat::F32: p = reinterpret_cast<const char*>(w.f32 + r * w.cols + k), bytes = n * 4; break;
    case WeightFormat::BF16: p = reinterpret_cast<const char*>(w.bf16_row(r) + k), bytes = n * 2; break;
    case WeightFormat::Int8: p = reinterpret_cast<const char*>(w.int8_row(r) + k), bytes = n; break;
    case WeightFormat::Q4_0: case WeightFormat::Q4_1:
      p = reinterpret_cast<const char*>(w.q4_row(r) + k / 2), bytes = n / 2;
      break;
  }
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, /*rw=*/0, /*locality=*/2);
}

// Rows [r0, r1) as float32 into out ((r1 - r0), cols): the exact values the kernels use.
// Q4 values are exact in float32 (a 4-bit q times an fp16 d, plus an fp16 m).
void unpack_rows(const PackedWeight& w, int64_t r0, int64_t r1, float* out);
// Inputs [k0, k0 + n) of row r the same way, into out (n).
void unpack_inputs(const PackedWeight& w, int64_t r, int64_t k0, int64_t n, float* out);

}  // namespace celer::cpu
