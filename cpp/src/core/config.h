// Model configuration, named as Hugging Face names it (one vocabulary from C++ to Python).
#pragma once
#include <cstdint>
#include <string>

namespace celer {

// Architectures (`architecture`):
//   "llama"  MiniMind / Llama / Mistral: RMSNorm, RoPE, GQA, SwiGLU MLP, no biases.
//   "qwen2"  llama plus biases on the q, k and v projections.
//   "gpt2"   learned position embedding (no RoPE), LayerNorm with bias (layer_norm_epsilon),
//            biases on every projection, MLP down(act(up(x))) without gate, multi-head
//            attention (num_key_value_heads == num_attention_heads).
// The feature predicates below say what an architecture uses; engines should test those.
struct ModelConfig {
  std::string architecture = "llama";
  int64_t hidden_size = 64;
  int64_t num_hidden_layers = 2;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 8;  // = num_attention_heads: plain multi-head attention
  int64_t vocab_size = 128;
  int64_t max_position_embeddings = 128;
  int64_t intermediate_size = 0;  // 0: the seed rule, see resolve()
  double rms_norm_eps = 1e-5;
  double rope_theta = 1e6;
  bool tie_word_embeddings = false;
  std::string hidden_act;           // "": the architecture's default (silu; gpt2: gelu_new)
  double layer_norm_epsilon = 1e-5;  // gpt2's LayerNorm epsilon (llama/qwen2 use rms_norm_eps)

  bool qkv_bias() const { return architecture != "llama"; }    // q/k/v projections have biases
  bool gpt2_style() const { return architecture == "gpt2"; }   // LayerNorm+bias, o/MLP biases,
                                                               // learned positions, ungated MLP
  bool uses_rope() const { return !gpt2_style(); }
  bool gated_mlp() const { return !gpt2_style(); }             // down(silu(gate(x)) * up(x))
  // hidden_act after resolve(): "silu", "gelu_new" (tanh approximation) or "gelu" (exact erf).
  bool gelu_tanh() const { return hidden_act == "gelu_new"; }

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t q_dim() const { return num_attention_heads * head_dim(); }
  int64_t kv_dim() const { return num_key_value_heads * head_dim(); }

  // Fills defaults (intermediate_size by the seed rule: 4*hidden rounded up to 64; hidden_act)
  // and canonicalizes hidden_act (gelu_pytorch_tanh -> gelu_new), then checks
  // every field and their consistency; throws ValueError naming the field. Idempotent.
  void resolve();

  // Number of weight values (not bytes) the model holds.
  int64_t num_parameters() const;

  std::string to_string() const;
  bool operator==(const ModelConfig& o) const;
};

// The seed rule for an omitted intermediate_size.
int64_t default_intermediate_size(int64_t hidden_size);

// The architectures ModelConfig accepts, for messages: "llama, qwen2, gpt2".
const char* supported_architectures();

// The memory this process may use: physical memory, capped by a cgroup limit and RLIMIT_AS.
uint64_t usable_memory_bytes();

// Refuses (ValueError) to allocate `bytes` when it is larger than usable_memory_bytes();
// `what` names the allocation in the message.
void check_allocation(uint64_t bytes, const std::string& what);

}  // namespace celer
