// A GGUF file's metadata and tensors onto a Model (load_gguf).
#include <cmath>
#include <map>
#include <set>

#include "core/block_quant.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_types.h"
#include "io/io_util.h"

namespace celer {

namespace {

const char* const kArchitectures[] = {"llama", "qwen2"};

// Metadata lookups that name the key in every error.
struct Meta {
  const GgufMetadata& md;
  std::string arch;

  const GgufValue* get(const std::string& key) const { return find_key(md, key); }
  int64_t integer(const std::string& key, int64_t lo, int64_t hi, std::optional<int64_t> fallback = std::nullopt) const {
    const GgufValue* v = get(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      throw FormatError("metadata '" + key + "' is missing");
    }
    if (!v->is_integer() || v->type == GgufType::Bool)
      throw FormatError("metadata '" + key + "' must be an integer, got " + gguf_type_name(v->type));
    if (v->integer < lo || v->integer > hi)
      throw FormatError("metadata '" + key + "' is " + std::to_string(v->integer) + ", outside [" +
                        std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v->integer;
  }
  double number(const std::string& key, double fallback) const {
    const GgufValue* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is_number() && !(v->is_integer() && v->type != GgufType::Bool))
      throw FormatError("metadata '" + key + "' must be a number, got " + gguf_type_name(v->type));
    const double x = v->is_number() ? v->number : double(v->integer);
    if (!std::isfinite(x) || x <= 0) throw FormatError("metadata '" + key + "' must be a positive finite number");
    return x;
  }
  std::string text(const std::string& key) const {
    const GgufValue* v = get(key);
    if (v == nullptr) throw FormatError("metadata '" + key + "' is missing");
    if (v->type != GgufType::String) throw FormatError("metadata '" + key + "' must be a string, got " + gguf_type_name(v->type));
    return v->text;
  }
  std::string key(const std::string& name) const { return arch + "." + name; }
};

constexpr int64_t kMaxSize = int64_t(1) << 31;

ModelConfig config_from_metadata(const Meta& m, const std::map<std::string, const GgufTensor*>& tensors) {
  ModelConfig c;
  c.architecture = m.arch;
  c.num_hidden_layers = m.integer(m.key("block_count"), 1, 4096);
  c.hidden_size = m.integer(m.key("embedding_length"), 1, kMaxSize);
  c.intermediate_size = m.integer(m.key("feed_forward_length"), 1, kMaxSize);
  c.num_attention_heads = m.integer(m.key("attention.head_count"), 1, 65536);
  c.num_key_value_heads = m.integer(m.key("attention.head_count_kv"), 1, 65536, c.num_attention_heads);
  c.max_position_embeddings = m.integer(m.key("context_length"), 1, kMaxSize);
  c.rms_norm_eps = m.number(m.key("attention.layer_norm_rms_epsilon"), 1e-5);
  c.rope_theta = m.number(m.key("rope.freq_base"), 10000.0);
  c.tie_word_embeddings = tensors.count("output.weight") == 0;
  c.hidden_act = "silu";
  // The vocabulary: the key where a file has it, the embedding's rows, the tokenizer's tokens.
  auto embd = tensors.find("token_embd.weight");
  if (embd == tensors.end()) throw FormatError("tensor 'token_embd.weight' is missing");
  if (embd->second->shape.size() != 2)
    throw FormatError("tensor 'token_embd.weight' must be 2-D, got shape " + shape_str(embd->second->shape));
  c.vocab_size = m.integer(m.key("vocab_size"), 1, kMaxSize, embd->second->shape[0]);
  if (c.vocab_size != embd->second->shape[0])
    throw FormatError("metadata '" + m.key("vocab_size") + "' is " + std::to_string(c.vocab_size) +
                      " but tensor 'token_embd.weight' has " + std::to_string(embd->second->shape[0]) + " rows");
  if (const GgufValue* tokens = m.get("tokenizer.ggml.tokens"))
    if (int64_t(tokens->array_size()) != c.vocab_size)
      throw FormatError("metadata 'tokenizer.ggml.tokens' holds " + std::to_string(tokens->array_size()) +
                        " tokens but the model's vocabulary is " + std::to_string(c.vocab_size));
  try {
    c.resolve();
  } catch (const ValueError& e) {
    throw FormatError(std::string("the metadata describes an impossible model: ") + e.what());
  }
  const int64_t D = c.head_dim();
  for (const char* name : {"rope.dimension_count", "attention.key_length", "attention.value_length"})
    if (m.get(m.key(name)) && m.integer(m.key(name), 1, kMaxSize) != D)
      throw FormatError("metadata '" + m.key(name) + "' is " + std::to_string(m.integer(m.key(name), 1, kMaxSize)) +
                        " but the head size is " + std::to_string(D) + " (partial or uneven heads are not supported)");
  if (D % 2 != 0) throw FormatError("the head size " + std::to_string(D) + " is odd: RoPE needs pairs");
  // Features this engine does not run: refuse rather than compute another model.
  if (const GgufValue* s = m.get(m.key("rope.scaling.type")); s && !(s->type == GgufType::String && s->text == "none"))
    throw FormatError("metadata '" + m.key("rope.scaling.type") + "': RoPE scaling is not supported");
  if (m.integer(m.key("expert_count"), 0, kMaxSize, 0) > 0)
    throw FormatError("metadata '" + m.key("expert_count") + "': mixture-of-experts models are not supported");
  return c;
}

// The tensor's values as the model holds them: a view of the file (F32, block types), or
// float32 copies of F16 / BF16. Non-finite values and block scales are refused.
Tensor model_tensor(const GgufFile& g, const GgufTensor& t, bool quantized_ok) {
  const std::string what = "tensor '" + t.name + "'";
  auto* data = const_cast<uint8_t*>(g.file->data()) + g.data_offset + t.offset;  // views are read-only by use
  Tensor view = Tensor::view(t.dtype, t.shape, data, std::shared_ptr<void>(g.file));
  if (is_block_type(t.dtype)) {
    if (!quantized_ok)
      throw FormatError(what + " is " + dtype_name(t.dtype) + ": only matrices and the token embedding may be "
                        "quantized (norms and biases must be float)");
    const int64_t bad = first_nonfinite_block(t.dtype, data, int64_t(view.nbytes() / dtype_size(t.dtype)));
    if (bad >= 0) throw FormatError(what + ": block " + std::to_string(bad) + " has a NaN or Inf scale");
    return view;
  }
  Tensor f = io::weight_to_f32(view, what);
  const float* p = f.f32();
  for (int64_t i = 0, n = f.numel(); i < n; ++i)
    if (!std::isfinite(p[i]))
      throw FormatError(what + " holds " + (std::isnan(p[i]) ? "NaN" : "Inf") + " at flat index " + std::to_string(i));
  return f;
}

}  // namespace

Model load_gguf(const std::string& path, GgufMetadata* metadata_out) {
  GgufFile g = read_gguf(path);
  return io::with_context(path, [&] {
    std::map<std::string, const GgufTensor*> tensors;
    for (const GgufTensor& t : g.tensors) tensors[t.name] = &t;
    Meta meta{g.metadata, ""};
    meta.arch = meta.text("general.architecture");
    bool known = false;
    std::string names;
    for (const char* a : kArchitectures) {
      known = known || meta.arch == a;
      names += (names.empty() ? "" : ", ") + std::string(a);
    }
    if (!known) throw FormatError("architecture '" + meta.arch + "' is not supported (" + names + " are)");
    Model model;
    model.config = config_from_metadata(meta, tensors);
    std::set<std::string> used;
    for (const WeightSlot& slot : weight_slots(model)) {
      const std::string name = io::gguf_tensor_name(slot.name);
      auto it = tensors.find(name);
      if (it == tensors.end()) throw FormatError("tensor '" + name + "' is missing");
      const GgufTensor& t = *it->second;
      if (t.shape != slot.shape)
        throw FormatError("tensor '" + name + "' has shape " + shape_str(t.shape) + " (rows, columns) but the " +
                          "metadata implies " + shape_str(slot.shape));
      *slot.tensor = model_tensor(g, t, may_be_quantized(slot));
      used.insert(name);
    }
    for (const GgufTensor& t : g.tensors)
      if (!used.count(t.name))
        throw FormatError("unexpected tensor '" + t.name + "' (not a weight of " + model.config.to_string() + ")");
    model.rope_interleaved_rows = model.config.architecture == "llama";  // qwen2 files keep rotate-half
    validate_model(model);
    if (metadata_out != nullptr) *metadata_out = g.metadata;
    return model;
  });
}

}  // namespace celer
