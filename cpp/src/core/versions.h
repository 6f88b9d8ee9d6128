// The versions registry: every KV-cache method the engine runs, as orthogonal settings in one
// table (versions.cpp). A method is one line there: how K and V are stored (bits, scale groups
// along tokens or channels), a full-precision residual window, attention sinks and an eviction
// policy, and a cross-layer sharing map. The engine, the bindings (celerinfer.versions()), the
// CLI, the memory accounting and the benchmarks read the table; v0-v6 keep their names.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace celer {

// How the elements of K or V are stored. Int8 is symmetric (scale = max|x| / 127, q in
// [-127, 127]); Int4 and Int2 are asymmetric, as KIVI quantizes (min and scale = (max - min) /
// (2^bits - 1) per group, q in [0, 2^bits - 1]). Scales and minimums are float32.
enum class KVStorage { F32, F16, Int8, Int4, Int2 };
int kv_storage_bits(KVStorage storage);  // 32, 16, 8, 4, 2

// Which values share one scale: along one token's channels (per token: `group` channels of a
// head; 0, or a group as large as the head, for the whole head), or along one channel's tokens
// (per channel: `group` tokens).
enum class QuantAlong { Token, Channel };

struct KVQuant {
  KVStorage storage = KVStorage::F32;
  QuantAlong along = QuantAlong::Token;
  int64_t group = 0;
  bool quantized() const { return storage != KVStorage::F32 && storage != KVStorage::F16; }
  bool asymmetric() const { return storage == KVStorage::Int4 || storage == KVStorage::Int2; }
};

// Which tokens a cache keeps once it holds more than its budget (after each step; the newest
// step's tokens are always attended first):
//   Window        the first `sinks` tokens and the newest `window` (StreamingLLM);
//   HeavyHitters  the newest `window` and the `heavy` others with the largest attention received
//                 so far, summed over queries and the query heads of the KV head (H2O).
enum class Eviction { None, Window, HeavyHitters };

// Cross-layer sharing of the layer pairs (l, l + 1), l even and >= share_from:
//   Reuse  the odd layer attends over the even layer's K/V (it computes none of its own);
//   Merge  both compute K/V; each token's pair is stored as one direction, the SLERP midpoint of
//          the two unit vectors, and each layer's norm; a pair whose directions differ by more
//          than merge_angle (radians) is kept unmerged (MiniCache's retention).
enum class Sharing { None, Reuse, Merge };

struct VersionSpec {
  std::string name;         // "v0" ... : what users type
  std::string method;       // a short label for tables and plots ("fp32", "KIVI-4", "H2O", ...)
  std::string description;
  bool use_cache = true;    // false: recompute the whole sequence each step (v0)
  KVQuant key, value;
  int64_t residual = 0;     // the newest tokens stay float32 until `residual` of them are quantized
                            // together (KIVI's R; a multiple of a per-channel group)
  Eviction eviction = Eviction::None;
  int64_t sinks = 0, window = 0, heavy = 0;
  Sharing sharing = Sharing::None;
  int64_t share_from = 0;   // the first layer of the shared pairs (even; -1: the deeper half)
  double merge_angle = 0;   // Merge: the retention threshold

  // Tokens a cache with eviction keeps after a step (0: no eviction, it keeps them all).
  int64_t budget() const { return eviction == Eviction::None ? 0 : sinks + window + heavy; }
  // The first layer of the shared pairs in a model of `layers` layers (-1: half of them, even).
  int64_t first_shared_layer(int64_t layers) const { return share_from >= 0 ? share_from : layers / 2 / 2 * 2; }
  // Whether model layer l is the odd member of a shared pair (l - 1, l).
  bool shared_odd_layer(int64_t l, int64_t layers) const {
    const int64_t first = first_shared_layer(layers);
    return sharing != Sharing::None && l > first && (l - first) % 2 == 1;
  }
  // Whether the spec is consistent, and fits a model of `layers` layers with heads of head_dim
  // and a context of max_seq positions (an eviction budget must fit it; an engine shorter than
  // the budget simply never evicts). ValueError naming the setting otherwise.
  void validate(int64_t head_dim, int64_t layers, int64_t max_seq) const;
};

const std::vector<VersionSpec>& versions();
// The spec of `name`; ValueError listing the known versions when there is none.
const VersionSpec& find_version(const std::string& name);

std::string storage_name(KVStorage storage);  // "fp32", "fp16", "int8", "int4", "int2"
std::string along_name(QuantAlong along);     // "token", "channel"
std::string eviction_name(Eviction eviction); // "none", "window", "heavy_hitters"
std::string sharing_name(Sharing sharing);    // "none", "reuse", "merge"
KVStorage parse_storage(const std::string& name);
QuantAlong parse_along(const std::string& name);
Eviction parse_eviction(const std::string& name);
Sharing parse_sharing(const std::string& name);

// Values of the original registry's flags, for records and plots made before the knobs:
// the version's kv_dtype (K's storage, "none" without a cache) and kv_quant ("",
// "per_token", "per_channel_kivi").
std::string legacy_kv_dtype(const VersionSpec& v);
std::string legacy_kv_quant(const VersionSpec& v);

}  // namespace celer
