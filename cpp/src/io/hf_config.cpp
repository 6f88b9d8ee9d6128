#include "io/hf_config.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"
#include "io/config_json.h"
#include "io/io_util.h"

namespace celer {

namespace {
using json::Value;

// A model_type we read, the architecture it maps to, its HF class and defaults.
struct Family {
  const char* model_type;
  const char* architecture;
  const char* hf_class;
  double rms_norm_eps, rope_theta;
  bool tie_word_embeddings;
};
const Family kFamilies[] = {
    {"llama", "llama", "LlamaForCausalLM", 1e-6, 10000.0, false},
    {"mistral", "llama", "MistralForCausalLM", 1e-6, 10000.0, false},
    {"minimind", "llama", "MiniMindForCausalLM", 1e-5, 1e6, true},
    {"qwen2", "qwen2", "Qwen2ForCausalLM", 1e-6, 10000.0, false},
    {"gpt2", "gpt2", "GPT2LMHeadModel", 1e-5, 10000.0, true},
};

std::string family_list(bool classes) {
  std::string out;
  for (const Family& f : kFamilies) out += (out.empty() ? "" : ", ") + std::string(classes ? f.hf_class : f.model_type);
  return out;
}

const Family& family_of(const Value& object, const std::string& context) {
  std::string model_type;
  if (io::read_string(object, "model_type", context, model_type)) {
    for (const Family& f : kFamilies)
      if (model_type == f.model_type) return f;
    throw FormatError(context + ": model_type '" + model_type + "' is not supported (supported: " +
                      family_list(false) + ")");
  }
  const Value* archs = io::member(object, "architectures");
  if (archs && archs->kind == Value::Kind::Array && !archs->array.empty()) {
    const std::string name = archs->array[0].str(context + ".architectures");
    for (const Family& f : kFamilies)
      if (name == f.hf_class) return f;
  }
  throw FormatError(context + ": no supported model_type or architectures (supported: " + family_list(false) + ")");
}

// Every class named in "architectures" must be one we run (a classification head is not).
void check_architectures(const Value& object, const std::string& context) {
  const Value* archs = io::member(object, "architectures");
  if (!archs) return;
  if (archs->kind != Value::Kind::Array) throw FormatError(context + ".architectures: expected a list");
  for (const Value& a : archs->array) {
    const std::string name = a.str(context + ".architectures");
    bool known = std::any_of(std::begin(kFamilies), std::end(kFamilies), [&](const Family& f) { return name == f.hf_class; });
    if (!known)
      throw FormatError(context + ": architecture '" + name + "' is not supported (supported: " + family_list(true) + ")");
  }
}

int64_t required(const Value& object, const char* key, const char* alias, const std::string& context) {
  int64_t v = 0;
  if (io::read_int(object, key, context, 1, v) || (alias && io::read_int(object, alias, context, 1, v))) return v;
  throw FormatError(context + ": missing key '" + key + "'");
}

void refuse_true(const Value& object, const char* key, const std::string& context, const std::string& why) {
  bool flag = false;
  if (io::read_bool(object, key, context, flag) && flag) throw FormatError(context + ": " + key + " = true " + why);
}

// rope_theta from "rope_theta" or "rope_parameters" (transformers >= 5); any RoPE type but
// "default" (linear, dynamic, yarn, llama3, ...) is refused.
void read_rope(const Value& object, const std::string& context, double& theta) {
  io::read_double(object, "rope_theta", context, theta);
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    const Value* v = io::member(object, key);
    if (!v) continue;
    const std::string ctx = context + "." + key;
    if (!v->is_object()) throw FormatError(ctx + ": expected an object");
    std::string type = "default";
    if (!io::read_string(*v, "rope_type", ctx, type)) io::read_string(*v, "type", ctx, type);
    if (type != "default")
      throw FormatError(context + ": " + key + " of type '" + type + "' is not supported (only plain RoPE)");
    io::read_double(*v, "rope_theta", ctx, theta);
  }
}

// The attention window, when one applies; max_position_embeddings is capped at it.
void apply_sliding_window(const Value& object, const std::string& context, const Family& family, ModelConfig& c) {
  bool sliding = std::string(family.model_type) == "mistral";
  io::read_bool(object, "use_sliding_window", context, sliding);
  if (const Value* types = io::member(object, "layer_types")) {
    if (types->kind != Value::Kind::Array) throw FormatError(context + ".layer_types: expected a list");
    for (const Value& t : types->array) {
      const std::string type = t.str(context + ".layer_types");
      if (type == "sliding_attention")
        sliding = true;
      else if (type != "full_attention")
        throw FormatError(context + ": layer type '" + type + "' is not supported");
    }
  }
  int64_t window = 0;
  if (sliding && io::read_int(object, "sliding_window", context, 1, window))
    c.max_position_embeddings = std::min(c.max_position_embeddings, window);
}

ModelConfig llama_family(const Value& object, const std::string& context, const Family& family, int64_t hint) {
  ModelConfig c;
  c.architecture = family.architecture;
  c.rms_norm_eps = family.rms_norm_eps;
  c.rope_theta = family.rope_theta;
  c.tie_word_embeddings = family.tie_word_embeddings;
  c.hidden_size = required(object, "hidden_size", nullptr, context);
  c.num_hidden_layers = required(object, "num_hidden_layers", nullptr, context);
  c.num_attention_heads = required(object, "num_attention_heads", nullptr, context);
  c.num_key_value_heads = c.num_attention_heads;
  io::read_int(object, "num_key_value_heads", context, 1, c.num_key_value_heads);
  c.vocab_size = required(object, "vocab_size", nullptr, context);
  c.max_position_embeddings = required(object, "max_position_embeddings", nullptr, context);
  c.intermediate_size = hint;
  io::read_int(object, "intermediate_size", context, 0, c.intermediate_size);
  io::read_double(object, "rms_norm_eps", context, c.rms_norm_eps);
  read_rope(object, context, c.rope_theta);
  io::read_bool(object, "tie_word_embeddings", context, c.tie_word_embeddings);
  c.hidden_act = "silu";
  io::read_string(object, "hidden_act", context, c.hidden_act);

  int64_t head_dim = 0;
  if (io::read_int(object, "head_dim", context, 1, head_dim) && head_dim != c.hidden_size / c.num_attention_heads)
    throw FormatError(context + ": head_dim " + std::to_string(head_dim) +
                      " differs from hidden_size / num_attention_heads; this is not supported");
  if (c.architecture == "llama") refuse_true(object, "attention_bias", context, "is not supported for llama");
  refuse_true(object, "mlp_bias", context, "is not supported");
  refuse_true(object, "use_moe", context, "(mixture of experts) is not supported");
  apply_sliding_window(object, context, family, c);
  return c;
}

ModelConfig gpt2(const Value& object, const std::string& context, const Family& family) {
  ModelConfig c;
  c.architecture = family.architecture;
  c.tie_word_embeddings = family.tie_word_embeddings;
  c.hidden_size = required(object, "n_embd", "hidden_size", context);
  c.num_hidden_layers = required(object, "n_layer", "num_hidden_layers", context);
  c.num_attention_heads = c.num_key_value_heads = required(object, "n_head", "num_attention_heads", context);
  c.vocab_size = required(object, "vocab_size", nullptr, context);
  c.max_position_embeddings = required(object, "n_positions", "max_position_embeddings", context);
  c.intermediate_size = 4 * c.hidden_size;  // n_inner null: 4 * n_embd
  io::read_int(object, "n_inner", context, 1, c.intermediate_size);
  io::read_double(object, "layer_norm_epsilon", context, c.layer_norm_epsilon);
  io::read_bool(object, "tie_word_embeddings", context, c.tie_word_embeddings);
  c.hidden_act = "gelu_new";
  io::read_string(object, "activation_function", context, c.hidden_act);
  bool scale = true;
  if (io::read_bool(object, "scale_attn_weights", context, scale) && !scale)
    throw FormatError(context + ": scale_attn_weights = false is not supported");
  refuse_true(object, "scale_attn_by_inverse_layer_idx", context, "is not supported");
  refuse_true(object, "add_cross_attention", context, "is not supported");
  return c;
}

std::string number(double v) { return io::format_double(v); }
}  // namespace

bool is_hf_config(const Value& object) {
  return object.is_object() && !object.find("architecture") &&
         (object.find("model_type") || object.find("architectures"));
}

ModelConfig config_from_hf(const Value& object, const std::string& context, int64_t intermediate_hint) {
  if (!object.is_object()) throw FormatError(context + ": expected a JSON object");
  const Family& family = family_of(object, context);
  check_architectures(object, context);
  ModelConfig c = std::string(family.architecture) == "gpt2" ? gpt2(object, context, family)
                                                             : llama_family(object, context, family, intermediate_hint);
  resolve_in_context(c, context);
  return c;
}

std::string hf_config_json(const ModelConfig& c) {
  std::ostringstream s;
  auto key = [&](const char* k) -> std::ostringstream& { s << ",\n  \"" << k << "\": "; return s; };
  const char* cls = c.gpt2_style() ? "GPT2LMHeadModel" : c.architecture == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  s << "{\n  \"architectures\": [\"" << cls << "\"]";
  key("model_type") << json::quote(c.architecture);
  if (c.gpt2_style()) {
    key("n_embd") << c.hidden_size;
    key("n_layer") << c.num_hidden_layers;
    key("n_head") << c.num_attention_heads;
    key("n_positions") << c.max_position_embeddings;
    key("n_inner") << c.intermediate_size;
    key("layer_norm_epsilon") << number(c.layer_norm_epsilon);
    key("activation_function") << json::quote(c.hidden_act);
    key("scale_attn_weights") << "true";
  } else {
    key("hidden_size") << c.hidden_size;
    key("num_hidden_layers") << c.num_hidden_layers;
    key("num_attention_heads") << c.num_attention_heads;
    key("num_key_value_heads") << c.num_key_value_heads;
    key("head_dim") << c.head_dim();
    key("max_position_embeddings") << c.max_position_embeddings;
    key("intermediate_size") << c.intermediate_size;
    key("rms_norm_eps") << number(c.rms_norm_eps);
    key("rope_theta") << number(c.rope_theta);
    key("hidden_act") << json::quote(c.hidden_act);
    if (c.architecture == "llama") key("attention_bias") << "false";
    if (c.architecture == "qwen2") key("use_sliding_window") << "false";
    key("mlp_bias") << "false";
  }
  key("vocab_size") << c.vocab_size;
  key("tie_word_embeddings") << (c.tie_word_embeddings ? "true" : "false");
  key("bos_token_id") << "null";
  key("eos_token_id") << "null";
  key("torch_dtype") << "\"float32\"";
  s << "\n}\n";
  return s.str();
}

}  // namespace celer
