// safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets}, "__metadata__": {str: str}}, then the raw bytes. Read by memory map.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/model.h"

namespace celer {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;  // views into the mapped file (no copy)
  std::map<std::string, std::string> metadata;
};

// Reads and validates every header entry (dtype, shape, offsets within the data, no overlap,
// no overflow). Throws IOError / FormatError naming the tensor.
SafetensorsFile read_safetensors(const std::string& path);

// Writes tensors in the given order, 8-byte aligned header, atomic.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata);

// A model from `path`: a .safetensors file, a sharded checkpoint's *.index.json, or a folder
// holding model.safetensors or model.safetensors.index.json. The config comes from the
// file's metadata ("celerinfer.config": our config as JSON) or, failing that, from
// config.json beside it (ours or Hugging Face's, io/hf_config.h). Tensors have Hugging Face
// names (io/hf_weights.h); float32 weights stay memory-mapped; F16/BF16 are converted.
// Input ids / rope are loaded when present ("celerinfer.input_ids", ...). Validated.
Model load_safetensors_model(const std::string& path);
void save_safetensors_model(const Model& model, const std::string& path);

}  // namespace celer
