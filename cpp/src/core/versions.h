// The versions registry: every KV-cache strategy the engine runs, in one table. The engine,
// the bindings (celerinfer.versions()), the CLI and the benchmarks all read this table;
// adding a version is one entry in versions.cpp.
#pragma once
#include <string>
#include <vector>

namespace celer {

// How the cache stores K and V.
enum class KVStorage {
  None,         // no cache: the whole sequence is recomputed every step
  F32,          // the compute dtype
  F16,          // IEEE half, round to nearest even
  Int8Token,    // int8, one float scale per (token, kv head) over head_dim, for K and V
  Int8Channel,  // KIVI-style: K int8 per channel over blocks of kivi_block tokens, V int8 per
                // token; the tokens of the unfinished block stay float32 (the recent window)
};

struct VersionSpec {
  std::string name;
  std::string description;
  KVStorage storage = KVStorage::F32;
  bool cross_layer_sharing = false;  // odd layer l attends over layer l-1's cache

  bool use_cache() const { return storage != KVStorage::None; }
};

// Tokens per K quantization block (and recent full-precision window) of Int8Channel.
constexpr int kKiviBlock = 32;

const std::vector<VersionSpec>& versions();
// The spec of `name`; ValueError listing the known versions when there is none.
const VersionSpec& find_version(const std::string& name);

std::string storage_name(KVStorage storage);  // "none", "fp32", "fp16", "int8", "int8"
std::string quant_name(KVStorage storage);    // "", "", "", "per_token", "per_channel_kivi"

}  // namespace celer
