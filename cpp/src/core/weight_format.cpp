#include "core/weight_format.h"

#include "core/error.h"

namespace celer {

const std::vector<WeightFormatInfo>& weight_format_table() {
  static const std::vector<WeightFormatInfo> table = {
      {WeightFormat::F32, "f32", 1, 32, 0, false, "F32", DType::F32, "float32: the model's own values"},
      {WeightFormat::BF16, "bf16", 1, 16, 0, false, "BF16", DType::BF16,
       "bfloat16 weights, rounded to nearest even; the layers' inputs are rounded to bf16 too"},
      {WeightFormat::Int8, "int8", kInt8Block, 8, 2, false, "Q8_0", DType::Q8_0,
       "weight-only int8, symmetric per block of 32 values with an fp16 scale (llama.cpp's Q8_0)"},
      {WeightFormat::Q4_0, "q4_0", 32, 4, 2, true, "Q4_0", DType::Q4_0,
       "llama.cpp's Q4_0: 4-bit values, one fp16 scale per block of 32; (q - 8) * d"},
      {WeightFormat::Q4_1, "q4_1", 32, 4, 4, true, "Q4_1", DType::Q4_1,
       "llama.cpp's Q4_1: 4-bit values, an fp16 scale and minimum per block of 32; q * d + m"},
  };
  return table;
}

const WeightFormatInfo& weight_format_info(WeightFormat format) {
  for (const WeightFormatInfo& info : weight_format_table())
    if (info.format == format) return info;
  throw ValueError("unknown weight format");
}

std::string weight_format_name(WeightFormat format) { return weight_format_info(format).name; }

const std::vector<WeightFormat>& weight_formats() {
  static const std::vector<WeightFormat> all = [] {
    std::vector<WeightFormat> out;
    for (const WeightFormatInfo& info : weight_format_table()) out.push_back(info.format);
    return out;
  }();
  return all;
}

WeightFormat parse_weight_format(const std::string& name) {
  std::string known;
  for (const WeightFormatInfo& info : weight_format_table()) {
    if (name == info.name) return info.format;
    known += (known.empty() ? "" : ", ") + std::string(info.name);
  }
  throw ValueError("unknown weight dtype '" + name + "' (expected one of " + known + ")");
}

uint64_t weight_format_bytes(WeightFormat format, int64_t rows, int64_t cols) {
  const WeightFormatInfo& f = weight_format_info(format);
  const uint64_t blocks = uint64_t((cols + f.block_values - 1) / f.block_values);
  const uint64_t values = f.padded_blocks ? blocks * uint64_t(f.block_values) : uint64_t(cols);
  return uint64_t(rows) * ((values * uint64_t(f.value_bits) + 7) / 8 + blocks * uint64_t(f.scale_bytes));
}

WeightFormat stored_weight_format(DType dtype) {
  for (const WeightFormatInfo& info : weight_format_table())
    if (info.source == dtype) return info.format;
  return WeightFormat::F32;
}

}  // namespace celer
