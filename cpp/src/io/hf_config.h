// Hugging Face config.json <-> ModelConfig.
//
// Read: model_type llama / mistral / minimind (-> "llama"), qwen2, gpt2 (its n_embd, n_layer,
// n_head, n_positions, n_inner, layer_norm_epsilon, activation_function keys), with each
// family's Hugging Face defaults. Settings that would change the function computed and that
// we do not implement are refused with a FormatError naming them (rope_scaling other than
// "default", attention/MLP biases on llama, mixture of experts, an activation other than the
// architecture's, head_dim != hidden_size / heads, GPT-2 attention scaling options). A
// sliding attention window W (Mistral, Qwen2 use_sliding_window) changes nothing for
// sequences of at most W tokens: max_position_embeddings is capped at W.
//
// Write: a config.json transformers loads (LlamaForCausalLM, Qwen2ForCausalLM or
// GPT2LMHeadModel), float32.
#pragma once
#include <string>

#include "core/config.h"
#include "io/json.h"

namespace celer {

// True for a Hugging Face config: "model_type" or "architectures" and no "architecture".
bool is_hf_config(const json::Value& object);

// intermediate_hint: used when the config leaves intermediate_size out or null (MiniMind
// computes it in code); 0: the seed rule. The result is resolved.
ModelConfig config_from_hf(const json::Value& object, const std::string& context, int64_t intermediate_hint = 0);

std::string hf_config_json(const ModelConfig& config);

}  // namespace celer
