// Model configs (io/config_json.cpp, io/hf_config.cpp): our config JSON and Hugging Face's
// config.json (llama, mistral, minimind, qwen2, gpt2 families). An accepted config must
// survive a round trip through both writers.
#include <string_view>

#include "fuzz_util.h"
#include "io/config_json.h"
#include "io/hf_config.h"
#include "io/json.h"

namespace {
bool same(const celer::ModelConfig& a, const celer::ModelConfig& b) {
  return a.architecture == b.architecture && a.hidden_size == b.hidden_size &&
         a.num_hidden_layers == b.num_hidden_layers && a.num_attention_heads == b.num_attention_heads &&
         a.num_key_value_heads == b.num_key_value_heads && a.vocab_size == b.vocab_size &&
         a.max_position_embeddings == b.max_position_embeddings && a.intermediate_size == b.intermediate_size &&
         a.tie_word_embeddings == b.tie_word_embeddings && a.hidden_act == b.hidden_act;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  celer::ModelConfig config;
  try {
    config = celer::config_from_json(celer::json::parse(text), "config");
  } catch (const celer::FormatError&) {
    return 0;
  } catch (const celer::ValueError&) {
    return 0;
  }
  // What we accepted, we can write and read back.
  const celer::ModelConfig ours = celer::config_from_json(celer::json::parse(celer::config_to_json(config)), "ours");
  if (!same(ours, config)) celer_fuzz::violated("config_to_json -> config_from_json changed the config");
  const celer::ModelConfig hf = celer::config_from_json(celer::json::parse(celer::hf_config_json(config)), "hf");
  if (!same(hf, config)) celer_fuzz::violated("hf_config_json -> config_from_json changed the config");
  return 0;
}
