#include "io/seed_json.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <map>

#include "core/error.h"
#include "io/base64.h"
#include "io/config_json.h"
#include "io/io_util.h"
#include "io/json.h"
#include "io/mapped_file.h"

namespace celer {

namespace {
// The seed format's names for the weights (the HF names live in weight_slots).
const struct {
  const char* key;
  Tensor Model::*member;
} kModelKeys[] = {
    {"tok_embedding", &Model::embed_tokens},  // (vocab, hidden)
    {"final_rms", &Model::norm},              // (hidden)
    {"lm_head", &Model::lm_head},             // (vocab, hidden); absent when tied
};
const struct {
  const char* key;
  Tensor LayerWeights::*member;
} kLayerKeys[] = {
    {"rms_attn", &LayerWeights::input_layernorm},  {"rms_ffn", &LayerWeights::post_attention_layernorm},
    {"wq", &LayerWeights::q_proj},                 {"wk", &LayerWeights::k_proj},
    {"wv", &LayerWeights::v_proj},                 {"wo", &LayerWeights::o_proj},
    {"w_gate", &LayerWeights::gate_proj},          {"w_up", &LayerWeights::up_proj},
    {"w_down", &LayerWeights::down_proj},
};

bool is_lm_head(const char* key) { return std::strcmp(key, "lm_head") == 0; }

// A member that is present and not null.
const json::Value* present(const json::Value& object, const char* key) {
  const json::Value* v = object.find(key);
  return v && v->kind != json::Value::Kind::Null ? v : nullptr;
}

// ---- reading ----

// One tensor record {data, shape, dtype, preview} at key path `path`, in its stored dtype.
// Sizes are checked before anything is allocated; the preview is not needed.
Tensor read_record(const json::Value& rec, const std::string& path) {
  if (!rec.is_object()) throw FormatError(path + ": expected a tensor record {data, shape, dtype}");
  std::string dtype_text = rec.at("dtype", path).str(path + ".dtype");
  if (dtype_text.rfind("torch.", 0) == 0) dtype_text.erase(0, 6);  // str(torch.float32)
  const DType dtype = io::with_context(path + ".dtype", [&] { return dtype_from_name(dtype_text); });
  const Shape shape = io::read_shape(rec.at("shape", path), path + ".shape");
  const uint64_t nbytes = uint64_t(io::with_context(path + ".shape", [&] { return checked_numel(shape); })) *
                          dtype_size(dtype);

  const json::Value& data = rec.at("data", path);
  if (data.kind != json::Value::Kind::String) throw FormatError(path + ".data: expected a base64 string");
  // Base64 has no escapes, but some writers escape '/' as "\/": decode those first.
  std::string unescaped;
  std::string_view text = data.raw_string;
  if (text.find('\\') != std::string_view::npos) text = unescaped = data.str(path + ".data");
  const size_t decoded = io::with_context(path + ".data", [&] { return base64_decoded_size(text); });
  if (decoded != nbytes)
    throw FormatError(path + ": shape " + shape_str(shape) + " of " + dtype_name(dtype) + " needs " +
                      std::to_string(nbytes) + " bytes but data decodes to " + std::to_string(decoded));
  check_allocation(nbytes, path);
  Tensor t = Tensor::zeros(dtype, shape);
  io::with_context(path + ".data", [&] { base64_decode(text, t.data); });
  return t;
}

Tensor read_weight(const json::Value& parent, const char* key, const std::string& parent_path) {
  const std::string path = parent_path + "." + key;
  return io::weight_to_f32(read_record(parent.at(key, parent_path), path), path);
}

// Fills the weights; returns each weight's key path, so shape errors can use the seed names.
std::map<const Tensor*, std::string> read_weights(const json::Value& weights, Model& model) {
  std::map<const Tensor*, std::string> paths;
  for (auto& e : kModelKeys) {
    if (is_lm_head(e.key) && model.config.tie_word_embeddings) continue;  // tied: ignored if present
    model.*e.member = read_weight(weights, e.key, "weights");
    paths[&(model.*e.member)] = std::string("weights.") + e.key;
  }
  const json::Value& layers = weights.at("layers", "weights");
  if (layers.kind != json::Value::Kind::Array) throw FormatError("weights.layers: expected a list");
  if (int64_t(layers.array.size()) != model.config.num_hidden_layers)
    throw FormatError("weights.layers: " + std::to_string(layers.array.size()) +
                      " entries but config.num_hidden_layers is " + std::to_string(model.config.num_hidden_layers));
  model.layers.resize(layers.array.size());
  for (size_t i = 0; i < layers.array.size(); ++i) {
    const std::string lp = "weights.layers[" + std::to_string(i) + "]";
    for (auto& e : kLayerKeys) {
      model.layers[i].*e.member = read_weight(layers.array[i], e.key, lp);
      paths[&(model.layers[i].*e.member)] = lp + "." + e.key;
    }
  }
  return paths;
}

// Shapes against the config, reported with the seed's key paths (validate_model would use
// the HF names, which a seed file does not contain).
void check_weight_shapes(Model& model, const std::map<const Tensor*, std::string>& paths) {
  for (const WeightSlot& slot : weight_slots(model)) {
    auto it = paths.find(slot.tensor);
    if (it != paths.end() && slot.tensor->shape != slot.shape)
      throw FormatError(it->second + ": shape " + shape_str(slot.tensor->shape) + " but config implies " +
                        shape_str(slot.shape));
  }
}

void read_inputs(const json::Value& inputs, Model& model) {
  model.input_ids =
      io::input_ids_tensor(read_record(inputs.at("input_ids", "inputs"), "inputs.input_ids"), "inputs.input_ids");
  if (const json::Value* mask = present(inputs, "attention_mask"))
    model.attention_mask =
        io::attention_mask_tensor(read_record(*mask, "inputs.attention_mask"), "inputs.attention_mask");
}

void read_rope(const json::Value& rope, Model& model) {
  model.rope_cos = io::weight_to_f32(read_record(rope.at("cos", "rope"), "rope.cos"), "rope.cos");
  model.rope_sin = io::weight_to_f32(read_record(rope.at("sin", "rope"), "rope.sin"), "rope.sin");
}

// meta {B, S, head_dim} must agree with the inputs and the config.
void check_meta(const json::Value& meta, const Model& model) {
  const int64_t B = meta.at("B", "meta").integer("meta.B", 0);
  const int64_t S = meta.at("S", "meta").integer("meta.S", 0);
  const int64_t head_dim = meta.at("head_dim", "meta").integer("meta.head_dim");
  if (head_dim != model.config.head_dim())
    throw FormatError("meta.head_dim is " + std::to_string(head_dim) +
                      " but config implies hidden_size / num_attention_heads = " +
                      std::to_string(model.config.head_dim()));
  const Shape& ids = model.input_ids.shape;
  if (!model.input_ids.empty() && ids.size() == 2 && (ids[0] != B || ids[1] != S))
    throw FormatError("meta: B = " + std::to_string(B) + ", S = " + std::to_string(S) +
                      " but inputs.input_ids has shape " + shape_str(ids));
}

Model model_from_document(const json::Value& doc) {
  if (!doc.is_object()) throw FormatError("the document is not a JSON object");
  Model model;
  model.config = config_from_json(doc.at("config", ""), "config");
  if (model.config.architecture != "llama")
    throw FormatError("config: the seed JSON format holds llama models only, not " + model.config.architecture);
  if (const json::Value* inputs = present(doc, "inputs")) read_inputs(*inputs, model);
  if (const json::Value* rope = present(doc, "rope")) read_rope(*rope, model);
  const auto paths = read_weights(doc.at("weights", ""), model);
  if (const json::Value* meta = present(doc, "meta")) check_meta(*meta, model);
  check_weight_shapes(model, paths);
  validate_model(model);
  return model;
}

// ---- writing ----

// Buffers small pieces so the file sees few large writes.
class Out {
 public:
  explicit Out(AtomicFileWriter& file) : file_(file) {}
  Out& operator<<(std::string_view s) {
    buf_.append(s);
    if (buf_.size() >= (size_t(1) << 20)) flush();
    return *this;
  }
  void flush() {
    file_.write(buf_);
    buf_.clear();
  }

 private:
  AtomicFileWriter& file_;
  std::string buf_;
};

std::string preview_value(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::F32: {
      float v = t.as<float>()[i];
      return std::isfinite(v) ? io::format_float(v) : "null";  // strict JSON has no NaN
    }
    case DType::F64: {
      double v = t.as<double>()[i];
      return std::isfinite(v) ? io::format_double(v) : "null";
    }
    case DType::F16: return io::format_float(f16_to_f32(t.as<uint16_t>()[i]));
    case DType::BF16: return io::format_float(bf16_to_f32(t.as<uint16_t>()[i]));
    case DType::I32: return std::to_string(t.as<int32_t>()[i]);
    case DType::I64: return std::to_string(t.as<int64_t>()[i]);
    case DType::I8: return std::to_string(t.as<int8_t>()[i]);
    case DType::U8: return std::to_string(t.as<uint8_t>()[i]);
    case DType::BOOL: return t.as<uint8_t>()[i] ? "true" : "false";
    default: return "null";  // block types never reach a seed file (float32_model dequantizes them)
  }
}

// {"dtype": ..., "shape": [...], "preview": [first <= 8 values], "data": "<base64>"}; the data
// is encoded in chunks so no copy of a whole large tensor is made.
void write_record(Out& out, const Tensor& t) {
  out << "{\"dtype\": \"" << dtype_name(t.dtype) << "\", \"shape\": [";
  for (size_t i = 0; i < t.shape.size(); ++i) out << (i ? ", " : "") << std::to_string(t.shape[i]);
  out << "], \"preview\": [";
  const int64_t n = t.numel();
  for (int64_t i = 0; i < std::min<int64_t>(n, 8); ++i) out << (i ? ", " : "") << preview_value(t, i);
  out << "], \"data\": \"";
  constexpr size_t kChunk = 3 << 18;  // a multiple of 3: chunks encode without padding
  const uint8_t* p = static_cast<const uint8_t*>(t.data);
  for (size_t off = 0, total = t.nbytes(); off < total; off += kChunk)
    out << base64_encode(p + off, std::min(kChunk, total - off));
  out << "\"}";
}

Tensor ones_like_ids(const Tensor& ids) {
  Tensor mask = Tensor::zeros(DType::I32, ids.shape);
  for (int64_t i = 0, n = mask.numel(); i < n; ++i) mask.as<int32_t>()[i] = 1;
  return mask;
}

void write_document(Out& out, const Model& m) {
  const bool has_inputs = !m.input_ids.empty();
  const int64_t B = has_inputs ? m.input_ids.dim(0) : 0, S = has_inputs ? m.input_ids.dim(1) : 0;
  out << "{\n  \"meta\": {\"B\": " << std::to_string(B) << ", \"S\": " << std::to_string(S)
      << ", \"head_dim\": " << std::to_string(m.config.head_dim()) << "},\n";
  out << "  \"config\": " << config_to_json(m.config) << ",\n";
  if (has_inputs) {
    out << "  \"inputs\": {\n    \"input_ids\": ";
    write_record(out, m.input_ids);
    out << ",\n    \"attention_mask\": ";  // all ones when the model has none
    write_record(out, m.attention_mask.empty() ? ones_like_ids(m.input_ids) : m.attention_mask);
    out << "\n  },\n";
  }
  Tensor cos = m.rope_cos, sin = m.rope_sin;  // (max_pos, head_dim)
  if (cos.empty()) rope_tables(m.config, cos, sin);
  out << "  \"rope\": {\n    \"cos\": ";
  write_record(out, cos);
  out << ",\n    \"sin\": ";
  write_record(out, sin);
  out << "\n  },\n  \"weights\": {";
  for (auto& e : kModelKeys) {
    if (is_lm_head(e.key) && m.config.tie_word_embeddings) continue;
    out << "\n    \"" << e.key << "\": ";
    write_record(out, m.*e.member);
    out << ",";
  }
  out << "\n    \"layers\": [";
  for (size_t i = 0; i < m.layers.size(); ++i) {
    out << (i ? ",\n      {" : "\n      {");
    for (size_t k = 0; k < std::size(kLayerKeys); ++k) {
      out << (k ? ",\n       \"" : "\"") << kLayerKeys[k].key << "\": ";
      write_record(out, m.layers[i].*kLayerKeys[k].member);
    }
    out << "}";
  }
  out << "\n    ]\n  }\n}\n";
}
}  // namespace

Model load_seed_json(const std::string& path) {
  auto file = MappedFile::open(path);
  return io::with_context(path, [&] {
    json::Value doc = json::parse(io::file_text(*file));
    return model_from_document(doc);
  });
}

void save_seed_json(const Model& model, const std::string& path) {
  Model m = float32_model(model);  // shares the tensors that are float32 in HF layout already
  validate_model(m);
  require(m.config.architecture == "llama", "the seed JSON format holds llama models only: save a " +
                                                m.config.architecture + " model as .safetensors or a folder");
  AtomicFileWriter file(path);
  Out out(file);
  write_document(out, m);
  out.flush();
  file.commit();
}

}  // namespace celer
