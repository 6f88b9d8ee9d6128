#include "forward.h"

#include <cmath>
#include <vector>

#include "backend/cpu/ops.h"
#include "error.h"
#include "threadpool.h"

namespace celer {

namespace {
// A float32 scratch buffer with the aligned storage of a Tensor.
struct Activation {
  Tensor t;
  explicit Activation(int64_t n) : t(Tensor::zeros(DType::F32, {n})) {}
  float* data() { return t.f32(); }
};

int64_t read_int(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::I32: return t.as<int32_t>()[i];
    case DType::I64: return t.as<int64_t>()[i];
    case DType::I8: return t.as<int8_t>()[i];
    case DType::U8: case DType::BOOL: return t.as<uint8_t>()[i];
    default: throw ValueError("expected an integer tensor, got " + dtype_name(t.dtype));
  }
}
}  // namespace

TokenBatch check_tokens(const ModelConfig& c, const Tensor& input_ids, const Tensor* attention_mask) {
  require(input_ids.shape.size() == 2, "input_ids must be 2-D (batch, seq_len), got shape " + shape_str(input_ids.shape));
  require(input_ids.dtype == DType::I32 || input_ids.dtype == DType::I64,
          "input_ids must be int32 or int64, got " + dtype_name(input_ids.dtype));
  TokenBatch t;
  t.batch = input_ids.shape[0];
  t.seq_len = input_ids.shape[1];
  require(t.batch >= 1 && t.seq_len >= 1, "input_ids is empty: shape " + shape_str(input_ids.shape));
  require(t.seq_len <= c.max_position_embeddings,
          "sequence length " + std::to_string(t.seq_len) + " exceeds max_position_embeddings (" +
              std::to_string(c.max_position_embeddings) + ")");
  const int64_t n = t.batch * t.seq_len;
  t.ids.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = read_int(input_ids, i);
    require(id >= 0 && id < c.vocab_size, "token id " + std::to_string(id) + " at input_ids[" +
                                              std::to_string(i / t.seq_len) + ", " + std::to_string(i % t.seq_len) +
                                              "] is out of range [0, " + std::to_string(c.vocab_size) + ")");
    t.ids[size_t(i)] = id;
  }
  t.valid.assign(size_t(n), 1);
  if (attention_mask && !attention_mask->empty()) {
    require(attention_mask->shape == input_ids.shape, "attention_mask has shape " + shape_str(attention_mask->shape) +
                                                          " but input_ids has " + shape_str(input_ids.shape));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t m = read_int(*attention_mask, i);
      require(m == 0 || m == 1, "attention_mask must hold only 0 and 1, found " + std::to_string(m));
      t.valid[size_t(i)] = uint8_t(m);
    }
  }
  return t;
}

Tensor forward(const Model& model, const Tensor& input_ids, const Tensor* attention_mask) {
  const ModelConfig& c = model.config;
  TokenBatch tok = check_tokens(c, input_ids, attention_mask);
  const int64_t B = tok.batch, S = tok.seq_len, M = B * S;
  const int64_t H = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size, D = c.head_dim();
  const int64_t V = c.vocab_size, nH = c.num_attention_heads, group = nH / c.num_key_value_heads;
  check_allocation(uint64_t(M) * uint64_t(V + 3 * H + 2 * Q + 2 * KV + 2 * I) * 4, "the forward pass of a " +
                                                                                    shape_str(input_ids.shape) + " batch");

  std::vector<int64_t> pos(static_cast<size_t>(M));
  for (int64_t i = 0; i < M; ++i) pos[size_t(i)] = i % S;
  Tensor cos = model.rope_cos, sin = model.rope_sin;
  if (cos.empty()) rope_tables(c, cos, sin, S);

  // Activations, (M, width) row-major, 64-byte aligned: Eigen's vectorised reductions peel
  // by alignment, so aligned buffers make the results independent of where malloc put them.
  Activation x(M * H), h(M * H), q(M * Q), k(M * KV), v(M * KV), att(M * Q), gate(M * I), up(M * I);
  Tensor logits = Tensor::zeros(DType::F32, {B, S, V});
  const float eps = float(c.rms_norm_eps);
  auto pool = thread_pool();
  auto rows_parallel = [&](int64_t rows, int64_t width, auto&& fn) {
    pool->parallel_for(rows, fn, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)));
  };

  cpu::embedding(x.data(), model.embed_tokens.f32(), tok.ids.data(), M, H);
  for (const LayerWeights& L : model.layers) {
    // Attention block: x += o_proj(attn(rope(q), rope(k), v))
    cpu::rmsnorm(h.data(), x.data(), L.input_layernorm.f32(), M, H, eps);
    cpu::matmul_nt(q.data(), h.data(), L.q_proj.f32(), M, H, Q);
    cpu::matmul_nt(k.data(), h.data(), L.k_proj.f32(), M, H, KV);
    cpu::matmul_nt(v.data(), h.data(), L.v_proj.f32(), M, H, KV);
    cpu::rope(q.data(), M, nH, D, pos.data(), cos.f32(), sin.f32());
    cpu::rope(k.data(), M, c.num_key_value_heads, D, pos.data(), cos.f32(), sin.f32());
    pool->parallel_for(B * nH, [&](int64_t i0, int64_t i1) {
      std::vector<float> scratch(static_cast<size_t>(S));
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / nH, head = i % nH, kv_off = b * S * KV + (head / group) * D;
        cpu::attention_head(att.data() + b * S * Q + head * D, Q, q.data() + b * S * Q + head * D, Q,
                            k.data() + kv_off, v.data() + kv_off, KV, S, S, D, pos.data() + b * S,
                            tok.valid.data() + b * S, scratch.data());
      }
    });
    cpu::matmul_nt(x.data(), att.data(), L.o_proj.f32(), M, Q, H, /*accumulate=*/true);
    // MLP block: x += down(silu(gate(h)) * up(h))
    cpu::rmsnorm(h.data(), x.data(), L.post_attention_layernorm.f32(), M, H, eps);
    cpu::matmul_nt(gate.data(), h.data(), L.gate_proj.f32(), M, H, I);
    cpu::matmul_nt(up.data(), h.data(), L.up_proj.f32(), M, H, I);
    rows_parallel(M, I, [&](int64_t r0, int64_t r1) {
      cpu::swiglu(gate.data() + r0 * I, gate.data() + r0 * I, up.data() + r0 * I, (r1 - r0) * I);
    });
    cpu::matmul_nt(x.data(), gate.data(), L.down_proj.f32(), M, I, H, /*accumulate=*/true);
  }
  cpu::rmsnorm(h.data(), x.data(), model.norm.f32(), M, H, eps);
  cpu::matmul_nt(logits.f32(), h.data(), model.output_weight().f32(), M, H, V);
  check_finite(model, logits);
  return logits;
}

void check_finite(const Model& model, const Tensor& logits) {
  const float* p = logits.f32();
  bool finite = true;
  for (int64_t i = 0, n = logits.numel(); i < n && finite; ++i) finite = std::isfinite(p[i]);
  if (finite) return;
  // Name the culprit when it is a weight; otherwise the activations overflowed.
  for (const WeightSlot& slot : weight_slots(const_cast<Model&>(model))) {
    const float* w = slot.tensor->f32();
    for (int64_t i = 0, n = slot.tensor->numel(); i < n; ++i)
      if (!std::isfinite(w[i])) throw ValueError("the logits are not finite: weight '" + slot.name + "' holds " +
                                                 (std::isnan(w[i]) ? "NaN" : "Inf") + " at flat index " +
                                                 std::to_string(i));
  }
  throw ValueError("the logits are not finite (the activations overflowed float32)");
}

}  // namespace celer
