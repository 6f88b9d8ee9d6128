#include "core/model.h"

#include <cmath>
#include <cstring>

#include "core/block_quant.h"
#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"

namespace celer {

std::vector<WeightSlot> weight_slots(Model& model) {
  using K = WeightKind;
  const ModelConfig& c = model.config;
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;
  const bool gpt2 = c.gpt2_style();
  model.layers.resize(size_t(c.num_hidden_layers));
  std::vector<WeightSlot> slots = {{"model.embed_tokens.weight", {c.vocab_size, h}, &model.embed_tokens, K::Embedding}};
  if (gpt2)
    slots.push_back({"model.embed_positions.weight", {c.max_position_embeddings, h}, &model.embed_positions, K::Embedding});
  slots.push_back({"model.norm.weight", {h}, &model.norm, K::Norm});
  if (gpt2) slots.push_back({"model.norm.bias", {h}, &model.norm_bias, K::Bias});
  if (!c.tie_word_embeddings) slots.push_back({"lm_head.weight", {c.vocab_size, h}, &model.lm_head, K::Linear});
  for (size_t i = 0; i < model.layers.size(); ++i) {
    LayerWeights& L = model.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto add = [&](const std::string& name, Shape shape, Tensor* t, K kind) { slots.push_back({p + name, shape, t, kind}); };
    add("input_layernorm.weight", {h}, &L.input_layernorm, K::Norm);
    if (gpt2) add("input_layernorm.bias", {h}, &L.input_layernorm_bias, K::Bias);
    add("self_attn.q_proj.weight", {q, h}, &L.q_proj, K::Linear);
    if (c.qkv_bias()) add("self_attn.q_proj.bias", {q}, &L.q_proj_bias, K::Bias);
    add("self_attn.k_proj.weight", {kv, h}, &L.k_proj, K::Linear);
    if (c.qkv_bias()) add("self_attn.k_proj.bias", {kv}, &L.k_proj_bias, K::Bias);
    add("self_attn.v_proj.weight", {kv, h}, &L.v_proj, K::Linear);
    if (c.qkv_bias()) add("self_attn.v_proj.bias", {kv}, &L.v_proj_bias, K::Bias);
    add("self_attn.o_proj.weight", {h, q}, &L.o_proj, K::Linear);
    if (gpt2) add("self_attn.o_proj.bias", {h}, &L.o_proj_bias, K::Bias);
    add("post_attention_layernorm.weight", {h}, &L.post_attention_layernorm, K::Norm);
    if (gpt2) add("post_attention_layernorm.bias", {h}, &L.post_attention_layernorm_bias, K::Bias);
    if (c.gated_mlp()) add("mlp.gate_proj.weight", {inter, h}, &L.gate_proj, K::Linear);
    add("mlp.up_proj.weight", {inter, h}, &L.up_proj, K::Linear);
    if (gpt2) add("mlp.up_proj.bias", {inter}, &L.up_proj_bias, K::Bias);
    add("mlp.down_proj.weight", {h, inter}, &L.down_proj, K::Linear);
    if (gpt2) add("mlp.down_proj.bias", {h}, &L.down_proj_bias, K::Bias);
  }
  return slots;
}

namespace {
void require_shape(const Tensor& t, const Shape& expected, const std::string& name) {
  require<FormatError>(!t.empty(), "missing tensor '" + name + "'");
  require<FormatError>(t.shape == expected, "tensor '" + name + "' has shape " + shape_str(t.shape) +
                                                " but the config implies " + shape_str(expected));
}

bool is_integer(DType d) { return d == DType::I32 || d == DType::I64; }
}  // namespace

void validate_model(Model& model) {
  try {
    model.config.resolve();
  } catch (const ValueError& e) {
    throw FormatError(e.what());
  }
  for (const WeightSlot& slot : weight_slots(model)) {
    require_shape(*slot.tensor, slot.shape, slot.name);
    const DType d = slot.tensor->dtype;
    require<FormatError>(d == DType::F32 || (is_block_type(d) && may_be_quantized(slot)),
                         "tensor '" + slot.name + "' must be float32" +
                             (may_be_quantized(slot) ? " or block-quantized" : "") + ", got " + dtype_name(d));
  }
  require<FormatError>(!model.rope_interleaved_rows || model.config.uses_rope(),
                       "a " + model.config.architecture + " model has no RoPE to interleave");
  const ModelConfig& c = model.config;
  if (!model.rope_cos.empty() || !model.rope_sin.empty()) {
    require<FormatError>(c.uses_rope(), "a " + c.architecture + " model has no RoPE tables");
    for (auto [t, name] : {std::pair{&model.rope_cos, "rope.cos"}, std::pair{&model.rope_sin, "rope.sin"}}) {
      require_shape(*t, {c.max_position_embeddings, c.head_dim()}, name);
      require<FormatError>(t->dtype == DType::F32, std::string(name) + " must be float32");
      // a cosine or sine table holds values in [-1, 1]: NaN, Inf or anything larger is damage
      const float* v = t->f32();
      for (int64_t i = 0, n = t->numel(); i < n; ++i)
        if (!(std::fabs(v[i]) <= 1.0f + 1e-5f))
          throw FormatError(std::string(name) + " holds " + std::to_string(v[i]) + " at flat index " +
                            std::to_string(i) + " (a cosine or sine table's values lie in [-1, 1])");
    }
  }
  if (!model.input_ids.empty()) {
    const Tensor& ids = model.input_ids;
    require<FormatError>(ids.shape.size() == 2 && is_integer(ids.dtype),
                         "inputs.input_ids must be a 2-D int32/int64 tensor, got " + dtype_name(ids.dtype) +
                             " " + shape_str(ids.shape));
    if (!model.attention_mask.empty())
      require<FormatError>(model.attention_mask.shape == ids.shape,
                           "inputs.attention_mask has shape " + shape_str(model.attention_mask.shape) +
                               " but input_ids has " + shape_str(ids.shape));
  }
}

bool may_be_quantized(const WeightSlot& slot) {
  return slot.kind == WeightKind::Linear || slot.name == "model.embed_tokens.weight";
}

Tensor dequantize(const Tensor& t) {
  require(is_block_type(t.dtype) && t.shape.size() == 2, "dequantize: expected a block-quantized matrix, got " +
                                                              dtype_name(t.dtype) + " " + shape_str(t.shape));
  const int64_t rows = t.dim(0), cols = t.dim(1);
  check_allocation(uint64_t(rows) * uint64_t(cols) * 4, "a float32 copy of a " + dtype_name(t.dtype) + " tensor");
  Tensor out = Tensor::zeros(DType::F32, t.shape);
  const uint64_t row_bytes = tensor_bytes(t.dtype, {1, cols});
  for (int64_t r = 0; r < rows; ++r)
    dequantize_blocks(t.dtype, t.as<uint8_t>() + uint64_t(r) * row_bytes, cols, out.f32() + r * cols);
  return out;
}

namespace {
// GGML's RoPE row order back to rotate-half: HF row i of a head is row 2i, row i + D/2 is 2i + 1.
Tensor deinterleave_rope_rows(const Tensor& w, int64_t heads) {
  const int64_t rows = w.dim(0), cols = w.dim(1), D = rows / heads, half = D / 2;
  Tensor out = Tensor::zeros(DType::F32, w.shape);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(out.f32() + (h * D + j * half + i) * cols, w.f32() + (h * D + 2 * i + j) * cols, size_t(cols) * 4);
  return out;
}
}  // namespace

Model float32_model(const Model& model) {
  Model out = model;
  const ModelConfig& c = out.config;
  for (const WeightSlot& slot : weight_slots(out))
    if (is_block_type(slot.tensor->dtype)) *slot.tensor = dequantize(*slot.tensor);
  if (out.rope_interleaved_rows)
    for (LayerWeights& L : out.layers) {
      L.q_proj = deinterleave_rope_rows(L.q_proj, c.num_attention_heads);
      L.k_proj = deinterleave_rope_rows(L.k_proj, c.num_key_value_heads);
    }
  out.rope_interleaved_rows = false;
  return out;
}

namespace {
// Fills `t` with uniform values on [-bound, bound): float(k) * (bound / 2^23), one rounding,
// so the bytes are the same on every machine (no FMA contraction can apply).
void fill_uniform(Tensor& t, float bound, uint64_t seed, const std::string& name) {
  SplitMix64 rng(stream_seed(seed, name.c_str()));
  const float step = bound / float(1 << 23);
  float* p = t.f32();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = float(int32_t(rng.next() >> 40) - (1 << 23)) * step;
}
// Norm weights near 1: 1 + k * 2^-26 (k*2^-26 is exact; |noise| < 0.125).
void fill_norm(Tensor& t, uint64_t seed, const std::string& name) {
  SplitMix64 rng(stream_seed(seed, name.c_str()));
  float* p = t.f32();
  for (int64_t i = 0, n = t.numel(); i < n; ++i)
    p[i] = 1.0f + float(int32_t(rng.next() >> 40) - (1 << 23)) * (1.0f / float(1 << 26));
}
}  // namespace

Model random_model(ModelConfig config, uint64_t seed) {
  config.resolve();
  check_allocation(uint64_t(config.num_parameters()) * 4, "a random model with " + config.to_string());
  Model model;
  model.config = config;
  for (const WeightSlot& slot : weight_slots(model)) {
    *slot.tensor = Tensor::zeros(DType::F32, slot.shape);
    switch (slot.kind) {
      case WeightKind::Norm:
        fill_norm(*slot.tensor, seed, slot.name);
        break;
      case WeightKind::Embedding:  // std 1, like nn.Embedding
        fill_uniform(*slot.tensor, std::sqrt(3.0f), seed, slot.name);
        break;
      case WeightKind::Bias:  // small, so that each bias visibly matters
        fill_uniform(*slot.tensor, 0.125f, seed, slot.name);
        break;
      case WeightKind::Linear:  // like nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in))
        fill_uniform(*slot.tensor, 1.0f / std::sqrt(float(slot.shape[1])), seed, slot.name);
        break;
    }
  }
  return model;
}

Tensor random_tokens(int64_t batch, int64_t seq_len, int64_t vocab_size, uint64_t seed) {
  require(batch >= 1 && seq_len >= 1, "random_tokens: batch and seq_len must be >= 1");
  require(vocab_size >= 1, "random_tokens: vocab_size must be >= 1");
  check_allocation(uint64_t(checked_numel({batch, seq_len})) * 4, "random token ids");
  Tensor t = Tensor::zeros(DType::I32, {batch, seq_len});
  SplitMix64 rng(stream_seed(seed, "input_ids"));
  int32_t* p = t.as<int32_t>();
  for (int64_t i = 0; i < batch * seq_len; ++i) p[i] = int32_t(rng.below(uint64_t(vocab_size)));
  return t;
}

bool has_custom_rope(const Model& model) {
  if (model.rope_cos.empty()) return false;
  Tensor cos, sin;
  rope_tables(model.config, cos, sin, model.rope_cos.shape[0]);
  for (auto [given, computed] : {std::pair{&model.rope_cos, &cos}, std::pair{&model.rope_sin, &sin}}) {
    if (given->shape != computed->shape || given->dtype != DType::F32) return true;
    const float *a = given->f32(), *b = computed->f32();
    for (int64_t i = 0, n = given->numel(); i < n; ++i)
      if (!(std::fabs(a[i] - b[i]) <= 1e-5f)) return true;
  }
  return false;
}

void rope_tables(const ModelConfig& c, Tensor& cos, Tensor& sin, int64_t num_positions) {
  const int64_t D = c.head_dim(), half = D / 2, P = num_positions < 0 ? c.max_position_embeddings : num_positions;
  cos = Tensor::zeros(DType::F32, {P, D});
  sin = Tensor::zeros(DType::F32, {P, D});
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = float(1.0 / std::pow(c.rope_theta, double(2 * i) / double(D)));
  // The angle is rounded to float as torch/HF compute it (float32 outer product), then cos/sin
  // are taken in double: this matches their float32 tables to an ulp even at long positions.
  for (int64_t p = 0; p < P; ++p) {
    float* cr = cos.f32() + p * D;
    float* sr = sin.f32() + p * D;
    for (int64_t i = 0; i < half; ++i) {
      float angle = float(p) * inv_freq[i];
      cr[i] = cr[i + half] = float(std::cos(double(angle)));
      sr[i] = sr[i + half] = float(std::sin(double(angle)));
    }
  }
}

}  // namespace celer
