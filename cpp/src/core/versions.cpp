#include "core/versions.h"

#include <cmath>
#include <string>

#include "core/error.h"

namespace celer {

namespace {
constexpr KVQuant kF32{KVStorage::F32, QuantAlong::Token, 0};
constexpr KVQuant kF16{KVStorage::F16, QuantAlong::Token, 0};
constexpr KVQuant kInt8Token{KVStorage::Int8, QuantAlong::Token, 0};
constexpr KVQuant kInt8Channel32{KVStorage::Int8, QuantAlong::Channel, 32};

// One method: name, label, description, K and V storage, then the other knobs.
VersionSpec method(const char* name, const char* label, const char* description, KVQuant key, KVQuant value) {
  VersionSpec v;
  v.name = name, v.method = label, v.description = description, v.key = key, v.value = value;
  return v;
}
template <class F>
VersionSpec with(VersionSpec v, F&& set) {
  set(v);
  return v;
}
}  // namespace

const std::vector<VersionSpec>& versions() {
  static const std::vector<VersionSpec> table = [] {
    std::vector<VersionSpec> t;
    t.push_back(with(method("v0", "no cache", "no cache: recompute the whole sequence each step (O(T^2))", kF32, kF32),
                     [](VersionSpec& v) { v.use_cache = false; }));
    t.push_back(method("v1", "fp32", "KV cache, fp32", kF32, kF32));
    t.push_back(method("v2", "int8", "KV cache, INT8 per token and head (float scale over head_dim)", kInt8Token,
                       kInt8Token));
    t.push_back(with(method("v3", "fp32 + sharing",
                            "KV cache, fp32, cross-layer sharing (odd layers reuse the even layer's K/V)", kF32, kF32),
                     [](VersionSpec& v) { v.sharing = Sharing::Reuse; }));
    t.push_back(with(method("v4", "int8 + sharing", "KV cache, INT8 per token and head + cross-layer sharing",
                            kInt8Token, kInt8Token),
                     [](VersionSpec& v) { v.sharing = Sharing::Reuse; }));
    t.push_back(method("v5", "fp16", "KV cache, fp16 (llama.cpp's default cache type)", kF16, kF16));
    t.push_back(with(method("v6", "KIVI-8",
                            "KV cache, INT8 KIVI-style: K per channel over 32-token blocks, V per token, recent "
                            "unfinished block in fp32", kInt8Channel32, kInt8Token),
                     [](VersionSpec& v) { v.residual = 32; }));
    t.push_back(with(method("v7", "KIVI-4",
                            "KIVI 4-bit: K per channel over 32 tokens, V per token in groups of 32 channels, the "
                            "newest tokens (up to 128) in fp32",
                            {KVStorage::Int4, QuantAlong::Channel, 32}, {KVStorage::Int4, QuantAlong::Token, 32}),
                     [](VersionSpec& v) { v.residual = 128; }));
    t.push_back(with(method("v8", "KIVI-2",
                            "KIVI 2-bit: K per channel over 32 tokens, V per token in groups of 32 channels, the "
                            "newest tokens (up to 128) in fp32",
                            {KVStorage::Int2, QuantAlong::Channel, 32}, {KVStorage::Int2, QuantAlong::Token, 32}),
                     [](VersionSpec& v) { v.residual = 128; }));
    t.push_back(with(method("v9", "StreamingLLM",
                            "StreamingLLM: fp32 cache of 4 attention sinks and the newest 508 tokens", kF32, kF32),
                     [](VersionSpec& v) { v.eviction = Eviction::Window, v.sinks = 4, v.window = 508; }));
    t.push_back(with(method("v10", "H2O",
                            "H2O: fp32 cache of the newest 256 tokens and the 256 heavy hitters (most attention "
                            "received)", kF32, kF32),
                     [](VersionSpec& v) { v.eviction = Eviction::HeavyHitters, v.window = 256, v.heavy = 256; }));
    t.push_back(with(method("v11", "MiniCache",
                            "MiniCache: fp32, the deeper half's layer pairs merged (SLERP directions, per-layer "
                            "norms), pairs more than 0.8 rad apart kept whole", kF32, kF32),
                     [](VersionSpec& v) { v.sharing = Sharing::Merge, v.share_from = -1, v.merge_angle = 0.8; }));
    return t;
  }();
  return table;
}

const VersionSpec& find_version(const std::string& name) {
  std::string known;
  for (const VersionSpec& v : versions()) {
    if (v.name == name) return v;
    known += (known.empty() ? "" : ", ") + v.name;
  }
  throw ValueError("unknown version '" + name + "' (known: " + known + ")");
}

int kv_storage_bits(KVStorage s) {
  switch (s) {
    case KVStorage::F32: return 32;
    case KVStorage::F16: return 16;
    case KVStorage::Int8: return 8;
    case KVStorage::Int4: return 4;
    case KVStorage::Int2: return 2;
  }
  return 0;
}

namespace {
template <class E>
struct Names {
  E value;
  const char* name;
};
constexpr Names<KVStorage> kStorages[] = {{KVStorage::F32, "fp32"}, {KVStorage::F16, "fp16"}, {KVStorage::Int8, "int8"},
                                          {KVStorage::Int4, "int4"}, {KVStorage::Int2, "int2"}};
constexpr Names<QuantAlong> kAlongs[] = {{QuantAlong::Token, "token"}, {QuantAlong::Channel, "channel"}};
constexpr Names<Eviction> kEvictions[] = {
    {Eviction::None, "none"}, {Eviction::Window, "window"}, {Eviction::HeavyHitters, "heavy_hitters"}};
constexpr Names<Sharing> kSharings[] = {{Sharing::None, "none"}, {Sharing::Reuse, "reuse"}, {Sharing::Merge, "merge"}};

template <class E, size_t N>
std::string name_of(const Names<E> (&names)[N], E value) {
  for (const auto& n : names)
    if (n.value == value) return n.name;
  return "?";
}
template <class E, size_t N>
E parse(const Names<E> (&names)[N], const std::string& name, const char* what) {
  std::string known;
  for (const auto& n : names) {
    if (name == n.name) return n.value;
    known += (known.empty() ? "" : ", ") + std::string(n.name);
  }
  throw ValueError(std::string("unknown ") + what + " '" + name + "' (expected " + known + ")");
}
}  // namespace

std::string storage_name(KVStorage s) { return name_of(kStorages, s); }
std::string along_name(QuantAlong a) { return name_of(kAlongs, a); }
std::string eviction_name(Eviction e) { return name_of(kEvictions, e); }
std::string sharing_name(Sharing s) { return name_of(kSharings, s); }
KVStorage parse_storage(const std::string& name) { return parse(kStorages, name, "KV storage"); }
QuantAlong parse_along(const std::string& name) { return parse(kAlongs, name, "quantization axis"); }
Eviction parse_eviction(const std::string& name) { return parse(kEvictions, name, "eviction policy"); }
Sharing parse_sharing(const std::string& name) { return parse(kSharings, name, "sharing"); }

std::string legacy_kv_dtype(const VersionSpec& v) { return v.use_cache ? storage_name(v.key.storage) : "none"; }

std::string legacy_kv_quant(const VersionSpec& v) {
  if (!v.use_cache || !v.key.quantized()) return "";
  return v.key.along == QuantAlong::Channel ? "per_channel_kivi" : "per_token";
}

namespace {
void check_quant(const KVQuant& q, const char* which, int64_t head_dim, int64_t residual) {
  const std::string what = std::string(which) + " ";
  if (!q.quantized()) {
    require(q.group == 0 && q.along == QuantAlong::Token,
            what + storage_name(q.storage) + " is not quantized: it takes no scale group or axis");
    return;
  }
  require(q.group >= 0, what + "group size must be >= 0, got " + std::to_string(q.group));
  if (q.asymmetric())
    require(q.group >= 1, what + storage_name(q.storage) + " needs a group size >= 1 (values per scale), got 0");
  if (q.along == QuantAlong::Token) {  // a group as large as the head or larger: the whole head
    require(q.group == 0 || q.group >= head_dim || head_dim % q.group == 0,
            what + "group size " + std::to_string(q.group) + " does not divide the head size " +
                std::to_string(head_dim));
  } else {
    require(q.group >= 1, what + "per-channel quantization needs a group size >= 1 (tokens per scale)");
    require(residual >= q.group && residual % q.group == 0,
            what + "per-channel groups of " + std::to_string(q.group) + " tokens need a residual window that is a "
                   "multiple of them (got " + std::to_string(residual) + ")");
  }
}
}  // namespace

void VersionSpec::validate(int64_t head_dim, int64_t layers, int64_t max_seq) const {
  const std::string v = "version '" + name + "': ";
  try {
    if (!use_cache) return;
    check_quant(key, "K", head_dim, residual);
    check_quant(value, "V", head_dim, residual);
    require(residual >= 0, "residual must be >= 0");
    require(residual == 0 || key.quantized() || value.quantized(), "a residual window needs a quantized K or V");
    require(sinks >= 0 && window >= 0 && heavy >= 0, "sinks, window and heavy must be >= 0");
    switch (eviction) {
      case Eviction::None:
        require(sinks == 0 && window == 0 && heavy == 0, "sinks, window and heavy need an eviction policy");
        break;
      case Eviction::Window:
        require(window >= 1 && heavy == 0, "window eviction keeps sinks and a window >= 1 (and no heavy hitters)");
        require(sinks <= window, "sinks (" + std::to_string(sinks) + ") must not exceed the window (" +
                                     std::to_string(window) + ")");
        break;
      case Eviction::HeavyHitters:
        require(window >= 1 && heavy >= 1 && sinks == 0,
                "heavy-hitter eviction keeps a window >= 1 and heavy >= 1 tokens (no sinks)");
        break;
    }
    if (eviction != Eviction::None) {
      require(budget() <= max_seq, "the tokens kept (" + std::to_string(budget()) + ") exceed the model's context (" +
                                       std::to_string(max_seq) + " positions)");
      require(residual == 0 && key.along == QuantAlong::Token && value.along == QuantAlong::Token,
              "eviction keeps or drops single tokens: it needs per-token storage without a residual window");
    }
    if (sharing != Sharing::None) {
      require(share_from == -1 || (share_from >= 0 && share_from % 2 == 0 && share_from < layers),
              "share_from must be an even layer below " + std::to_string(layers) + " (or -1: the deeper half)");
      require(eviction == Eviction::None, "cross-layer sharing and eviction do not combine");
    }
    if (sharing == Sharing::Merge) {
      require(!key.quantized() && !value.quantized(), "merging layers needs fp32 or fp16 storage");
      require(merge_angle > 0 && merge_angle <= M_PI, "merge_angle must be in (0, pi] radians");
    }
  } catch (const ValueError& e) {
    throw ValueError(v + e.what());
  }
}

}  // namespace celer
