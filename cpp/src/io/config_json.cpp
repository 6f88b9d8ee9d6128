#include "io/config_json.h"

#include <cmath>

#include "error.h"
#include "io/io_util.h"

namespace celer {

namespace {
constexpr int64_t kMaxSize = int64_t(1) << 40;  // resolve() applies the real limits

// Reads an optional member: absent and null both mean "keep the default".
const json::Value* optional(const json::Value& object, const char* key) {
  const json::Value* v = object.find(key);
  return v && v->kind != json::Value::Kind::Null ? v : nullptr;
}

int64_t required_int(const json::Value& object, const char* key, const std::string& context) {
  const json::Value* v = optional(object, key);
  if (!v) throw FormatError(context + ": missing key '" + key + "'");
  return v->integer(context + "." + key, 1, kMaxSize);
}

void read_int(const json::Value& object, const char* key, const std::string& context, int64_t lo, int64_t& out) {
  if (const json::Value* v = optional(object, key)) out = v->integer(context + "." + key, lo, kMaxSize);
}

void read_double(const json::Value& object, const char* key, const std::string& context, double& out) {
  if (const json::Value* v = optional(object, key)) out = v->num(context + "." + key);
}

// JSON true/false; 0 and 1 are accepted too (some writers use them for flags).
void read_bool(const json::Value& object, const char* key, const std::string& context, bool& out) {
  const json::Value* v = optional(object, key);
  if (!v) return;
  if (v->kind == json::Value::Kind::Bool)
    out = v->boolean;
  else
    out = v->integer(context + "." + key, 0, 1) == 1;
}

// Settings of Hugging Face configs that change what the model computes and that we do not
// implement: refuse them rather than silently compute something else.
void reject_unsupported(const json::Value& object, const ModelConfig& config, const std::string& context) {
  if (const json::Value* v = optional(object, "head_dim")) {
    int64_t head_dim = v->integer(context + ".head_dim", 1, kMaxSize);
    if (config.num_attention_heads > 0 && head_dim != config.hidden_size / config.num_attention_heads)
      throw FormatError(context + ": head_dim " + std::to_string(head_dim) +
                        " differs from hidden_size / num_attention_heads; this is not supported");
  }
  if (optional(object, "rope_scaling")) throw FormatError(context + ": rope_scaling is not supported");
  if (const json::Value* v = optional(object, "attention_bias"))
    if (v->kind == json::Value::Kind::Bool && v->boolean)
      throw FormatError(context + ": attention_bias = true is not supported");
  if (const json::Value* v = optional(object, "hidden_act")) {
    std::string act = v->str(context + ".hidden_act");
    if (act != "silu") throw FormatError(context + ": hidden_act '" + act + "' is not supported (llama uses silu)");
  }
}
}  // namespace

ModelConfig config_from_json(const json::Value& object, const std::string& context) {
  if (!object.is_object()) throw FormatError(context + ": expected a JSON object");
  ModelConfig c;
  if (const json::Value* v = optional(object, "architecture"))
    c.architecture = v->str(context + ".architecture");
  else if (const json::Value* mt = optional(object, "model_type"))
    c.architecture = mt->str(context + ".model_type");
  c.hidden_size = required_int(object, "hidden_size", context);
  c.num_hidden_layers = required_int(object, "num_hidden_layers", context);
  c.num_attention_heads = required_int(object, "num_attention_heads", context);
  c.num_key_value_heads = c.num_attention_heads;  // HF's default: plain multi-head attention
  read_int(object, "num_key_value_heads", context, 1, c.num_key_value_heads);
  c.vocab_size = required_int(object, "vocab_size", context);
  c.max_position_embeddings = required_int(object, "max_position_embeddings", context);
  c.intermediate_size = 0;  // the seed rule unless given
  read_int(object, "intermediate_size", context, 0, c.intermediate_size);
  read_double(object, "rms_norm_eps", context, c.rms_norm_eps);
  read_double(object, "rope_theta", context, c.rope_theta);
  read_bool(object, "tie_word_embeddings", context, c.tie_word_embeddings);
  reject_unsupported(object, c, context);
  try {
    c.resolve();
  } catch (const ValueError& e) {
    std::string message = e.what();
    if (message.rfind("config: ", 0) == 0) message.erase(0, 8);  // our context replaces it
    throw FormatError(context + ": " + message);
  }
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
         ", \"tie_word_embeddings\": " + (c.tie_word_embeddings ? "true" : "false") + "}";
}

}  // namespace celer
