// The KV cache's storage formats and the attention over it, against plain loops.
#include <cmath>
#include <cstdio>
#include <vector>

#include "backend/cpu/quant.h"
#include "backend/cpu/simd.h"
#include "backend/cpu/attention.h"
#include "harness.h"
#include "backend/cpu/kv_cache.h"
#include "core/kv_layout.h"
#include "core/versions.h"
#include "core/rng.h"

using namespace celer;

namespace {

// The cache layout of a registry version for `layers` model layers, rows, positions, heads.
KVLayout layout(const char* version, int64_t layers, int64_t rows, int64_t positions, int64_t kv_heads, int64_t D) {
  return KVLayout::make(find_version(version), layers, rows, positions, positions, kv_heads, D);
}

// Softmax attention of one query (D) over keys/values (T, D) with a visibility mask.
std::vector<double> naive_attention(const float* q, const std::vector<float>& k, const std::vector<float>& v,
                                    int64_t T, int64_t D, const std::vector<bool>& visible) {
  std::vector<double> p(size_t(T), 0.0), out(size_t(D), 0.0);
  double mx = -1e300, sum = 0;
  for (int64_t t = 0; t < T; ++t)
    if (visible[size_t(t)]) {
      double s = 0;
      for (int64_t d = 0; d < D; ++d) s += double(q[d]) * k[size_t(t * D + d)];
      p[size_t(t)] = s / std::sqrt(double(D));
      mx = std::max(mx, p[size_t(t)]);
    }
  for (int64_t t = 0; t < T; ++t) sum += visible[size_t(t)] ? (p[size_t(t)] = std::exp(p[size_t(t)] - mx)) : (p[size_t(t)] = 0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < D; ++d) out[size_t(d)] += sum > 0 ? p[size_t(t)] / sum * v[size_t(t * D + d)] : 0;
  return out;
}

// The largest |cache_attention - naive| over batch row 1 of 2: kvh KV heads, `group` query heads
// each, T keys of which every pad_every-th is padding (none for pad_every 0), queries at
// positions T - n .. T - 1.
// Batch row 0 was not asked for and must stay untouched (the sentinel check).
double attention_error(int64_t kvh, int64_t group, int64_t D, int64_t T, int64_t n, int64_t pad_every) {
  const int64_t p0 = T - n, Q = kvh * group * D;
  cpu::CpuKVCache cache(layout("v1", 1, 2, T, kvh, D));
  auto k = celer_test::random_floats(size_t(2 * T * kvh * D), 1, 3.0f), v = celer_test::random_floats(size_t(2 * T * kvh * D), 2);
  std::vector<uint8_t> valid(size_t(T), 1);
  for (int64_t t = 0; pad_every > 0 && t < T; t += pad_every) valid[size_t(t)] = 0;
  cache.write(0, 2, T, 0, k.data(), v.data(), valid.data(), 0);
  auto q = celer_test::random_floats(size_t(2 * n * Q), 3, 2.0f);
  std::vector<float> out(size_t(2 * n * Q), -5.0f);
  cpu::AttentionScratch scratch;
  scratch.reserve(n, group, D);
  for (int64_t h = 0; h < kvh; ++h) cpu::cache_attention(cache, 0, 1, h, group, D, q.data(), out.data(), Q, n, valid.data(), scratch);
  double worst = 0;
  for (int64_t h = 0; h < kvh; ++h) {
    std::vector<float> kh(size_t(T * D)), vh(size_t(T * D));  // this head's keys of row 1
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) {
        kh[size_t(t * D + d)] = k[size_t(((T + t) * kvh + h) * D + d)];
        vh[size_t(t * D + d)] = v[size_t(((T + t) * kvh + h) * D + d)];
      }
    for (int64_t g = 0; g < group; ++g)
      for (int64_t i = 0; i < n; ++i) {
        std::vector<bool> visible(static_cast<size_t>(T));
        for (int64_t t = 0; t < T; ++t) visible[size_t(t)] = t <= p0 + i && valid[size_t(t)];
        const float* qi = q.data() + (n + i) * Q + (h * group + g) * D;
        auto expected = naive_attention(qi, kh, vh, T, D, visible);
        for (int64_t d = 0; d < D; ++d)
          worst = std::max(worst, std::fabs(out[size_t((n + i) * Q + (h * group + g) * D + d)] - expected[size_t(d)]));
      }
  }
  for (int64_t i = 0; i < n * Q; ++i)
    if (out[size_t(i)] != -5.0f) return INFINITY;
  return worst;
}
}  // namespace

TEST(cache_attention_matches_naive_over_several_tiles) {
  // 2 KV heads, group 3, 600 keys (3 tiles), queries at positions 590..599, some keys padded.
  CHECK(attention_error(2, 3, 8, 600, 10, 7) < 1e-5);
}

// Every SIMD level against the naive loop: our own kernels at the avx512 level with head_dim %
// 16 == 0 and at the avx2 level with head_dim % 8 == 0, elsewhere Eigen's products (D = 20). Key counts that are not multiples of the kernels'
// 16-key blocks or of a tile, groups past one 8-head pass, padding or none. On failure the
// case is printed.
void check_attention_at_every_level(std::initializer_list<int64_t> dims, std::initializer_list<int64_t> groups,
                                    std::initializer_list<std::pair<int64_t, int64_t>> keys_and_queries) {
  const cpu::SimdLevel saved = cpu::simd_level();
  for (cpu::SimdLevel level : cpu::supported_simd_levels()) {
    cpu::set_simd_level(level);
    for (int64_t D : dims)
      for (int64_t group : groups)
        for (auto [T, n] : keys_and_queries)
          for (int64_t pad_every : {0, 5}) {
            const double error = attention_error(2, group, D, T, n, pad_every);
            if (!(error < 1e-5))
              std::printf("  %s D=%ld group=%ld T=%ld n=%ld pad_every=%ld: error %g\n", cpu::simd_name(level).c_str(),
                          long(D), long(group), long(T), long(n), long(pad_every), error);
            CHECK(error < 1e-5);
          }
  }
  cpu::set_simd_level(saved);
}

TEST(decode_attention_matches_naive_at_every_simd_level) {
  // One query per head.
  check_attention_at_every_level({16, 20, 24, 64, 80}, {1, 3, 8, 11}, {{1, 1}, {17, 1}, {300, 1}});
}

TEST(prefill_attention_matches_naive_at_every_simd_level) {
  // A whole prompt (n = T: the causal triangle, row blocks that see none of a key block), a
  // chunk after a cached prefix crossing a tile boundary (n = 37 at positions 263..299), and
  // a prompt of three tiles.
  check_attention_at_every_level({16, 20, 24, 64, 80}, {1, 3, 11}, {{40, 40}, {300, 37}});
  check_attention_at_every_level({64}, {3}, {{530, 530}});
}

TEST(cache_attention_gives_zeros_to_a_query_that_sees_nothing) {
  const int64_t D = 4;
  cpu::CpuKVCache cache(layout("v1", 1, 1, 4, 1, D));
  auto kv = celer_test::random_floats(size_t(3 * D), 4);
  std::vector<uint8_t> valid = {0, 0, 1};
  cache.write(0, 1, 3, 0, kv.data(), kv.data(), valid.data(), 3);
  std::vector<float> q(size_t(3 * D), 1.0f), out(size_t(3 * D), 9.0f);
  cpu::AttentionScratch scratch;
  scratch.reserve(3, 1, D);
  cpu::cache_attention(cache, 0, 0, 0, 1, D, q.data(), out.data(), D, 3, valid.data(), scratch);
  for (int64_t d = 0; d < 2 * D; ++d) CHECK(out[size_t(d)] == 0.0f);  // positions 0, 1 see only padding
  for (int64_t d = 0; d < D; ++d) CHECK_NEAR(out[size_t(2 * D + d)], kv[size_t(2 * D + d)], 1e-6);
}

TEST(int8_quantizer_error_is_at_most_half_a_step) {
  auto x = celer_test::random_floats(37, 5, 4.0f);
  std::vector<int8_t> q(37);
  const float scale = cpu::quantize_int8(x.data(), 37, 1, q.data());
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  CHECK(scale == amax / 127.0f);
  std::vector<float> back(37);
  cpu::dequantize_int8(q.data(), scale, 37, back.data());
  for (int i = 0; i < 37; ++i) CHECK(std::fabs(back[size_t(i)] - x[size_t(i)]) <= scale / 2 * 1.0001f);
  std::vector<float> zeros(5, 0.0f);
  CHECK(cpu::quantize_int8(zeros.data(), 5, 1, q.data()) == 0.0f && q[0] == 0);
  float ties[2] = {127.0f, 0.5f};  // scale 1: 0.5 rounds to even (0)
  cpu::quantize_int8(ties, 2, 1, q.data());
  CHECK(q[0] == 127 && q[1] == 0);
}

TEST(cache_storages_read_back_within_their_precision) {
  const int64_t kvh = 2, D = 16, T = 70;
  auto k = celer_test::random_floats(size_t(T * kvh * D), 6, 2.0f), v = celer_test::random_floats(size_t(T * kvh * D), 7);
  std::vector<float> kt(size_t(T * D)), vt(size_t(T * D));
  const std::vector<uint8_t> valid(80, 1);
  for (const char* version : {"v1", "v5", "v2", "v6"}) {
    cpu::CpuKVCache cache(layout(version, 1, 1, 80, kvh, D));
    for (int64_t t = 0; t < T; ++t)
      cache.write(0, 1, 1, t, k.data() + t * kvh * D, v.data() + t * kvh * D, valid.data(), 0);
    auto rows = cache.read(0, 0, 1, 0, T, kt.data(), vt.data());
    double worst = 0, recent_worst = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) {
        const double e = std::fabs(rows.k[t * D + d] - k[size_t((t * kvh + 1) * D + d)]);
        worst = std::max(worst, e);
        if (t >= 64) recent_worst = std::max(recent_worst, e);
      }
    const std::string name = version;
    const double bound = name == "v1" ? 0 : name == "v5" ? 2.0 / 2048 : 2.0 / 127;
    if (!(worst <= bound)) std::printf("  %s: worst %g, bound %g\n", version, worst, bound);
    CHECK(worst <= bound);
    if (name == "v6") CHECK(recent_worst == 0.0);  // positions 64..69: the fp32 window
    if (name != "v1") CHECK(worst > 0);
  }
}

TEST(cache_bytes_follow_the_storage_formulas) {
  const int64_t layers = 3, rows = 2, kvh = 4, D = 64, T = 100;
  const uint64_t slots = layers * rows * kvh;
  auto bytes = [&](const char* version) { return layout(version, layers, rows, 128, kvh, D).bytes_for(T, rows); };
  CHECK(bytes("v1") == slots * T * D * 4 * 2);
  CHECK(bytes("v5") == slots * T * D * 2 * 2);
  CHECK(bytes("v2") == slots * T * (D + 4) * 2);
  // 3 full blocks of 32 (K: int8 + per-channel scales; V: int8 + per-token scales), 4 fp32 recent
  CHECK(bytes("v6") == slots * (3 * (32 * D + 4 * D) + 3 * 32 * (D + 4) + 4 * D * 4 * 2));
}

// KIVI's low-bit storages: K per channel over 32 tokens, V per token over 32 channels, the
// newest tokens (up to the residual window) exact. Asymmetric rounding errs by at most half a
// step: (max - min) / (2^bits - 1) / 2 of each group.
TEST(kivi_low_bit_storages_read_back_within_half_a_step) {
  const int64_t kvh = 1, D = 64, T = 300;
  auto k = celer_test::random_floats(size_t(T * D), 8, 2.0f), v = celer_test::random_floats(size_t(T * D), 9);
  const std::vector<uint8_t> valid(size_t(T), 1);
  for (auto [version, levels] : {std::pair{"v7", 15.0}, std::pair{"v8", 3.0}}) {
    cpu::CpuKVCache cache(layout(version, 1, 1, T, kvh, D));
    for (int64_t t = 0; t < T; ++t) cache.write(0, 1, 1, t, k.data() + t * D, v.data() + t * D, valid.data(), 0);
    std::vector<float> kt(size_t(T * D)), vt(size_t(T * D));
    auto rows = cache.read(0, 0, 0, 0, T, kt.data(), vt.data());
    const int64_t quantized = T - T % 128;  // 256: two residual windows flushed; 44 newest exact
    bool within = true, recent_exact = true, some_error = false;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) {
        const float ek = std::fabs(rows.k[t * D + d] - k[size_t(t * D + d)]);
        const float ev = std::fabs(rows.v[t * D + d] - v[size_t(t * D + d)]);
        if (t >= quantized) {
          recent_exact = recent_exact && ek == 0 && ev == 0;
          continue;
        }
        // K's group: channel d over tokens [t - t % 32, +32); V's: channels [d - d % 32, +32) of token t
        float klo = 1e9f, khi = -1e9f, vlo = 1e9f, vhi = -1e9f;
        for (int64_t u = t - t % 32; u < t - t % 32 + 32; ++u) klo = std::min(klo, k[size_t(u * D + d)]), khi = std::max(khi, k[size_t(u * D + d)]);
        for (int64_t c = d - d % 32; c < d - d % 32 + 32; ++c) vlo = std::min(vlo, v[size_t(t * D + c)]), vhi = std::max(vhi, v[size_t(t * D + c)]);
        within = within && ek <= (khi - klo) / levels / 2 * 1.001f + 1e-6f && ev <= (vhi - vlo) / levels / 2 * 1.001f + 1e-6f;
        some_error = some_error || ek > 0;
      }
    CHECK(within && recent_exact && some_error);
    // bytes: 2 flushed windows of 4 groups; K per channel 32 tokens x bits + scale and min per
    // channel and group; V per token D x bits + 2 groups of scale and min; 44 fp32 tokens each
    const uint64_t bits = version == std::string("v7") ? 4 : 2;
    const uint64_t K = 8 * D * (32 * bits / 8 + 8), V = 256 * (D * bits / 8 + 2 * 8), fp = 44 * D * 4 * 2;
    CHECK(cache.bytes(1) == K + V + fp);
  }
}

// Eviction keeps, per (row, head), the sinks and the newest window (StreamingLLM), or the newest
// window and the tokens with the most attention received (H2O), in position order.
TEST(eviction_keeps_what_its_policy_says) {
  const int64_t D = 4, T = 40;
  auto x = celer_test::random_floats(size_t(T * D), 10);
  const std::vector<uint8_t> valid(size_t(T), 1);
  VersionSpec window = find_version("v1");
  window.eviction = Eviction::Window, window.sinks = 3, window.window = 10;
  cpu::CpuKVCache w(KVLayout::make(window, 1, 1, T, 1, 1, D));
  for (int64_t t = 0; t < T; ++t) {
    w.write(0, 1, 1, t, x.data() + t * D, x.data() + t * D, valid.data(), 0);
    w.end_layer(0, 1);
  }
  std::vector<float> kt(size_t(13 * D)), vt(size_t(13 * D));
  CHECK(w.view(0, 0, 0).count == 13);
  auto rows = w.read(0, 0, 0, 0, 13, kt.data(), vt.data());
  for (int64_t j = 0; j < 13; ++j) {
    const int64_t position = j < 3 ? j : T - 10 + (j - 3);
    for (int64_t d = 0; d < D; ++d) CHECK(rows.k[j * D + d] == x[size_t(position * D + d)]);
  }
  CHECK(w.bytes(1) == uint64_t(13 * D * 4 * 2));

  VersionSpec heavy = find_version("v1");
  heavy.eviction = Eviction::HeavyHitters, heavy.window = 4, heavy.heavy = 3;
  cpu::CpuKVCache h(KVLayout::make(heavy, 1, 1, T, 10, 1, D));
  // Write 10 tokens, give positions 2, 5 and 7 the most attention, then one more step evicts.
  h.write(0, 1, 10, 0, x.data(), x.data(), valid.data(), 0);
  float* scores = h.view(0, 0, 0).scores;
  for (int64_t t = 0; t < 10; ++t) scores[t] = t == 2 ? 5.0f : t == 5 ? 4.0f : t == 7 ? 3.0f : 0.1f;
  h.end_layer(0, 1);  // 10 > 7: keep 2, 5 (7 is in the newest 4: 6..9) and the next best, 0
  CHECK(h.view(0, 0, 0).count == 7);
  auto kept = h.read(0, 0, 0, 0, 7, kt.data(), vt.data());
  const int64_t expect[] = {0, 2, 5, 6, 7, 8, 9};
  for (int64_t j = 0; j < 7; ++j) CHECK(kept.k[j * D] == x[size_t(expect[j] * D)]);
}

// MiniCache: a pair's merged token keeps each layer's norm and the SLERP midpoint direction; a
// pair further apart than the angle is kept whole.
TEST(merged_pairs_keep_norms_and_midpoint_directions) {
  VersionSpec merge = find_version("v11");
  merge.share_from = 0;
  merge.merge_angle = 1.0;
  const int64_t D = 4;
  cpu::CpuKVCache c(KVLayout::make(merge, 2, 1, 8, 2, 1, D));
  const std::vector<uint8_t> valid(8, 1);
  const float a[2 * D] = {3, 0, 0, 0, 1, 0, 0, 0};      // the first layer's K of tokens 0 and 1
  const float b[2 * D] = {0, 2, 0, 0, -1, 0, 0.1f, 0};  // the second's: 90 and ~174 degrees away
  const float a2[2 * D] = {1, 1, 0, 0, 2, 0, 0, 0};
  const float b2[2 * D] = {1, 0.8f, 0, 0, 2, 0.2f, 0, 0};
  c.write(0, 1, 2, 0, a2, a2, valid.data(), 0);
  std::vector<float> kt(2 * D), vt(2 * D);
  auto own = c.read(0, 0, 0, 0, 2, kt.data(), vt.data());  // before the second layer: its own values
  for (int64_t i = 0; i < 2 * D; ++i) CHECK(own.k[i] == a2[i]);
  c.write(1, 1, 2, 0, b2, b2, valid.data(), 0);
  for (int64_t layer : {0, 1}) {
    auto r = c.read(layer, 0, 0, 0, 2, kt.data(), vt.data());
    const float* src = layer == 0 ? a2 : b2;
    for (int64_t t = 0; t < 2; ++t) {
      double norm = 0, got = 0, dot = 0;
      for (int64_t d = 0; d < D; ++d) norm += double(src[t * D + d]) * src[t * D + d], got += double(r.k[t * D + d]) * r.k[t * D + d];
      CHECK_NEAR(std::sqrt(got), std::sqrt(norm), 1e-5);  // the layer's own norm
      // the direction is the normalized sum of the two unit vectors
      double ua = 0, ub = 0;
      for (int64_t d = 0; d < D; ++d) ua += double(a2[t * D + d]) * a2[t * D + d], ub += double(b2[t * D + d]) * b2[t * D + d];
      std::vector<double> mid(D);
      double nm = 0;
      for (int64_t d = 0; d < D; ++d) mid[size_t(d)] = a2[t * D + d] / std::sqrt(ua) + b2[t * D + d] / std::sqrt(ub), nm += mid[size_t(d)] * mid[size_t(d)];
      for (int64_t d = 0; d < D; ++d) dot += r.k[t * D + d] / std::sqrt(got) * mid[size_t(d)] / std::sqrt(nm);
      CHECK_NEAR(dot, 1.0, 1e-5);
    }
  }
  // 1 storage layer, 2 tokens: direction (D floats) + two norms, for K and for V
  CHECK(c.bytes(1) == uint64_t(2 * 2 * (D * 4 + 8)));
  // Tokens far apart are kept whole: 90 degrees > 1 rad.
  c.clear();
  c.write(0, 1, 2, 0, a, a, valid.data(), 0);
  c.write(1, 1, 2, 0, b, b, valid.data(), 0);
  auto r1 = c.read(1, 0, 0, 0, 2, kt.data(), vt.data());
  for (int64_t i = 0; i < D; ++i) CHECK(r1.k[i] == b[i]);  // token 0 retained: exact
  CHECK(c.bytes(1) > uint64_t(2 * 2 * (D * 4 + 8)));
}
