// A model: its config and its weights (float32 for now), plus what a seed file may carry
// (example inputs and a RoPE cache). Tensor names follow Hugging Face.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "config.h"
#include "tensor.h"

namespace celer {

struct LayerWeights {
  Tensor input_layernorm;           // (hidden)
  Tensor q_proj, k_proj, v_proj;    // (q_dim|kv_dim, hidden)
  Tensor o_proj;                    // (hidden, q_dim)
  Tensor post_attention_layernorm;  // (hidden)
  Tensor gate_proj, up_proj;        // (inter, hidden)
  Tensor down_proj;                 // (hidden, inter)
};

struct Model {
  ModelConfig config;
  Tensor embed_tokens;  // (vocab, hidden)
  Tensor norm;          // (hidden)
  Tensor lm_head;       // (vocab, hidden); empty when tie_word_embeddings
  std::vector<LayerWeights> layers;

  // Optional contents of a seed file.
  Tensor input_ids;       // (B, S) int32/int64
  Tensor attention_mask;  // (B, S)
  Tensor rope_cos, rope_sin;  // (max_pos, head_dim) float32; empty: computed from rope_theta

  const Tensor& output_weight() const { return config.tie_word_embeddings ? embed_tokens : lm_head; }
};

// One weight slot: its Hugging Face name, expected shape and the tensor in the model.
struct WeightSlot {
  std::string name;
  Shape shape;
  Tensor* tensor;
};
// Every weight of the architecture in a fixed order (the single place names are defined).
std::vector<WeightSlot> weight_slots(Model& model);

// Checks every weight is present, float32, and of the shape the config implies; also the
// optional inputs and RoPE cache. Throws FormatError naming the tensor.
void validate_model(Model& model);

// Deterministic random model: same config and seed give the same bytes on every machine.
Model random_model(ModelConfig config, uint64_t seed);

// Deterministic random token ids in [0, vocab) as int32 (B, S).
Tensor random_tokens(int64_t batch, int64_t seq_len, int64_t vocab_size, uint64_t seed);

// RoPE tables (num_positions, head_dim), rotate-half layout: cos/sin of cat(freqs, freqs).
// num_positions < 0: max_position_embeddings.
void rope_tables(const ModelConfig& config, Tensor& cos, Tensor& sin, int64_t num_positions = -1);

}  // namespace celer
