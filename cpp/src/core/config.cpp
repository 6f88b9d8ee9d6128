#include "core/config.h"

#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>
#include <cstdint>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace celer {

int64_t default_intermediate_size(int64_t hidden_size) {
  int64_t inter = hidden_size * 4;
  return 64 * ((inter + 63) / 64);
}

namespace {
constexpr int64_t kMaxDim = int64_t(1) << 24;  // far beyond any real model; stops overflow

void require_range(int64_t value, int64_t lo, const char* name) {
  require(value >= lo && value <= kMaxDim,
          std::string("config: ") + name + " must be in [" + std::to_string(lo) + ", " +
              std::to_string(kMaxDim) + "], got " + std::to_string(value));
}
}  // namespace

const char* supported_architectures() { return "llama, qwen2, gpt2"; }

void ModelConfig::resolve() {
  require(architecture == "llama" || architecture == "qwen2" || architecture == "gpt2",
          "config: architecture '" + architecture + "' is not supported (supported: " + supported_architectures() + ")");
  if (hidden_act.empty()) hidden_act = gpt2_style() ? "gelu_new" : "silu";
  if (hidden_act == "gelu_pytorch_tanh") hidden_act = "gelu_new";  // the same function
  if (gpt2_style())
    require(hidden_act == "gelu_new" || hidden_act == "gelu",
            "config: hidden_act '" + hidden_act + "' is not supported for gpt2 (supported: gelu_new, "
            "gelu_pytorch_tanh, gelu)");
  else
    require(hidden_act == "silu",
            "config: hidden_act '" + hidden_act + "' is not supported for " + architecture + " (supported: silu)");
  require_range(hidden_size, 1, "hidden_size");
  require_range(num_hidden_layers, 1, "num_hidden_layers");
  require_range(num_attention_heads, 1, "num_attention_heads");
  require_range(num_key_value_heads, 1, "num_key_value_heads");
  require_range(vocab_size, 1, "vocab_size");
  require_range(max_position_embeddings, 1, "max_position_embeddings");
  if (intermediate_size == 0) intermediate_size = gpt2_style() ? 4 * hidden_size : default_intermediate_size(hidden_size);
  require_range(intermediate_size, 1, "intermediate_size");
  require(hidden_size % num_attention_heads == 0,
          "config: hidden_size (" + std::to_string(hidden_size) +
              ") must be divisible by num_attention_heads (" + std::to_string(num_attention_heads) + ")");
  require(num_attention_heads % num_key_value_heads == 0,
          "config: num_attention_heads (" + std::to_string(num_attention_heads) +
              ") must be a multiple of num_key_value_heads (" + std::to_string(num_key_value_heads) + ")");
  require(!gpt2_style() || num_key_value_heads == num_attention_heads,
          "config: gpt2 uses multi-head attention: num_key_value_heads (" + std::to_string(num_key_value_heads) +
              ") must equal num_attention_heads (" + std::to_string(num_attention_heads) + ")");
  require(!uses_rope() || head_dim() % 2 == 0, "config: head_dim = hidden_size / num_attention_heads = " +
                                   std::to_string(head_dim()) + " must be even for RoPE");
  require(std::isfinite(rms_norm_eps) && rms_norm_eps > 0,
          "config: rms_norm_eps must be a positive finite number");
  require(std::isfinite(rope_theta) && rope_theta > 0, "config: rope_theta must be a positive finite number");
  require(std::isfinite(layer_norm_epsilon) && layer_norm_epsilon > 0,
          "config: layer_norm_epsilon must be a positive finite number");
}

int64_t ModelConfig::num_parameters() const {
  // Dimensions are capped at 2^24, so each product below fits in int64.
  const int64_t h = hidden_size, inter = intermediate_size;
  int64_t per_layer = 2 * h + h * q_dim() + 2 * h * kv_dim() + q_dim() * h + (gated_mlp() ? 3 : 2) * h * inter;
  int64_t extra = h;  // the final norm
  if (qkv_bias()) per_layer += q_dim() + 2 * kv_dim();
  if (gpt2_style()) {
    per_layer += 2 * h + h + inter + h;  // norm biases, o_proj, up_proj and down_proj biases
    extra += h + max_position_embeddings * h;  // final norm bias, position embedding
  }
  int64_t embed = vocab_size * h;
  long double total = (long double)per_layer * num_hidden_layers + embed * (tie_word_embeddings ? 1 : 2) + extra;
  require(total < 9e18L, "config: the model is too large to count");
  return int64_t(total);
}

namespace {
// The shortest decimal that reads back as the same double (like Python's repr).
std::string shortest(double v) {
  char buf[32];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}
}  // namespace

std::string ModelConfig::to_string() const {
  std::ostringstream s;
  s << "ModelConfig(architecture='" << architecture << "', hidden_size=" << hidden_size
    << ", num_hidden_layers=" << num_hidden_layers << ", num_attention_heads=" << num_attention_heads
    << ", num_key_value_heads=" << num_key_value_heads << ", vocab_size=" << vocab_size
    << ", max_position_embeddings=" << max_position_embeddings
    << ", intermediate_size=" << intermediate_size << ", rms_norm_eps=" << shortest(rms_norm_eps)
    << ", rope_theta=" << shortest(rope_theta) << ", tie_word_embeddings=" << (tie_word_embeddings ? "True" : "False")
    << ", hidden_act='" << hidden_act << "', layer_norm_epsilon=" << shortest(layer_norm_epsilon) << ")";
  return s.str();
}

bool ModelConfig::operator==(const ModelConfig& o) const {
  return architecture == o.architecture && hidden_size == o.hidden_size && num_hidden_layers == o.num_hidden_layers &&
         num_attention_heads == o.num_attention_heads && num_key_value_heads == o.num_key_value_heads &&
         vocab_size == o.vocab_size && max_position_embeddings == o.max_position_embeddings &&
         intermediate_size == o.intermediate_size && rms_norm_eps == o.rms_norm_eps && rope_theta == o.rope_theta &&
         tie_word_embeddings == o.tie_word_embeddings && hidden_act == o.hidden_act &&
         layer_norm_epsilon == o.layer_norm_epsilon;
}

namespace {
// A number in a cgroup limit file ("max" or a missing file: no limit).
uint64_t cgroup_limit(const char* path) {
  std::FILE* f = std::fopen(path, "r");
  if (!f) return UINT64_MAX;
  unsigned long long value = 0;
  const bool ok = std::fscanf(f, "%llu", &value) == 1;
  std::fclose(f);
  return ok && value > 0 ? uint64_t(value) : UINT64_MAX;
}
}  // namespace

uint64_t usable_memory_bytes() {
  // A container's limit is lower than the host's physical memory that sysconf reports: an
  // allocation under the host's size but over the cgroup's is killed, not refused.
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  uint64_t limit = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : (uint64_t(1) << 40);
  limit = std::min(limit, cgroup_limit("/sys/fs/cgroup/memory.max"));
  limit = std::min(limit, cgroup_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
  struct rlimit as {};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) limit = std::min<uint64_t>(limit, as.rlim_cur);
  return limit;
}

void check_allocation(uint64_t bytes, const std::string& what) {
  const uint64_t limit = usable_memory_bytes();
  auto gib = [](uint64_t b) {
    std::ostringstream s;
    s.precision(3);
    s << double(b) / double(1ull << 30) << " GiB";
    return s.str();
  };
  require(bytes <= limit, what + " needs " + gib(bytes) + " but this machine has " + gib(limit) +
                              " of memory");
}

}  // namespace celer
