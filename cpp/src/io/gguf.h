// GGUF, llama.cpp's model file: a header of typed metadata (architecture, sizes, tokenizer,
// chat template) and tensor descriptions, then aligned tensor data. Read memory-mapped: a
// model's tensors are views of the file, quantized blocks included (core/block_quant.h).
//
// GGUF parsers have a history of memory-safety bugs on hostile files, so the reader trusts
// nothing: every count, string and array length, dimension, type, offset and the alignment is
// checked against the file's size before it is used; duplicate keys or tensor names, tensors
// that overlap, metadata that contradicts the tensor shapes, unknown architectures and tensor
// types, and NaN or Inf in float tensors or block scales are refused with a FormatError naming
// the field.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/model.h"
#include "io/mapped_file.h"

namespace celer {

// GGUF's metadata value types (their numbers in the file).
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9, U64 = 10,
  I64 = 11, F64 = 12,
};
std::string gguf_type_name(GgufType type);

// One metadata value. Scalars in `integer` (every integer type and bool), `number` (F32, F64) or
// `text`; arrays (one level: GGUF allows nesting, no model file uses it) in the vector of their
// element kind.
struct GgufValue {
  GgufType type = GgufType::U32;
  GgufType element_type = GgufType::U32;  // arrays
  int64_t integer = 0;
  double number = 0;
  std::string text;
  std::vector<int64_t> integers;
  std::vector<double> numbers;
  std::vector<std::string> texts;

  bool is_integer() const;  // an integer scalar (bool included)
  bool is_number() const { return type == GgufType::F32 || type == GgufType::F64; }
  size_t array_size() const;
};

using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;  // in file order
const GgufValue* find_key(const GgufMetadata& metadata, const std::string& key);

struct GgufTensor {
  std::string name;
  DType dtype;
  Shape shape;      // outermost first (the file lists dimensions innermost first)
  uint64_t offset;  // from the start of the data section
};

struct GgufFile {
  uint32_t version = 0;
  uint64_t alignment = 32;
  GgufMetadata metadata;
  std::vector<GgufTensor> tensors;
  std::shared_ptr<MappedFile> file;
  uint64_t data_offset = 0;  // of the data section in the file
};

// The structure of a GGUF file (header, metadata, tensor table), validated; no tensor data read.
GgufFile read_gguf(const std::string& path);

// A model from a GGUF file of the llama family (architectures llama and qwen2): matrices stay
// views of the file in their stored type (F16 / BF16 and 1-D tensors become float32); llama
// files keep GGML's RoPE row order (Model::rope_interleaved_rows). `metadata_out`: the file's
// metadata (the tokenizer and chat template live there).
Model load_gguf(const std::string& path, GgufMetadata* metadata_out = nullptr);

// Writes `model` as a GGUF file llama.cpp loads: `format` for every matrix ("stored": each in
// its own dtype; "f32", "f16", "q8_0", "q4_0", "q4_1"), 1-D tensors float32, llama's q/k rows in
// GGML's RoPE order. `metadata` adds or replaces keys (a tokenizer, general.name, ...); the
// architecture's sizes are always written from the config. Atomic: a failure leaves no file.
void save_gguf(const Model& model, const std::string& path, const std::string& format,
               const GgufMetadata& metadata);

// The formats save_gguf writes matrices in.
const std::vector<std::string>& gguf_write_formats();

}  // namespace celer
