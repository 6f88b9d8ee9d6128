#include "engine/engine.h"

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <utility>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "engine/forward.h"
#include "backend/cpu/threadpool.h"

namespace celer {

Engine::Engine(const Model& model, const VersionSpec& version, int64_t max_seq_len, WeightFormat weights)
    : model_(model),
      version_(version),
      weight_format_(weights),
      max_seq_len_(max_seq_len > 0 ? max_seq_len : model.config.max_position_embeddings) {
  const ModelConfig& c = model.config;
  require(max_seq_len_ <= c.max_position_embeddings,
          "max_seq_len " + std::to_string(max_seq_len_) + " exceeds the model's max_position_embeddings (" +
              std::to_string(c.max_position_embeddings) + ")");
  // Layer -> cache layer. v0 keeps one scratch layer that every layer overwrites in turn;
  // sharing pairs (0,1), (2,3), ...: the even layer computes K/V, the odd one reads them.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const bool shared = version_.cross_layer_sharing && l % 2 == 1;
    cache_layer_.push_back(!version_.use_cache() ? 0 : version_.cross_layer_sharing ? l / 2 : l);
    owns_kv_.push_back(!shared);
  }
  // Each layer's matrices in PackedLayer's order, with their biases (gpt2 has no gate).
  auto matrices = [](const LayerWeights& L) {
    return std::array<std::pair<const Tensor*, const Tensor*>, 7>{
        {{&L.q_proj, &L.q_proj_bias}, {&L.k_proj, &L.k_proj_bias}, {&L.v_proj, &L.v_proj_bias},
         {&L.o_proj, &L.o_proj_bias}, {&L.gate_proj, nullptr}, {&L.up_proj, &L.up_proj_bias},
         {&L.down_proj, &L.down_proj_bias}}};
  };
  // Every packed matrix in one arena (packed_weight.h says why), sized by a first pass.
  uint64_t arena_bytes = 0;
  auto size = [&](const Tensor& w) {
    if (!w.empty()) arena_bytes += cpu::WeightArena::bytes_for(w.dim(0), w.dim(1), weights);
  };
  for (const LayerWeights& L : model.layers)
    for (const auto& [w, bias] : matrices(L)) size(*w);
  size(model.output_weight());
  std::optional<cpu::WeightArena> arena;
  if (arena_bytes > 0) {
    check_allocation(arena_bytes, "the " + weight_format_name(weights) + " copy of the weights");
    arena.emplace(arena_bytes);
  }
  cpu::WeightArena* from = arena ? &*arena : nullptr;
  for (const LayerWeights& L : model.layers) {
    PackedLayer& P = packed_.emplace_back();
    cpu::PackedWeight* out[] = {&P.q, &P.k, &P.v, &P.o, &P.gate, &P.up, &P.down};
    const auto in = matrices(L);
    for (size_t i = 0; i < in.size(); ++i)
      if (!in[i].first->empty()) *out[i] = cpu::pack_weight(*in[i].first, weights, in[i].second, from);
  }
  lm_head_ = cpu::pack_weight(model.output_weight(), weights, nullptr, from);
  rope_cos_ = model.rope_cos;  // a file's tables, else computed once for the positions we use
  rope_sin_ = model.rope_sin;
  if (rope_cos_.empty() && c.uses_rope()) rope_tables(c, rope_cos_, rope_sin_, max_seq_len_);
}

void Engine::reserve(int64_t batch, int64_t rows) {
  const ModelConfig& c = model_.config;
  const int64_t threads = thread_pool()->num_threads();
  if (batch > batch_capacity_ || rows > row_capacity_) {
    batch_capacity_ = std::max(batch, batch_capacity_);
    row_capacity_ = std::max(rows, row_capacity_);
    const int64_t M = batch_capacity_ * row_capacity_;
    const uint64_t floats = uint64_t(M) * uint64_t(3 * c.hidden_size + 2 * c.q_dim() + 2 * c.kv_dim() +
                                                   2 * c.intermediate_size);
    check_allocation(floats * 4, "the engine's activations for " + std::to_string(batch_capacity_) + " x " +
                                     std::to_string(row_capacity_) + " tokens");
    auto buffer = [](int64_t n) { return Tensor::zeros(DType::F32, {n}); };
    x_ = buffer(M * c.hidden_size);
    h_ = buffer(M * c.hidden_size);
    q_ = buffer(M * c.q_dim());
    k_ = buffer(M * c.kv_dim());
    v_ = buffer(M * c.kv_dim());
    att_ = buffer(M * c.q_dim());
    gate_ = buffer(M * c.intermediate_size);
    up_ = buffer(M * c.intermediate_size);
    last_ = buffer(batch_capacity_ * c.hidden_size);
    pos_.assign(size_t(M), 0);
    const int64_t cache_layers = !version_.use_cache() ? 1 : cache_layer_.back() + 1;
    cache_.allocate(version_.use_cache() ? version_.storage : KVStorage::F32, cache_layers, batch_capacity_,
                    max_seq_len_, c.num_key_value_heads, c.head_dim());
    scratch_.clear();
  }
  const int64_t widest = std::max({c.hidden_size, c.q_dim(), c.intermediate_size});
  linear_scratch_.reserve(int(threads), widest, batch_capacity_ * row_capacity_);
  if (int64_t(scratch_.size()) < threads) {
    scratch_.resize(size_t(threads));
    for (auto& s : scratch_) s.reserve(row_capacity_, c.num_attention_heads / c.num_key_value_heads, c.head_dim());
  }
}

uint64_t Engine::packed_weight_bytes() const {
  uint64_t total = lm_head_.nbytes();
  for (const PackedLayer& P : packed_)
    for (const cpu::PackedWeight* w : {&P.q, &P.k, &P.v, &P.o, &P.gate, &P.up, &P.down}) total += w->nbytes();
  return total;
}

void Engine::norm(float* out, const float* x, const Tensor& weight, const Tensor& bias, int64_t rows) const {
  const ModelConfig& c = model_.config;
  if (c.gpt2_style())
    cpu::layernorm(out, x, weight.f32(), bias.f32(), rows, c.hidden_size, float(c.layer_norm_epsilon));
  else
    cpu::rmsnorm(out, x, weight.f32(), rows, c.hidden_size, float(c.rms_norm_eps));
}

uint64_t Engine::buffer_bytes() const {
  uint64_t total = cache_.capacity_bytes() + pos_.size() * sizeof(int64_t) + linear_scratch_.bytes();
  for (const Tensor* t : {&x_, &h_, &q_, &k_, &v_, &att_, &gate_, &up_, &last_})
    if (!t->empty()) total += t->nbytes();
  for (const auto& s : scratch_)
    total += (s.k_tile.size() + s.v_tile.size() + s.scores.size() + s.row_max.size() + s.row_sum.size()) * 4;
  return total;
}

void Engine::layer(size_t l, int64_t B, int64_t n, int64_t p0, const uint8_t* valid, int64_t valid_stride,
                   StepTiming* timing) {
  const ModelConfig& c = model_.config;
  const LayerWeights& L = model_.layers[l];
  const PackedLayer& P = packed_[l];
  cpu::LinearScratch* scratch = &linear_scratch_;
  const MatmulPrecision precision = matmul_precision_;
  const int64_t M = B * n, H = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size,
                D = c.head_dim(), nKV = c.num_key_value_heads, group = c.num_attention_heads / nKV;
  const int64_t cl = cache_layer_[l];
  auto pool = thread_pool();
  {
    ScopedPhase phase(timing, kAttention);
    norm(h_.f32(), x_.f32(), L.input_layernorm, L.input_layernorm_bias, M);
    if (owns_kv_[l])  // Q, K and V in one pass over h; a sharing odd layer computes only Q
      cpu::linear_group({{&P.q, q_.f32(), Q}, {&P.k, k_.f32(), KV}, {&P.v, v_.f32(), KV}}, h_.f32(), H, M, scratch,
                        precision);
    else
      cpu::linear(P.q, h_.f32(), M, q_.f32(), false, scratch, precision);
    if (c.uses_rope()) cpu::rope(q_.f32(), M, c.num_attention_heads, D, pos_.data(), rope_cos_.f32(), rope_sin_.f32());
    if (owns_kv_[l]) {
      if (c.uses_rope()) cpu::rope(k_.f32(), M, nKV, D, pos_.data(), rope_cos_.f32(), rope_sin_.f32());
      cache_.write(cl, B, n, p0, k_.f32(), v_.f32());
    }
    pool->parallel_for_threads(B * nKV, [&](int64_t i0, int64_t i1, int thread) {
      for (int64_t i = i0; i < i1; ++i)
        cache_attention(cache_, cl, i / nKV, i % nKV, group, D, q_.f32(), att_.f32(), Q, n, p0,
                        valid + (i / nKV) * valid_stride, scratch_[size_t(thread)]);
    });
    cpu::linear(P.o, att_.f32(), M, x_.f32(), /*accumulate=*/true, scratch, precision);
  }
  {
    ScopedPhase phase(timing, kMlp);
    norm(h_.f32(), x_.f32(), L.post_attention_layernorm, L.post_attention_layernorm_bias, M);
    const int64_t grain = std::max<int64_t>(1, 16384 / I);  // rows per thread: at least ~16K elements
    if (c.gated_mlp()) {  // down(silu(gate(h)) * up(h))
      cpu::linear_group({{&P.gate, gate_.f32(), I}, {&P.up, up_.f32(), I}}, h_.f32(), H, M, scratch, precision);
      pool->parallel_for(M, [&](int64_t r0, int64_t r1) {
        cpu::swiglu(gate_.f32() + r0 * I, gate_.f32() + r0 * I, up_.f32() + r0 * I, (r1 - r0) * I);
      }, grain);
    } else {  // gpt2: down(gelu(up(h)))
      cpu::linear(P.up, h_.f32(), M, gate_.f32(), false, scratch, precision);
      const bool tanh_form = c.gelu_tanh();
      pool->parallel_for(M, [&](int64_t r0, int64_t r1) {
        cpu::gelu(gate_.f32() + r0 * I, (r1 - r0) * I, tanh_form);
      }, grain);
    }
    cpu::linear(P.down, gate_.f32(), M, x_.f32(), /*accumulate=*/true, scratch, precision);
  }
}

void Engine::step(int64_t B, int64_t n, int64_t p0, const int64_t* ids, int64_t ids_stride, const uint8_t* valid,
                  int64_t valid_stride, float* logits, bool all_positions, StepTiming* timing) {
  const ModelConfig& c = model_.config;
  const int64_t H = c.hidden_size;
  for (int64_t r = 0; r < B * n; ++r) pos_[size_t(r)] = p0 + r % n;  // the same positions in every row
  {
    ScopedPhase phase(timing, kEmbedding);
    for (int64_t b = 0; b < B; ++b) cpu::embedding(x_.f32() + b * n * H, model_.embed_tokens.f32(), ids + b * ids_stride, n, H);
    if (c.gpt2_style())  // learned positions
      for (int64_t r = 0; r < B * n; ++r) {
        const float* p = model_.embed_positions.f32() + pos_[size_t(r)] * H;
        float* x = x_.f32() + r * H;
        for (int64_t i = 0; i < H; ++i) x[i] += p[i];
      }
  }
  for (size_t l = 0; l < model_.layers.size(); ++l) layer(l, B, n, p0, valid, valid_stride, timing);
  ScopedPhase phase(timing, kHead);
  if (all_positions) {
    norm(h_.f32(), x_.f32(), model_.norm, model_.norm_bias, B * n);
    cpu::linear(lm_head_, h_.f32(), B * n, logits, false, &linear_scratch_, matmul_precision_);
  } else {  // only each row's last position feeds the sampler
    for (int64_t b = 0; b < B; ++b)
      norm(last_.f32() + b * H, x_.f32() + (b * n + n - 1) * H, model_.norm, model_.norm_bias, 1);
    cpu::linear(lm_head_, last_.f32(), B, logits, false, &linear_scratch_, matmul_precision_);
  }
}

Tensor Engine::forward(const Tensor& input_ids, const Tensor* attention_mask) {
  const TokenBatch tok = check_tokens(model_.config, input_ids, attention_mask);
  const int64_t B = tok.batch, S = tok.seq_len;
  require(S <= max_seq_len_, "sequence length " + std::to_string(S) + " exceeds the engine's max_seq_len (" +
                                 std::to_string(max_seq_len_) + ")");
  check_allocation(uint64_t(B * S) * uint64_t(model_.config.vocab_size) * 4, "logits of a " + shape_str(input_ids.shape) + " batch");
  reserve(B, S);
  cache_.clear();
  Tensor logits = Tensor::zeros(DType::F32, {B, S, model_.config.vocab_size});
  step(B, S, 0, tok.ids.data(), S, tok.valid.data(), S, logits.f32(), /*all_positions=*/true, nullptr);
  check_finite(model_, logits);
  return logits;
}

Tensor Engine::score(const Tensor& input_ids, const Tensor* attention_mask, int64_t prefill_length) {
  if (!version_.use_cache()) return forward(input_ids, attention_mask);
  const TokenBatch tok = check_tokens(model_.config, input_ids, attention_mask);
  const int64_t B = tok.batch, S = tok.seq_len, V = model_.config.vocab_size, P = prefill_length;
  require(P >= 1 && P <= S, "prefill_length must be in [1, " + std::to_string(S) + "], got " + std::to_string(P));
  require(S <= max_seq_len_, "sequence length " + std::to_string(S) + " exceeds the engine's max_seq_len (" +
                                 std::to_string(max_seq_len_) + ")");
  check_allocation(uint64_t(B * (S + P)) * uint64_t(V) * 4, "logits of a " + shape_str(input_ids.shape) + " batch");
  reserve(B, P);
  cache_.clear();
  Tensor logits = Tensor::zeros(DType::F32, {B, S, V});
  Tensor prefill = Tensor::zeros(DType::F32, {B, P, V});
  step(B, P, 0, tok.ids.data(), S, tok.valid.data(), S, prefill.f32(), /*all_positions=*/true, nullptr);
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(logits.f32() + b * S * V, prefill.f32() + b * P * V, size_t(P * V) * 4);
  Tensor row = Tensor::zeros(DType::F32, {B, V});
  for (int64_t t = P; t < S; ++t) {
    step(B, 1, t, tok.ids.data() + t, S, tok.valid.data(), S, row.f32(), false, nullptr);
    for (int64_t b = 0; b < B; ++b) std::memcpy(logits.f32() + (b * S + t) * V, row.f32() + b * V, size_t(V) * 4);
  }
  check_finite(model_, logits);
  return logits;
}

GenerationResult Engine::generate(const Tensor& input_ids, const Tensor* attention_mask, const GenerateOptions& opt) {
  const ModelConfig& c = model_.config;
  const TokenBatch tok = check_tokens(c, input_ids, attention_mask);
  const int64_t B = tok.batch, P = tok.seq_len, T = opt.max_new_tokens, V = c.vocab_size;
  require(T >= 1, "max_new_tokens must be >= 1, got " + std::to_string(T));
  require(P + T <= max_seq_len_, "prompt length " + std::to_string(P) + " + max_new_tokens " + std::to_string(T) +
                                     " exceeds max_seq_len " + std::to_string(max_seq_len_));
  require(opt.eos_token_id < V, "eos_token_id " + std::to_string(opt.eos_token_id) + " is out of range [0, " +
                                    std::to_string(V) + ")");
  validate(opt.sampling);
  const int64_t L = P + T;
  if (opt.return_logits) check_allocation(uint64_t(B * T) * uint64_t(V) * 4, "the returned logits");

  // Everything the loop touches is sized here.
  reserve(B, version_.use_cache() ? P : L);
  cache_.clear();
  GenerationResult out;
  out.prompt_length = P;
  out.tokens = Tensor::zeros(DType::I64, {B, L});
  std::vector<uint8_t> valid(size_t(B * L), 1), finished(size_t(B), 0);
  int64_t* tokens = out.tokens.as<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < P; ++i) {
      tokens[b * L + i] = tok.ids[size_t(b * P + i)];
      valid[size_t(b * L + i)] = tok.valid[size_t(b * P + i)];
    }
  Tensor step_logits = Tensor::zeros(DType::F32, {B, V});
  Tensor all_logits = opt.return_logits ? Tensor::zeros(DType::F32, {B, T, V}) : Tensor();
  Sampler sampler(V, B, opt.seed);
  out.steps.reserve(size_t(T));

  int64_t t = 0;
  for (; t < T; ++t) {
    StepTiming st;
    StepTiming* timing = opt.timing ? &st : nullptr;
    const int64_t start = now_ns(), seen = P + t;  // tokens known before this step
    if (!version_.use_cache()) {  // v0: the whole sequence again
      st.tokens = seen;
      step(B, seen, 0, tokens, L, valid.data(), L, step_logits.f32(), false, timing);
    } else {
      const int64_t p0 = t == 0 ? 0 : seen - 1, n = t == 0 ? P : 1;
      st.tokens = n;
      step(B, n, p0, tokens + p0, L, valid.data(), L, step_logits.f32(), false, timing);
    }
    {
      ScopedPhase phase(timing, kOther);
      bool all_done = true;
      for (int64_t b = 0; b < B; ++b) {
        const float* row = step_logits.f32() + b * V;
        int64_t next = opt.eos_token_id;
        if (!finished[size_t(b)])
          next = sampler.sample(b, row, tokens + b * L, valid.data() + b * L, seen, opt.sampling);
        tokens[b * L + seen] = next;
        finished[size_t(b)] = opt.eos_token_id >= 0 && next == opt.eos_token_id;
        all_done = all_done && finished[size_t(b)];
        if (opt.return_logits) std::memcpy(all_logits.f32() + (b * T + t) * V, row, size_t(V) * 4);
      }
      if (all_done) t = T;  // leave after recording this step
    }
    st.total_ns = now_ns() - start;
    out.steps.push_back(st);
  }
  const int64_t produced = int64_t(out.steps.size());
  out.new_tokens = produced;
  if (produced < T) {  // stopped at EOS: trim the unused columns
    Tensor trimmed = Tensor::zeros(DType::I64, {B, P + produced});
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(trimmed.as<int64_t>() + b * (P + produced), tokens + b * L, size_t(P + produced) * 8);
    out.tokens = trimmed;
    if (opt.return_logits) {
      Tensor cut = Tensor::zeros(DType::F32, {B, produced, V});
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(cut.f32() + b * produced * V, all_logits.f32() + b * T * V, size_t(produced * V) * 4);
      all_logits = cut;
    }
  }
  out.logits = all_logits;
  if (opt.return_logits) check_finite(model_, out.logits);
  out.kv_cache_bytes = version_.use_cache() ? cache_.bytes_for(cache_.length(), B) : 0;
  out.kv_cache_capacity_bytes = version_.use_cache() ? cache_.capacity_bytes() : 0;
  out.peak_bytes = buffer_bytes();
  return out;
}

uint64_t peak_rss_bytes() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return uint64_t(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace celer
