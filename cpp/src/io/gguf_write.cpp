// Writing GGUF (save_gguf): metadata from the config plus the caller's keys, every tensor in
// the asked format, data aligned as llama.cpp reads it.
#include <algorithm>
#include <cstring>

#include "core/block_quant.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_types.h"
#include "io/io_util.h"

namespace celer {

namespace {

constexpr uint64_t kAlignment = 32;  // GGUF's default (general.alignment is not written)

// llama.cpp's general.file_type: the type "most" matrices have (LLAMA_FTYPE_MOSTLY_*).
uint32_t file_type(DType dtype) {
  switch (dtype) {
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q4_K: return 15;  // Q4_K_M
    case DType::Q6_K: return 18;
    case DType::BF16: return 32;
    default: return 0;  // all f32
  }
}

class Writer {
 public:
  explicit Writer(AtomicFileWriter& file) : file_(file) {}
  template <class T>
  void put(T v) {
    file_.write(&v, sizeof(T));
    written_ += sizeof(T);
  }
  void bytes(const void* p, size_t n) {
    file_.write(p, n);
    written_ += n;
  }
  void string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(uint64_t alignment) {
    static const char zeros[64] = {};
    while (written_ % alignment != 0) bytes(zeros, size_t(std::min<uint64_t>(64, alignment - written_ % alignment)));
  }
  void scalar(GgufType t, const GgufValue& v, size_t i = SIZE_MAX) {  // i: the array element, else the scalar
    const bool whole = i == SIZE_MAX;
    auto n = [&] { return whole ? v.integer : v.integers[i]; };
    auto x = [&] { return whole ? v.number : v.numbers[i]; };
    switch (t) {
      case GgufType::U8: case GgufType::Bool: put<uint8_t>(uint8_t(n())); break;
      case GgufType::I8: put<int8_t>(int8_t(n())); break;
      case GgufType::U16: put<uint16_t>(uint16_t(n())); break;
      case GgufType::I16: put<int16_t>(int16_t(n())); break;
      case GgufType::U32: put<uint32_t>(uint32_t(n())); break;
      case GgufType::I32: put<int32_t>(int32_t(n())); break;
      case GgufType::U64: put<uint64_t>(uint64_t(n())); break;
      case GgufType::I64: put<int64_t>(n()); break;
      case GgufType::F32: put<float>(float(x())); break;
      case GgufType::F64: put<double>(x()); break;
      case GgufType::String: string(whole ? v.text : v.texts[i]); break;
      case GgufType::Array: throw ValueError("GGUF: arrays of arrays are not written");
    }
  }
  void value(const GgufValue& v) {
    put<uint32_t>(uint32_t(v.type));
    if (v.type != GgufType::Array) return scalar(v.type, v);
    put<uint32_t>(uint32_t(v.element_type));
    put<uint64_t>(v.array_size());
    for (size_t i = 0; i < v.array_size(); ++i) scalar(v.element_type, v, i);
  }

 private:
  AtomicFileWriter& file_;
  uint64_t written_ = 0;
};

GgufValue u32(int64_t n) {
  GgufValue v;
  v.type = GgufType::U32;
  v.integer = n;
  return v;
}
GgufValue f32(double x) {
  GgufValue v;
  v.type = GgufType::F32;
  v.number = x;
  return v;
}
GgufValue text(const std::string& s) {
  GgufValue v;
  v.type = GgufType::String;
  v.text = s;
  return v;
}

// One tensor to write: where its values come from and how they are stored.
struct Planned {
  std::string name;
  const Tensor* source;
  DType dtype;
  bool interleave_rows;  // reorder q/k rows from rotate-half into GGML's RoPE order (heads of D)
  int64_t heads = 0;
  uint64_t offset = 0;
};

// Row r of the source (float32 or block type) as exact float32 values.
void source_row(const Tensor& t, int64_t r, float* out) {
  const int64_t cols = t.shape.back();
  if (t.dtype == DType::F32) return void(std::memcpy(out, t.f32() + r * cols, size_t(cols) * 4));
  dequantize_blocks(t.dtype, t.as<uint8_t>() + uint64_t(r) * tensor_bytes(t.dtype, {1, cols}), cols, out);
}

void write_tensor(Writer& w, const Planned& p) {
  const Tensor& t = *p.source;
  const int64_t cols = t.shape.back(), rows = t.numel() / cols;
  const uint64_t in_row = tensor_bytes(t.dtype, {1, cols}), out_row = tensor_bytes(p.dtype, {1, cols});
  const int64_t D = p.heads > 0 ? rows / p.heads : 0;
  std::vector<float> values(static_cast<size_t>(cols));
  std::vector<uint8_t> out(static_cast<size_t>(out_row));
  for (int64_t r = 0; r < rows; ++r) {
    int64_t src = r;  // GGML row 2i + j of a head is rotate-half row j * D/2 + i
    if (p.interleave_rows) src = (r / D) * D + (r % D % 2) * (D / 2) + (r % D) / 2;
    if (p.dtype == t.dtype) {
      w.bytes(t.as<uint8_t>() + uint64_t(src) * in_row, size_t(out_row));
      continue;
    }
    source_row(t, src, values.data());
    if (p.dtype == DType::F32) {
      w.bytes(values.data(), size_t(out_row));
    } else if (p.dtype == DType::F16) {
      auto* h = reinterpret_cast<uint16_t*>(out.data());
      for (int64_t i = 0; i < cols; ++i) h[i] = f32_to_f16(values[size_t(i)]);
      w.bytes(out.data(), out.size());
    } else {
      quantize_blocks(p.dtype, values.data(), cols, out.data());
      w.bytes(out.data(), out.size());
    }
  }
}

}  // namespace

const std::vector<std::string>& gguf_write_formats() {
  static const std::vector<std::string> formats = {"stored", "f32", "f16", "q8_0", "q4_0", "q4_1"};
  return formats;
}

void save_gguf(const Model& model_in, const std::string& path, const std::string& format,
               const GgufMetadata& extra) {
  const auto& formats = gguf_write_formats();
  require(std::find(formats.begin(), formats.end(), format) != formats.end(),
          "GGUF format '" + format + "' is not one of stored, f32, f16, q8_0, q4_0, q4_1");
  Model model = model_in;
  validate_model(model);
  const ModelConfig& c = model.config;
  require(c.architecture == "llama" || c.architecture == "qwen2",
          "GGUF export writes llama and qwen2 models, not " + c.architecture);
  require(!has_custom_rope(model), "this model carries RoPE tables that differ from the ones rope_theta gives; "
                                   "a GGUF file cannot hold them");
  const std::string& a = c.architecture;
  const bool llama_rows = a == "llama" && !model.rope_interleaved_rows;  // rotate-half rows to reorder
  std::vector<Planned> plan;
  std::vector<std::pair<DType, int>> matrix_types;
  for (const WeightSlot& slot : weight_slots(model)) {
    const Tensor& t = *slot.tensor;
    DType dtype = DType::F32;
    if (t.shape.size() == 2) {
      if (format == "stored") dtype = t.dtype;
      else if (format == "f16") dtype = DType::F16;
      else if (format != "f32") dtype = dtype_from_name(format);
      // A block type needs whole blocks per row: other rows are written as f16 (as llama.cpp's
      // converter does).
      if (is_block_type(dtype) && t.shape.back() % dtype_block_values(dtype) != 0) dtype = DType::F16;
      auto it = std::find_if(matrix_types.begin(), matrix_types.end(), [&](const auto& e) { return e.first == dtype; });
      if (it == matrix_types.end()) matrix_types.emplace_back(dtype, 1);
      else ++it->second;
    }
    const bool q = slot.name.find("self_attn.q_proj.weight") != std::string::npos;
    const bool k = slot.name.find("self_attn.k_proj.weight") != std::string::npos;
    plan.push_back({io::gguf_tensor_name(slot.name), &t, dtype, llama_rows && (q || k),
                    q ? c.num_attention_heads : k ? c.num_key_value_heads : 0});
  }
  const DType most = std::max_element(matrix_types.begin(), matrix_types.end(),
                                      [](const auto& x, const auto& y) { return x.second < y.second; })->first;
  GgufMetadata md = {{"general.architecture", text(a)},
                     {"general.name", text("celerinfer " + a)},
                     {"general.file_type", u32(file_type(most))}};
  for (const auto& [key, value] : extra) {  // the caller's keys, never the architecture's sizes
    if (key.compare(0, a.size() + 1, a + ".") == 0 || key == "general.architecture") continue;
    auto it = std::find_if(md.begin(), md.end(), [&](const auto& kv) { return kv.first == key; });
    if (it != md.end()) it->second = value;
    else md.emplace_back(key, value);
  }
  for (auto [key, value] : std::initializer_list<std::pair<const char*, GgufValue>>{
           {"block_count", u32(c.num_hidden_layers)}, {"context_length", u32(c.max_position_embeddings)},
           {"embedding_length", u32(c.hidden_size)}, {"feed_forward_length", u32(c.intermediate_size)},
           {"attention.head_count", u32(c.num_attention_heads)},
           {"attention.head_count_kv", u32(c.num_key_value_heads)}, {"rope.freq_base", f32(c.rope_theta)},
           {"attention.layer_norm_rms_epsilon", f32(c.rms_norm_eps)}, {"rope.dimension_count", u32(c.head_dim())},
           {"vocab_size", u32(c.vocab_size)}})
    md.emplace_back(a + "." + key, value);

  uint64_t offset = 0;
  for (Planned& p : plan) {
    p.offset = offset;
    offset = (offset + tensor_bytes(p.dtype, p.source->shape) + kAlignment - 1) / kAlignment * kAlignment;
  }
  AtomicFileWriter file(path);
  Writer w(file);
  w.bytes("GGUF", 4);
  w.put<uint32_t>(3);
  w.put<uint64_t>(plan.size());
  w.put<uint64_t>(md.size());
  for (const auto& [key, value] : md) {
    w.string(key);
    w.value(value);
  }
  for (const Planned& p : plan) {
    w.string(p.name);
    w.put<uint32_t>(uint32_t(p.source->shape.size()));
    for (size_t i = p.source->shape.size(); i-- > 0;) w.put<uint64_t>(uint64_t(p.source->shape[i]));  // innermost first
    w.put<uint32_t>(io::gguf_type_of(p.dtype));
    w.put<uint64_t>(p.offset);
  }
  w.pad_to(kAlignment);
  for (const Planned& p : plan) {
    write_tensor(w, p);
    w.pad_to(kAlignment);
  }
  file.commit();
}

}  // namespace celer
