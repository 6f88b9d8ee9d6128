// The weight formats the engine's linear layers compute with, in one table: names, block
// layouts and sizes. Every backend, the bindings (celerinfer's WEIGHT_DTYPES and the byte
// counts the roofline and the comparisons use) and the docs read this table; adding a format
// is one entry here plus its pack and kernels in each backend (docs/design.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace celer {

enum class WeightFormat {
  F32,   // float32, the model's own values
  BF16,  // bfloat16, rounded to nearest even (the layers' inputs are rounded too)
  Int8,  // weight-only int8, symmetric per block of 32 values of a row (like llama.cpp's Q8_0):
         // scale = fp16(max|w| / 127), q = clamp(round(w / scale), +-127); value = q * scale
  Q4_0,  // llama.cpp's Q4_0 values (core/block_quant.h): 4-bit q, fp16 d per 32; (q - 8) * d
  Q4_1,  // llama.cpp's Q4_1 values: 4-bit q, fp16 d and m per 32; q * d + m
};

// A row of `cols` values is cut into blocks of block_values; each block stores its values in
// value_bits each, plus scale_bytes of scales. A short last block stores only the values it
// has, unless padded_blocks (block layouts that are always whole, like llama.cpp's).
struct WeightFormatInfo {
  WeightFormat format;
  const char* name;       // "f32", "bf16", "int8": an Engine's weight_dtype
  int64_t block_values;   // 1: no blocks
  int64_t value_bits;
  int64_t scale_bytes;    // per block
  bool padded_blocks;
  const char* gguf_type;  // llama.cpp's type of the same values ("F32", "BF16", "Q8_0")
  DType source;           // the stored dtype that packs into this format value for value
  const char* description;

  double bits_per_weight() const { return double(value_bits) + 8.0 * double(scale_bytes) / double(block_values); }
};

// Every format, f32 first.
const std::vector<WeightFormatInfo>& weight_format_table();
const WeightFormatInfo& weight_format_info(WeightFormat format);
std::string weight_format_name(WeightFormat format);
const std::vector<WeightFormat>& weight_formats();
WeightFormat parse_weight_format(const std::string& name);  // ValueError listing the names

// Values per block of the int8 format.
constexpr int64_t kInt8Block = 32;

// Bytes a (rows, cols) matrix takes in `format` (scales included): what one pass reads.
uint64_t weight_format_bytes(WeightFormat format, int64_t rows, int64_t cols);

// The format whose values a stored tensor of `dtype` has exactly (F32 -> f32, Q8_0 -> int8,
// Q4_0 -> q4_0, ...): what an engine computes with when asked for the model's stored formats.
// F32 for a dtype no format holds exactly (Q4_K, Q6_K: dequantized, exactly, to f32).
WeightFormat stored_weight_format(DType dtype);

}  // namespace celer
