#include "engine/engine.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "engine/forward.h"

namespace celer {

namespace {
// Marks an engine busy for one call; a second thread's call is refused instead of sharing the
// buffers (which would give it, and the first, wrong tokens).
class BusyGuard {
 public:
  explicit BusyGuard(std::atomic<bool>& busy) : busy_(busy) {
    if (busy_.exchange(true))
      throw ValueError("this Engine is already running a call in another thread: an Engine serves one thread "
                       "at a time (make one Engine per thread)");
  }
  ~BusyGuard() { busy_.store(false); }
  BusyGuard(const BusyGuard&) = delete;
  BusyGuard& operator=(const BusyGuard&) = delete;

 private:
  std::atomic<bool>& busy_;
};

// Asks should_stop at most every kStopCheckNs; throws Interrupted when it says so.
class StopCheck {
 public:
  explicit StopCheck(const std::function<bool()>& should_stop) : should_stop_(should_stop) {}
  void operator()() {
    if (!should_stop_) return;
    const int64_t now = now_ns();
    if (now - last_ < kStopCheckNs) return;
    last_ = now;
    if (should_stop_()) throw Interrupted("interrupted");
  }

 private:
  const std::function<bool()>& should_stop_;
  int64_t last_ = now_ns();
};
}  // namespace

Engine::Engine(const Model& model, const VersionSpec& version, int64_t max_seq_len,
               std::optional<WeightFormat> weights, const std::string& device)
    : model_(model),
      version_(version),
      backend_(make_backend(device)),
      max_seq_len_(max_seq_len > 0 ? max_seq_len : model.config.max_position_embeddings) {
  const ModelConfig& c = model.config;
  require(max_seq_len >= 0, "max_seq_len must be >= 1 (or 0: the model's max_position_embeddings), got " +
                               std::to_string(max_seq_len));
  require(max_seq_len_ <= c.max_position_embeddings,
          "max_seq_len " + std::to_string(max_seq_len_) + " exceeds the model's max_position_embeddings (" +
              std::to_string(c.max_position_embeddings) + ")");
  version_.validate(c.head_dim(), c.num_hidden_layers, c.max_position_embeddings);  // a budget over a short engine just never evicts
  // Every linear layer in one call, so a backend can place them together (the CPU: one arena
  // on huge pages). Per layer, in LayerOnBackend's order: q k v o gate up down, with biases
  // (gpt2 has no gate); the head last.
  std::vector<WeightSource> sources;
  for (const LayerWeights& L : model.layers)
    for (WeightSource s : {WeightSource{&L.q_proj, &L.q_proj_bias}, {&L.k_proj, &L.k_proj_bias},
                           {&L.v_proj, &L.v_proj_bias}, {&L.o_proj, &L.o_proj_bias}, {&L.gate_proj, nullptr},
                           {&L.up_proj, &L.up_proj_bias}, {&L.down_proj, &L.down_proj_bias}})
      sources.push_back(s);
  sources.push_back({&model.output_weight(), nullptr});
  for (WeightSource& s : sources) s.format = weights ? *weights : stored_weight_format(s.weight->dtype);
  std::vector<std::unique_ptr<Weight>> packed = backend_->pack_weights(sources);
  auto next = packed.begin();
  for (const LayerWeights& L : model.layers) {
    LayerOnBackend& B = layers_.emplace_back();
    for (std::unique_ptr<Weight>* w : {&B.q, &B.k, &B.v, &B.o, &B.gate, &B.up, &B.down}) *w = std::move(*next++);
    B.input_norm = backend_->adopt(L.input_layernorm);
    B.input_norm_bias = backend_->adopt(L.input_layernorm_bias);
    B.post_norm = backend_->adopt(L.post_attention_layernorm);
    B.post_norm_bias = backend_->adopt(L.post_attention_layernorm_bias);
  }
  lm_head_ = std::move(*next);
  embed_tokens_ = backend_->adopt(model.embed_tokens);
  embed_positions_ = backend_->adopt(model.embed_positions);
  final_norm_ = backend_->adopt(model.norm);
  final_norm_bias_ = backend_->adopt(model.norm_bias);
  Tensor cos = model.rope_cos, sin = model.rope_sin;  // a file's tables, else computed for the positions we use
  if (cos.empty() && c.uses_rope()) rope_tables(c, cos, sin, max_seq_len_);
  rope_cos_ = backend_->adopt(cos);
  rope_sin_ = backend_->adopt(sin);
}

std::vector<std::pair<WeightFormat, int64_t>> Engine::matrix_formats() const {
  std::vector<std::pair<WeightFormat, int64_t>> counts;
  auto count = [&](const Weight& w) {
    for (auto& [format, n] : counts)
      if (format == w.format) return void(++n);
    counts.emplace_back(w.format, 1);
  };
  for (const LayerOnBackend& L : layers_)
    for (const std::unique_ptr<Weight>* w : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      if (*w) count(**w);
  count(*lm_head_);
  return counts;
}

WeightFormat Engine::weight_format() const {
  std::vector<std::pair<WeightFormat, int64_t>> counts;  // the layers' alone: the head is one matrix
  for (const LayerOnBackend& L : layers_)
    for (const std::unique_ptr<Weight>* w : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
      if (!*w) continue;
      auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == (*w)->format; });
      if (it == counts.end()) counts.emplace_back((*w)->format, 1);
      else ++it->second;
    }
  if (counts.empty()) return lm_head_->format;
  return std::max_element(counts.begin(), counts.end(), [](const auto& a, const auto& b) { return a.second < b.second; })
      ->first;
}

void Engine::reserve(int64_t batch, int64_t rows) {
  const ModelConfig& c = model_.config;
  if (batch > batch_capacity_ || rows > row_capacity_) {
    // Everything new is made before anything is replaced: a refused allocation leaves the
    // engine with its old, consistent buffers.
    const int64_t B = std::max(batch, batch_capacity_), R = std::max(rows, row_capacity_), M = B * R;
    const uint64_t floats = uint64_t(M) * uint64_t(3 * c.hidden_size + 2 * c.q_dim() + 2 * c.kv_dim() +
                                                   2 * c.intermediate_size);
    const KVLayout layout = KVLayout::make(version_, c.num_hidden_layers, B, max_seq_len_, R, c.num_key_value_heads,
                                           c.head_dim());
    // Activations and the cache together, before either is allocated (each alone may fit).
    const uint64_t cache_bytes = layout.bytes_for(layout.capacity, B);
    check_allocation(floats * 4 + cache_bytes, "the engine's activations and KV cache for " + std::to_string(B) +
                                                   " x " + std::to_string(R) + " tokens");
    std::unique_ptr<KVCache> cache = backend_->make_kv_cache(layout);
    auto buffer = [&](int64_t n) { return backend_->allocate(uint64_t(n) * 4, "the engine's activations"); };
    DeviceBuffer x = buffer(M * c.hidden_size), h = buffer(M * c.hidden_size), q = buffer(M * c.q_dim()),
                 k = buffer(M * c.kv_dim()), v = buffer(M * c.kv_dim()), att = buffer(M * c.q_dim()),
                 gate = buffer(M * c.intermediate_size), up = buffer(M * c.intermediate_size),
                 last = buffer(B * c.hidden_size);
    DeviceBuffer logits;
    if (!backend_->host_memory()) {
      check_allocation(uint64_t(M) * uint64_t(c.vocab_size) * 4, "the logits on the device");
      logits = buffer(M * c.vocab_size);
    }
    std::vector<int64_t> pos(size_t(M), 0);
    x_ = x, h_ = h, q_ = q, k_ = k, v_ = v, att_ = att, gate_ = gate, up_ = up, last_ = last, logits_ = logits;
    pos_ = std::move(pos);
    cache_ = std::move(cache);
    batch_capacity_ = B;
    row_capacity_ = R;
  }
  ScratchSizes sizes;
  sizes.max_rows = batch_capacity_ * row_capacity_;
  sizes.max_width = std::max({c.hidden_size, c.q_dim(), c.intermediate_size});
  sizes.query_rows = row_capacity_;
  sizes.group = c.num_attention_heads / c.num_key_value_heads;
  sizes.head_dim = c.head_dim();
  backend_->prepare(sizes);
}

uint64_t Engine::packed_weight_bytes() const {
  uint64_t total = lm_head_->nbytes();
  for (const LayerOnBackend& L : layers_)
    for (const std::unique_ptr<Weight>* w : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      if (*w) total += (*w)->nbytes();
  return total;
}

void Engine::norm(float* out, const float* x, const DeviceBuffer& weight, const DeviceBuffer& bias, int64_t rows) {
  const ModelConfig& c = model_.config;
  if (c.gpt2_style())
    backend_->layernorm(out, x, weight, bias, rows, c.hidden_size, float(c.layer_norm_epsilon));
  else
    backend_->rmsnorm(out, x, weight, rows, c.hidden_size, float(c.rms_norm_eps));
}

uint64_t Engine::buffer_bytes() const {
  uint64_t total = (cache_ ? cache_->capacity_bytes() : 0) + pos_.size() * sizeof(int64_t) + backend_->scratch_bytes();
  for (const DeviceBuffer* b : {&x_, &h_, &q_, &k_, &v_, &att_, &gate_, &up_, &last_, &logits_}) total += b->bytes;
  return total;
}

// One model layer over the step's batch * n activation rows.
void Engine::layer(size_t l, const StepInputs& in, StepTiming* timing) {
  const ModelConfig& c = model_.config;
  const LayerOnBackend& L = layers_[l];
  Backend& be = *backend_;
  const MatmulPrecision precision = matmul_precision_;
  const int64_t M = in.batch * in.n, H = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size,
                D = c.head_dim(), heads = c.num_attention_heads, kv_heads = c.num_key_value_heads;
  float *x = x_.f32(), *h = h_.f32(), *q = q_.f32(), *k = k_.f32(), *v = v_.f32(), *att = att_.f32(),
        *gate = gate_.f32(), *up = up_.f32();
  {
    ScopedPhase phase(timing, kAttention);
    norm(h, x, L.input_norm, L.input_norm_bias, M);
    const bool computes_kv = cache_->computes_kv(int64_t(l));
    if (computes_kv)  // Q, K and V in one pass over h; a sharing odd layer computes only Q
      be.linear({{L.q.get(), q, Q}, {L.k.get(), k, KV}, {L.v.get(), v, KV}}, h, H, M, precision);
    else
      be.linear({{L.q.get(), q, Q}}, h, H, M, precision);
    const bool interleaved = model_.rope_interleaved_rows;
    if (c.uses_rope()) be.rope(q, heads, D, rope_cos_, rope_sin_, interleaved);
    if (computes_kv) {
      if (c.uses_rope()) be.rope(k, kv_heads, D, rope_cos_, rope_sin_, interleaved);
      cache_->write(int64_t(l), in.batch, in.n, in.p0, k, v, in.valid, in.valid_stride);
    }
    be.attention(*cache_, int64_t(l), heads, kv_heads, D, q, att, Q);
    cache_->end_layer(int64_t(l), in.batch);
    be.linear({{L.o.get(), x, H, /*accumulate=*/true}}, att, Q, M, precision);
  }
  {
    ScopedPhase phase(timing, kMlp);
    norm(h, x, L.post_norm, L.post_norm_bias, M);
    if (c.gated_mlp()) {  // down(silu(gate(h)) * up(h))
      be.linear({{L.gate.get(), gate, I}, {L.up.get(), up, I}}, h, H, M, precision);
      be.swiglu(gate, up, M, I);
    } else {  // gpt2: down(gelu(up(h)))
      be.linear({{L.up.get(), gate, I}}, h, H, M, precision);
      be.gelu(gate, M, I, c.gelu_tanh());
    }
    be.linear({{L.down.get(), x, H, /*accumulate=*/true}}, gate, I, M, precision);
  }
}

void Engine::step(int64_t B, int64_t n, int64_t p0, const int64_t* ids, int64_t ids_stride, const uint8_t* valid,
                  int64_t valid_stride, float* logits, bool all_positions, StepTiming* timing) {
  const ModelConfig& c = model_.config;
  const int64_t H = c.hidden_size, V = c.vocab_size;
  for (int64_t r = 0; r < B * n; ++r) pos_[size_t(r)] = p0 + r % n;  // the same positions in every row
  StepInputs in;
  in.batch = B, in.n = n, in.p0 = p0, in.ids = ids, in.ids_stride = ids_stride, in.positions = pos_.data();
  in.valid = valid, in.valid_stride = valid_stride;
  backend_->begin_step(in);
  {
    ScopedPhase phase(timing, kEmbedding);
    backend_->embed(x_.f32(), embed_tokens_, model_.embed_tokens.dtype, H);
    if (c.gpt2_style()) backend_->add_positions(x_.f32(), embed_positions_, H);  // learned positions
  }
  for (size_t l = 0; l < layers_.size(); ++l) layer(l, in, timing);
  ScopedPhase phase(timing, kHead);
  const int64_t rows = all_positions ? B * n : B;
  float* out = backend_->host_memory() ? logits : logits_.f32();
  if (all_positions) {
    norm(h_.f32(), x_.f32(), final_norm_, final_norm_bias_, B * n);
    backend_->linear({{lm_head_.get(), out, V}}, h_.f32(), H, rows, matmul_precision_);
  } else {  // only each row's last position feeds the sampler
    for (int64_t b = 0; b < B; ++b)
      norm(last_.f32() + b * H, x_.f32() + (b * n + n - 1) * H, final_norm_, final_norm_bias_, 1);
    backend_->linear({{lm_head_.get(), out, V}}, last_.f32(), H, rows, matmul_precision_);
  }
  backend_->copy_to_host(logits, out, uint64_t(rows * V) * 4);
}

Tensor Engine::forward(const Tensor& input_ids, const Tensor* attention_mask) {
  BusyGuard busy(busy_);
  const TokenBatch tok = check_tokens(model_.config, input_ids, attention_mask);
  const int64_t B = tok.batch, S = tok.seq_len;
  require(S <= max_seq_len_, "sequence length " + std::to_string(S) + " exceeds the engine's max_seq_len (" +
                                 std::to_string(max_seq_len_) + ")");
  check_allocation(uint64_t(B * S) * uint64_t(model_.config.vocab_size) * 4, "logits of a " + shape_str(input_ids.shape) + " batch");
  reserve(B, S);
  cache_->clear();
  Tensor logits = Tensor::zeros(DType::F32, {B, S, model_.config.vocab_size});
  step(B, S, 0, tok.ids.data(), S, tok.valid.data(), S, logits.f32(), /*all_positions=*/true, nullptr);
  check_finite(model_, logits);
  return logits;
}

Tensor Engine::score(const Tensor& input_ids, const Tensor* attention_mask, int64_t prefill_length,
                     const std::function<bool()>& should_stop) {
  if (!version_.use_cache) return forward(input_ids, attention_mask);
  BusyGuard busy(busy_);
  StopCheck stop(should_stop);
  const TokenBatch tok = check_tokens(model_.config, input_ids, attention_mask);
  const int64_t B = tok.batch, S = tok.seq_len, V = model_.config.vocab_size, P = prefill_length;
  require(P >= 1 && P <= S, "prefill_length must be in [1, " + std::to_string(S) + "], got " + std::to_string(P));
  require(S <= max_seq_len_, "sequence length " + std::to_string(S) + " exceeds the engine's max_seq_len (" +
                                 std::to_string(max_seq_len_) + ")");
  check_allocation(uint64_t(B * (S + P)) * uint64_t(V) * 4, "logits of a " + shape_str(input_ids.shape) + " batch");
  reserve(B, P);
  cache_->clear();
  Tensor logits = Tensor::zeros(DType::F32, {B, S, V});
  Tensor prefill = Tensor::zeros(DType::F32, {B, P, V});
  step(B, P, 0, tok.ids.data(), S, tok.valid.data(), S, prefill.f32(), /*all_positions=*/true, nullptr);
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(logits.f32() + b * S * V, prefill.f32() + b * P * V, size_t(P * V) * 4);
  Tensor row = Tensor::zeros(DType::F32, {B, V});
  for (int64_t t = P; t < S; ++t) {
    stop();
    step(B, 1, t, tok.ids.data() + t, S, tok.valid.data(), S, row.f32(), false, nullptr);
    for (int64_t b = 0; b < B; ++b) std::memcpy(logits.f32() + (b * S + t) * V, row.f32() + b * V, size_t(V) * 4);
  }
  check_finite(model_, logits);
  return logits;
}

GenerationResult Engine::generate(const Tensor& input_ids, const Tensor* attention_mask, const GenerateOptions& opt) {
  BusyGuard busy(busy_);
  StopCheck stop(opt.should_stop);
  const ModelConfig& c = model_.config;
  const TokenBatch tok = check_tokens(c, input_ids, attention_mask);
  const int64_t B = tok.batch, P = tok.seq_len, T = opt.max_new_tokens, V = c.vocab_size;
  require(T >= 1, "max_new_tokens must be >= 1, got " + std::to_string(T));
  require(P + T <= max_seq_len_, "prompt length " + std::to_string(P) + " + max_new_tokens " + std::to_string(T) +
                                     " exceeds max_seq_len " + std::to_string(max_seq_len_));
  require(opt.eos_token_id >= -1 && opt.eos_token_id < V, "eos_token_id " + std::to_string(opt.eos_token_id) +
                                                              " is out of range [0, " + std::to_string(V) + ")");
  validate(opt.sampling);
  const int64_t L = P + T;
  if (opt.return_logits) check_allocation(uint64_t(B * T) * uint64_t(V) * 4, "the returned logits");

  // Everything the loop touches is sized here.
  reserve(B, version_.use_cache ? P : L);
  cache_->clear();
  GenerationResult out;
  out.prompt_length = P;
  out.tokens = Tensor::zeros(DType::I64, {B, L});
  std::vector<uint8_t> valid(size_t(B * L), 1), finished(size_t(B), 0);
  std::vector<int64_t> step_tokens(static_cast<size_t>(B));
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
    stop();
    StepTiming st;
    StepTiming* timing = opt.timing ? &st : nullptr;
    const int64_t start = now_ns(), seen = P + t;  // tokens known before this step
    if (!version_.use_cache) {  // v0: the whole sequence again
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
        step_tokens[size_t(b)] = next;
      }
      if (opt.on_token) opt.on_token(step_tokens.data(), B);
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
  out.kv_cache_bytes = version_.use_cache ? cache_->bytes(B) : 0;
  out.kv_cache_capacity_bytes = version_.use_cache ? cache_->capacity_bytes() : 0;
  out.peak_bytes = buffer_bytes();
  return out;
}

uint64_t peak_rss_bytes() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return uint64_t(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace celer
