// The engine: prefill, then one decode step per token, for a batch, under one version of the
// KV cache (core/versions.h). It walks the model (embedding, layers, head), keeps the cache and
// samples; every number is computed by its Backend (backend.h), chosen by device. Buffers and
// the cache are sized before the decode loop and reused; nothing is allocated per token. An
// Engine is not thread-safe: use one per thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/matmul_precision.h"
#include "core/model.h"
#include "core/versions.h"
#include "core/weight_format.h"
#include "engine/backend.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "engine/timer.h"

namespace celer {

struct GenerateOptions {
  int64_t max_new_tokens = 1;
  SamplingParams sampling;
  uint64_t seed = 0;
  int64_t eos_token_id = -1;  // < 0: none
  bool return_logits = false;
  bool timing = true;  // per-phase timers (off: no clock reads inside the steps)
  // Asked between steps (at most every kStopCheckNs): true stops the call with Interrupted.
  // The bindings check for Ctrl-C here. Empty: never stops.
  std::function<bool()> should_stop;
  // Called after each step with the token each row just took (batch ids; a finished row's is
  // the EOS id): streaming. Empty: not called.
  std::function<void(const int64_t* next_tokens, int64_t batch)> on_token;
};

constexpr int64_t kStopCheckNs = 20'000'000;  // 20 ms

struct GenerationResult {
  Tensor tokens;                  // (B, P + T) int64: the prompt, then the new tokens
  Tensor logits;                  // (B, T, vocab) float32 raw model logits each step sampled from; or empty
  std::vector<StepTiming> steps;  // step 0: prefill + first token; then one per decode token
  int64_t prompt_length = 0, new_tokens = 0;
  uint64_t kv_cache_bytes = 0;           // for the tokens the cache holds at the end (0 for v0)
  uint64_t kv_cache_capacity_bytes = 0;  // allocated (0 for v0)
  uint64_t peak_bytes = 0;               // the engine's own buffers, cache included (allocated up front)
};

class Engine {
 public:
  // The model must outlive the engine. max_seq_len <= 0: the model's max_position_embeddings.
  // weights: the format every linear layer computes with (packed once, here); none: each in
  // the format that holds its stored values exactly (stored_weight_format: a float32 model's
  // f32, a GGUF file's own Q4_0 / Q4_1 / Q8_0). device: the backend ("cpu"; make_backend).
  Engine(const Model& model, const VersionSpec& version, int64_t max_seq_len = 0,
         std::optional<WeightFormat> weights = std::nullopt, const std::string& device = "cpu");

  GenerationResult generate(const Tensor& input_ids, const Tensor* attention_mask, const GenerateOptions& options);

  // Logits (B, S, vocab) for every position of the batch in one prefill through this version's
  // cache path (v0 and v1: the plain forward pass).
  Tensor forward(const Tensor& input_ids, const Tensor* attention_mask);
  // (generate, forward and score refuse, with ValueError, to run while another thread runs one
  // of them on the same engine: its buffers are one call's.)

  // Teacher forcing through this version's cache path: prefill tokens [0, prefill_length),
  // then feed every later token as one decode step. Returns logits (B, S, vocab) where
  // [:, t] predicts token t + 1. v0 has no cache path: its logits are the forward pass's.
  Tensor score(const Tensor& input_ids, const Tensor* attention_mask, int64_t prefill_length,
               const std::function<bool()>& should_stop = {});

  const VersionSpec& version() const { return version_; }
  int64_t max_seq_len() const { return max_seq_len_; }
  std::string device() const { return backend_->name(); }
  uint64_t buffer_bytes() const;  // activations + scratch + cache, as allocated now
  // The format the engine's layers compute with: the one asked for, else the format of most of
  // the layers' matrices (a GGUF file's own type, as llama.cpp names a file).
  WeightFormat weight_format() const;
  // How many matrices (the head included) compute in each format.
  std::vector<std::pair<WeightFormat, int64_t>> matrix_formats() const;
  // How prefill's GEMMs multiply f32 and int8 weights (core/matmul_precision.h); Highest
  // unless set. Decoding is the same at every setting.
  MatmulPrecision matmul_precision() const { return matmul_precision_; }
  void set_matmul_precision(MatmulPrecision precision) { matmul_precision_ = precision; }
  // Bytes of packed weights one decode step streams: every linear layer and the output head.
  uint64_t packed_weight_bytes() const;

 private:
  // Sizes activations for batch x rows tokens per step and the cache for batch x max_seq_len,
  // keeping what is already large enough, and prepares the backend for the call. A refused
  // size (check_allocation) leaves the engine as it was.
  void reserve(int64_t batch, int64_t rows);
  // One step: tokens ids[b * ids_stride + i], i < n, at positions p0 + i, for rows b < batch;
  // they see cache keys t < p0 + n with valid[b * valid_stride + t] != 0. Writes their K/V into
  // the cache and the logits (host memory) of every position (all_positions) or of each row's
  // last one.
  void step(int64_t batch, int64_t n, int64_t p0, const int64_t* ids, int64_t ids_stride, const uint8_t* valid,
            int64_t valid_stride, float* logits, bool all_positions, StepTiming* timing);
  // The architecture's norm (RMSNorm, or gpt2's LayerNorm with its bias) over rows of hidden.
  void norm(float* out, const float* x, const DeviceBuffer& weight, const DeviceBuffer& bias, int64_t rows);
  void layer(size_t l, const StepInputs& in, StepTiming* timing);

  // One model layer on the backend: its linear layers packed, its norms and biases adopted.
  struct LayerOnBackend {
    std::unique_ptr<Weight> q, k, v, o, gate, up, down;  // gate: null for gpt2
    DeviceBuffer input_norm, input_norm_bias, post_norm, post_norm_bias;
  };

  const Model& model_;
  VersionSpec version_;
  MatmulPrecision matmul_precision_ = MatmulPrecision::Highest;
  std::unique_ptr<Backend> backend_;
  std::vector<LayerOnBackend> layers_;
  std::unique_ptr<Weight> lm_head_;
  DeviceBuffer embed_tokens_, embed_positions_, final_norm_, final_norm_bias_, rope_cos_, rope_sin_;
  int64_t max_seq_len_;
  std::unique_ptr<KVCache> cache_;
  int64_t batch_capacity_ = 0, row_capacity_ = 0;
  // Activations (batch * rows, width) on the backend; logits_ only where the backend's memory
  // is not the host's.
  DeviceBuffer x_, h_, q_, k_, v_, att_, gate_, up_, last_, logits_;
  std::vector<int64_t> pos_;  // position of each activation row (host)
  std::atomic<bool> busy_{false};  // a call is running (one thread at a time)
};

// Process peak resident set size in bytes (getrusage).
uint64_t peak_rss_bytes();

}  // namespace celer
