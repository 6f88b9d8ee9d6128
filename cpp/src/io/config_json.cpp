#include "io/config_json.h"

#include "core/error.h"
#include "io/hf_config.h"
#include "io/io_util.h"

namespace celer {

namespace {
// Settings that change what the model computes and that we do not implement: refuse them
// rather than silently compute something else.
void reject_unsupported(const json::Value& object, const ModelConfig& config, const std::string& context) {
  int64_t head_dim = 0;
  if (io::read_int(object, "head_dim", context, 1, head_dim) && config.num_attention_heads > 0 &&
      head_dim != config.hidden_size / config.num_attention_heads)
    throw FormatError(context + ": head_dim " + std::to_string(head_dim) +
                      " differs from hidden_size / num_attention_heads; this is not supported");
  if (io::member(object, "rope_scaling")) throw FormatError(context + ": rope_scaling is not supported");
  bool bias = false;
  if (io::read_bool(object, "attention_bias", context, bias) && bias)
    throw FormatError(context + ": attention_bias = true is not supported");
}

int64_t required_int(const json::Value& object, const char* key, const std::string& context) {
  int64_t v = 0;
  if (!io::read_int(object, key, context, 1, v)) throw FormatError(context + ": missing key '" + key + "'");
  return v;
}
}  // namespace

void resolve_in_context(ModelConfig& config, const std::string& context) {
  try {
    config.resolve();
  } catch (const ValueError& e) {
    std::string message = e.what();
    if (message.rfind("config: ", 0) == 0) message.erase(0, 8);  // our context replaces it
    throw FormatError(context + ": " + message);
  }
}

ModelConfig config_from_json(const json::Value& object, const std::string& context, int64_t intermediate_hint) {
  if (!object.is_object()) throw FormatError(context + ": expected a JSON object");
  if (is_hf_config(object)) return config_from_hf(object, context, intermediate_hint);
  ModelConfig c;
  io::read_string(object, "architecture", context, c.architecture);
  c.hidden_size = required_int(object, "hidden_size", context);
  c.num_hidden_layers = required_int(object, "num_hidden_layers", context);
  c.num_attention_heads = required_int(object, "num_attention_heads", context);
  c.num_key_value_heads = c.num_attention_heads;  // HF's default: plain multi-head attention
  io::read_int(object, "num_key_value_heads", context, 1, c.num_key_value_heads);
  c.vocab_size = required_int(object, "vocab_size", context);
  c.max_position_embeddings = required_int(object, "max_position_embeddings", context);
  c.intermediate_size = 0;  // the seed rule unless given
  io::read_int(object, "intermediate_size", context, 0, c.intermediate_size);
  io::read_double(object, "rms_norm_eps", context, c.rms_norm_eps);
  io::read_double(object, "rope_theta", context, c.rope_theta);
  io::read_bool(object, "tie_word_embeddings", context, c.tie_word_embeddings);
  io::read_string(object, "hidden_act", context, c.hidden_act);
  io::read_double(object, "layer_norm_epsilon", context, c.layer_norm_epsilon);
  reject_unsupported(object, c, context);
  resolve_in_context(c, context);
  return c;
}

std::string config_to_json(const ModelConfig& c) {
  auto i = [](int64_t v) { return std::to_string(v); };
  return "{\"architecture\": " + json::quote(c.architecture) + ", \"hidden_size\": " + i(c.hidden_size) +
         ", \"num_hidden_layers\": " + i(c.num_hidden_layers) +
         ", \"num_attention_heads\": " + i(c.num_attention_heads) +
         ", \"num_key_value_heads\": " + i(c.num_key_value_heads) + ", \"vocab_size\": " + i(c.vocab_size) +
         ", \"max_position_embeddings\": " + i(c.max_position_embeddings) +
         ", \"intermediate_size\": " + i(c.intermediate_size) +
         ", \"rms_norm_eps\": " + io::format_double(c.rms_norm_eps) +
         ", \"rope_theta\": " + io::format_double(c.rope_theta) +
         ", \"tie_word_embeddings\": " + (c.tie_word_embeddings ? "true" : "false") +
         ", \"hidden_act\": " + json::quote(c.hidden_act) +
         ", \"layer_norm_epsilon\": " + io::format_double(c.layer_norm_epsilon) + "}";
}

}  // namespace celer
