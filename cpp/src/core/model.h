// A model: its config and its weights, plus what a seed file may carry (example inputs and a
// RoPE cache). Weights are float32, except that the linear weights and the token embedding may
// stay in a block-quantized dtype (core/block_quant.h) as a GGUF file stores them, memory-mapped. Tensor names follow Hugging Face's Llama / Qwen2 names
// for every architecture; a GPT-2 checkpoint's own names and layout (fused, transposed
// Conv1D weights) are translated at the file boundary (io/hf_gpt2.h).
//
// The layout is the same for every architecture: linear weights (out, in) like nn.Linear,
// separate q/k/v. Tensors an architecture does not use stay empty (see ModelConfig):
//   qkv_bias():   q_proj_bias, k_proj_bias, v_proj_bias                       (qwen2, gpt2)
//   gpt2_style(): embed_positions, norm_bias, *_layernorm_bias, o_proj_bias,
//                 up_proj_bias, down_proj_bias; no gate_proj                    (gpt2)
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/tensor.h"

namespace celer {

struct LayerWeights {
  Tensor input_layernorm;           // (hidden)
  Tensor q_proj, k_proj, v_proj;    // (q_dim|kv_dim, hidden)
  Tensor o_proj;                    // (hidden, q_dim)
  Tensor post_attention_layernorm;  // (hidden)
  Tensor gate_proj, up_proj;        // (inter, hidden); gate_proj empty for gpt2
  Tensor down_proj;                 // (hidden, inter)
  // Biases, empty when the architecture has none (see the top of this file).
  Tensor q_proj_bias, k_proj_bias, v_proj_bias;                 // (q_dim|kv_dim)
  Tensor o_proj_bias;                                           // (hidden)
  Tensor input_layernorm_bias, post_attention_layernorm_bias;  // (hidden)
  Tensor up_proj_bias;                                          // (inter)
  Tensor down_proj_bias;                                        // (hidden)
};

struct Model {
  ModelConfig config;
  Tensor embed_tokens;  // (vocab, hidden)
  Tensor norm;          // (hidden)
  Tensor lm_head;       // (vocab, hidden); empty when tie_word_embeddings
  Tensor embed_positions;  // (max_position_embeddings, hidden), gpt2: added to the token embedding
  Tensor norm_bias;        // (hidden), gpt2: the final LayerNorm's bias
  std::vector<LayerWeights> layers;

  // Optional contents of a seed file.
  Tensor input_ids;       // (B, S) int32/int64
  Tensor attention_mask;  // (B, S)
  Tensor rope_cos, rope_sin;  // (max_pos, head_dim) float32; empty: computed from rope_theta

  // The rows of each head of q_proj and k_proj are in GGML's RoPE order (llama GGUF files):
  // row 2i holds Hugging Face's row i and row 2i + 1 its row i + D/2, and RoPE rotates the
  // adjacent pairs. Attention is the same function (q and k are reordered alike); readers of
  // Hugging Face layouts get the rows back in their order from float32_model().
  bool rope_interleaved_rows = false;

  const Tensor& output_weight() const { return config.tie_word_embeddings ? embed_tokens : lm_head; }
};

// What a weight is (decides its random initialization).
enum class WeightKind { Embedding, Linear, Norm, Bias };

// One weight slot: its name, expected shape, kind and the tensor in the model.
struct WeightSlot {
  std::string name;
  Shape shape;
  Tensor* tensor;
  WeightKind kind;
};
// Every weight of the config's architecture in a fixed order (the single place names are
// defined); only the tensors the architecture uses.
std::vector<WeightSlot> weight_slots(Model& model);

// The RoPE tables a model carries differ from the ones rope_theta gives (by more than
// rounding): a file format that cannot store tables must refuse such a model.
bool has_custom_rope(const Model& model);

// Checks every weight is present, of the shape the config implies, float32 or (linear weights
// and the token embedding) block-quantized; also the optional inputs and RoPE cache. Throws
// FormatError naming the tensor.
void validate_model(Model& model);

// Whether a slot's tensor may be block-quantized (the matrices the engine packs and the table
// it embeds from).
bool may_be_quantized(const WeightSlot& slot);

// The model with every weight float32 in Hugging Face's layout: the same tensors where they
// already are (no copy), else exact dequantized copies with q/k rows in rotate-half order.
// What writers of float formats and the reference read.
Model float32_model(const Model& model);

// A (rows, cols) block-quantized tensor's exact float32 values (a new tensor).
Tensor dequantize(const Tensor& t);

// Deterministic random model: same config and seed give the same bytes on every machine.
Model random_model(ModelConfig config, uint64_t seed);

// Deterministic random token ids in [0, vocab) as int32 (B, S).
Tensor random_tokens(int64_t batch, int64_t seq_len, int64_t vocab_size, uint64_t seed);

// RoPE tables (num_positions, head_dim), rotate-half layout: cos/sin of cat(freqs, freqs).
// num_positions < 0: max_position_embeddings.
void rope_tables(const ModelConfig& config, Tensor& cos, Tensor& sin, int64_t num_positions = -1);

}  // namespace celer
