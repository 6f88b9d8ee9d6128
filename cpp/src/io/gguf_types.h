// GGML's tensor type numbers (ggml.h's enum ggml_type) as the GGUF reader and writer use them
// (internal to io/).
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace celer::io {

// The dtype of GGML type `type`; FormatError naming `what` and the type for one we do not read.
DType gguf_tensor_dtype(uint32_t type, const std::string& what);
// The GGML type number of a dtype we write (F32, F16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, BF16).
uint32_t gguf_type_of(DType dtype);

// A tensor's GGUF name (llama.cpp's: token_embd.weight, blk.3.attn_q.weight, ...) from its
// Hugging Face name (model.embed_tokens.weight, model.layers.3.self_attn.q_proj.weight, ...).
std::string gguf_tensor_name(const std::string& hf_name);

}  // namespace celer::io
