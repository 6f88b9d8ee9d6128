// Model configuration, named as Hugging Face names it (one vocabulary from C++ to Python).
#pragma once
#include <cstdint>
#include <string>

namespace celer {

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

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t q_dim() const { return num_attention_heads * head_dim(); }
  int64_t kv_dim() const { return num_key_value_heads * head_dim(); }

  // Fills defaults (intermediate_size by the seed rule: 4*hidden rounded up to 64) and checks
  // every field and their consistency; throws ValueError naming the field. Idempotent.
  void resolve();

  // Number of weight values (not bytes) the model holds.
  int64_t num_parameters() const;

  std::string to_string() const;
  bool operator==(const ModelConfig& o) const;
};

// The seed rule for an omitted intermediate_size.
int64_t default_intermediate_size(int64_t hidden_size);

// Refuses (ValueError) to allocate `bytes` when it is absurd or larger than this machine's
// physical memory; `what` names the allocation in the message.
void check_allocation(uint64_t bytes, const std::string& what);

}  // namespace celer
