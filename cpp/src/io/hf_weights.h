// A model from tensors under Hugging Face names, and back: what every checkpoint reader
// (safetensors files and folders, PyTorch state dicts passed from Python) shares.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/model.h"

namespace celer {

using TensorMap = std::map<std::string, Tensor>;

// Builds and validates a model of `config`: llama / qwen2 names are weight_slots' names, gpt2
// ones are translated (io/hf_gpt2.h). float32 tensors are kept without a copy; float16 /
// bfloat16 / float64 are converted. A tensor that is no weight of the config (other than
// buffers checkpoints carry: rotary inv_freq, GPT-2's attention masks, a tied lm_head) is a
// FormatError, as is a missing or misshapen one; messages start with `context`.
Model model_from_hf_tensors(const ModelConfig& config, const TensorMap& tensors, const std::string& context);

// The model's weights under Hugging Face names, in writing order (gpt2: fused copies).
std::vector<std::pair<std::string, Tensor>> hf_tensors(const Model& model);

// The intermediate_size the tensors show (0 when they do not say): for configs that omit it.
int64_t intermediate_size_of(const TensorMap& tensors);

// Writes a Hugging Face folder: config.json (io/hf_config.h) and model.safetensors. A model
// carrying RoPE tables other than those rope_theta gives is refused (ValueError): the folder
// cannot hold them.
void save_hf_folder(const Model& model, const std::string& folder);

}  // namespace celer
