#include "io/hf_gpt2.h"

#include <cstring>

#include "core/error.h"
#include "io/io_util.h"

namespace celer {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Columns [col0, col0 + cols) of a float32 (rows, n) matrix, transposed: (cols, rows).
Tensor columns_transposed(const Tensor& m, int64_t col0, int64_t cols) {
  const int64_t rows = m.shape[0], n = m.shape[1];
  Tensor out = Tensor::zeros(DType::F32, {cols, rows});
  const float* src = m.f32();
  float* dst = out.f32();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * n + col0 + c];
  return out;
}

// Elements [begin, begin + n) of a float32 vector.
Tensor slice(const Tensor& v, int64_t begin, int64_t n) {
  Tensor out = Tensor::zeros(DType::F32, {n});
  std::memcpy(out.f32(), v.f32() + begin, size_t(n) * sizeof(float));
  return out;
}

// (out_k, in) matrices side by side, transposed: (in, sum of out_k). Vectors: concatenated.
Tensor fuse_transposed(const std::vector<const Tensor*>& parts) {
  const bool matrix = parts[0]->shape.size() == 2;
  const int64_t in = matrix ? parts[0]->shape[1] : 1;
  int64_t total = 0;
  for (const Tensor* p : parts) total += p->shape[0];
  Tensor out = Tensor::zeros(DType::F32, matrix ? Shape{in, total} : Shape{total});
  float* dst = out.f32();
  int64_t col0 = 0;
  for (const Tensor* p : parts) {
    const int64_t cols = p->shape[0];
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t r = 0; r < in; ++r) dst[r * total + col0 + c] = p->f32()[c * in + r];
    col0 += cols;
  }
  return out;
}

// Reads GPT-2 tensors by their short name (without "transformer."), checking the shape.
struct Reader {
  const TensorLookup& take;
  const std::string& context;

  Tensor operator()(const std::string& name, const Shape& shape) const {
    const std::string full = "transformer." + name;
    const Tensor* t = take(full);
    if (!t) t = take(name);
    if (!t) throw FormatError(context + ": missing tensor '" + full + "'");
    if (t->shape != shape)
      throw FormatError(context + ": tensor '" + full + "' has shape " + shape_str(t->shape) + " but the config implies " +
                        shape_str(shape));
    return io::weight_to_f32(*t, context + ": tensor '" + full + "'");
  }
};
}  // namespace

void gpt2_from_hf(Model& model, const TensorLookup& take, const std::string& context) {
  const ModelConfig& c = model.config;
  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  const Reader read{take, context};
  model.embed_tokens = read("wte.weight", {c.vocab_size, h});
  model.embed_positions = read("wpe.weight", {c.max_position_embeddings, h});
  model.norm = read("ln_f.weight", {h});
  model.norm_bias = read("ln_f.bias", {h});
  model.layers.resize(size_t(c.num_hidden_layers));
  for (size_t i = 0; i < model.layers.size(); ++i) {
    LayerWeights& L = model.layers[i];
    const std::string p = "h." + std::to_string(i) + ".";
    L.input_layernorm = read(p + "ln_1.weight", {h});
    L.input_layernorm_bias = read(p + "ln_1.bias", {h});
    const Tensor qkv = read(p + "attn.c_attn.weight", {h, 3 * h}), qkv_bias = read(p + "attn.c_attn.bias", {3 * h});
    L.q_proj = columns_transposed(qkv, 0, h);
    L.k_proj = columns_transposed(qkv, h, h);
    L.v_proj = columns_transposed(qkv, 2 * h, h);
    L.q_proj_bias = slice(qkv_bias, 0, h);
    L.k_proj_bias = slice(qkv_bias, h, h);
    L.v_proj_bias = slice(qkv_bias, 2 * h, h);
    L.o_proj = columns_transposed(read(p + "attn.c_proj.weight", {h, h}), 0, h);
    L.o_proj_bias = read(p + "attn.c_proj.bias", {h});
    L.post_attention_layernorm = read(p + "ln_2.weight", {h});
    L.post_attention_layernorm_bias = read(p + "ln_2.bias", {h});
    L.up_proj = columns_transposed(read(p + "mlp.c_fc.weight", {h, inter}), 0, inter);
    L.up_proj_bias = read(p + "mlp.c_fc.bias", {inter});
    L.down_proj = columns_transposed(read(p + "mlp.c_proj.weight", {inter, h}), 0, h);
    L.down_proj_bias = read(p + "mlp.c_proj.bias", {h});
  }
  if (!c.tie_word_embeddings) {
    const Tensor* t = take("lm_head.weight");
    if (!t) throw FormatError(context + ": missing tensor 'lm_head.weight' (tie_word_embeddings is false)");
    model.lm_head = io::weight_to_f32(*t, context + ": tensor 'lm_head.weight'");
  }
}

std::vector<std::pair<std::string, Tensor>> gpt2_to_hf(const Model& model) {
  std::vector<std::pair<std::string, Tensor>> out = {
      {"transformer.wte.weight", model.embed_tokens},
      {"transformer.wpe.weight", model.embed_positions},
  };
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const LayerWeights& L = model.layers[i];
    const std::string p = "transformer.h." + std::to_string(i) + ".";
    out.insert(out.end(), {
        {p + "ln_1.weight", L.input_layernorm},
        {p + "ln_1.bias", L.input_layernorm_bias},
        {p + "attn.c_attn.weight", fuse_transposed({&L.q_proj, &L.k_proj, &L.v_proj})},
        {p + "attn.c_attn.bias", fuse_transposed({&L.q_proj_bias, &L.k_proj_bias, &L.v_proj_bias})},
        {p + "attn.c_proj.weight", fuse_transposed({&L.o_proj})},
        {p + "attn.c_proj.bias", L.o_proj_bias},
        {p + "ln_2.weight", L.post_attention_layernorm},
        {p + "ln_2.bias", L.post_attention_layernorm_bias},
        {p + "mlp.c_fc.weight", fuse_transposed({&L.up_proj})},
        {p + "mlp.c_fc.bias", L.up_proj_bias},
        {p + "mlp.c_proj.weight", fuse_transposed({&L.down_proj})},
        {p + "mlp.c_proj.bias", L.down_proj_bias},
    });
  }
  out.push_back({"transformer.ln_f.weight", model.norm});
  out.push_back({"transformer.ln_f.bias", model.norm_bias});
  if (!model.config.tie_word_embeddings) out.push_back({"lm_head.weight", model.lm_head});
  return out;
}

bool gpt2_ignorable(const std::string& name) {
  return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias");
}

}  // namespace celer
