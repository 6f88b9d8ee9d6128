#include "core/versions.h"

#include "core/error.h"

namespace celer {

const std::vector<VersionSpec>& versions() {
  static const std::vector<VersionSpec> table = {
      {"v0", "no cache: recompute the whole sequence each step (O(T^2))", KVStorage::None, false},
      {"v1", "KV cache, fp32", KVStorage::F32, false},
      {"v2", "KV cache, INT8 per token and head (float scale over head_dim)", KVStorage::Int8Token, false},
      {"v3", "KV cache, fp32, cross-layer sharing (odd layers reuse the even layer's K/V)", KVStorage::F32, true},
      {"v4", "KV cache, INT8 per token and head + cross-layer sharing", KVStorage::Int8Token, true},
      {"v5", "KV cache, fp16 (llama.cpp's default cache type)", KVStorage::F16, false},
      {"v6", "KV cache, INT8 KIVI-style: K per channel over 32-token blocks, V per token, "
             "recent unfinished block in fp32", KVStorage::Int8Channel, false},
  };
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

std::string storage_name(KVStorage s) {
  switch (s) {
    case KVStorage::None: return "none";
    case KVStorage::F32: return "fp32";
    case KVStorage::F16: return "fp16";
    case KVStorage::Int8Token: case KVStorage::Int8Channel: return "int8";
  }
  return "?";
}

std::string quant_name(KVStorage s) {
  if (s == KVStorage::Int8Token) return "per_token";
  if (s == KVStorage::Int8Channel) return "per_channel_kivi";
  return "";
}

}  // namespace celer
