// The KV cache's storage formats and the attention over it, against plain loops.
#include <cmath>
#include <cstdio>
#include <vector>

#include "backend/cpu/quant.h"
#include "backend/cpu/simd.h"
#include "backend/cpu/attention.h"
#include "harness.h"
#include "backend/cpu/kv_cache.h"
#include "core/rng.h"

using namespace celer;

namespace {

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
  cpu::CpuKVCache cache({KVStorage::F32, 1, 2, T, kvh, D});
  auto k = celer_test::random_floats(size_t(2 * T * kvh * D), 1, 3.0f), v = celer_test::random_floats(size_t(2 * T * kvh * D), 2);
  cache.write(0, 2, T, 0, k.data(), v.data());
  std::vector<uint8_t> valid(size_t(T), 1);
  for (int64_t t = 0; pad_every > 0 && t < T; t += pad_every) valid[size_t(t)] = 0;
  auto q = celer_test::random_floats(size_t(2 * n * Q), 3, 2.0f);
  std::vector<float> out(size_t(2 * n * Q), -5.0f);
  cpu::AttentionScratch scratch;
  scratch.reserve(n, group, D);
  for (int64_t h = 0; h < kvh; ++h) cpu::cache_attention(cache, 0, 1, h, group, D, q.data(), out.data(), Q, n, p0, valid.data(), scratch);
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

// Every SIMD level against the naive loop: at the avx512 level with head_dim % 16 == 0 our own
// kernels run, elsewhere Eigen's products. Key counts that are not multiples of the kernels'
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
  check_attention_at_every_level({16, 24, 64, 80}, {1, 3, 8, 11}, {{1, 1}, {17, 1}, {300, 1}});
}

TEST(prefill_attention_matches_naive_at_every_simd_level) {
  // A whole prompt (n = T: the causal triangle, row blocks that see none of a key block), a
  // chunk after a cached prefix crossing a tile boundary (n = 37 at positions 263..299), and
  // a prompt of three tiles.
  check_attention_at_every_level({16, 24, 64, 80}, {1, 3, 11}, {{40, 40}, {300, 37}});
  check_attention_at_every_level({64}, {3}, {{530, 530}});
}

TEST(cache_attention_gives_zeros_to_a_query_that_sees_nothing) {
  const int64_t D = 4;
  cpu::CpuKVCache cache({KVStorage::F32, 1, 1, 4, 1, D});
  auto kv = celer_test::random_floats(size_t(3 * D), 4);
  cache.write(0, 1, 3, 0, kv.data(), kv.data());
  std::vector<uint8_t> valid = {0, 0, 1};
  std::vector<float> q(size_t(3 * D), 1.0f), out(size_t(3 * D), 9.0f);
  cpu::AttentionScratch scratch;
  scratch.reserve(3, 1, D);
  cpu::cache_attention(cache, 0, 0, 0, 1, D, q.data(), out.data(), D, 3, 0, valid.data(), scratch);
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
  for (KVStorage s : {KVStorage::F32, KVStorage::F16, KVStorage::Int8Token, KVStorage::Int8Channel}) {
    cpu::CpuKVCache cache({s, 1, 1, 80, kvh, D});
    for (int64_t t = 0; t < T; ++t) cache.write(0, 1, 1, t, k.data() + t * kvh * D, v.data() + t * kvh * D);
    auto rows = cache.read(0, 0, 1, 0, T, kt.data(), vt.data());
    double worst = 0, recent_worst = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) {
        const double e = std::fabs(rows.k[t * D + d] - k[size_t((t * kvh + 1) * D + d)]);
        worst = std::max(worst, e);
        if (t >= 64) recent_worst = std::max(recent_worst, e);
      }
    const double bound = s == KVStorage::F32 ? 0 : s == KVStorage::F16 ? 2.0 / 2048 : 2.0 / 127;
    CHECK(worst <= bound);
    if (s == KVStorage::Int8Channel) CHECK(recent_worst == 0.0);  // positions 64..69: the fp32 window
    if (s != KVStorage::F32) CHECK(worst > 0);
  }
}

TEST(cache_bytes_follow_the_storage_formulas) {
  const int64_t layers = 3, rows = 2, kvh = 4, D = 64, T = 100;
  const uint64_t slots = layers * rows * kvh;
  auto bytes = [&](KVStorage s) {
    cpu::CpuKVCache c({s, layers, rows, 128, kvh, D});
    return c.bytes_for(T, rows);
  };
  CHECK(bytes(KVStorage::F32) == slots * T * D * 4 * 2);
  CHECK(bytes(KVStorage::F16) == slots * T * D * 2 * 2);
  CHECK(bytes(KVStorage::Int8Token) == slots * T * (D + 4) * 2);
  // 3 full blocks of 32 (K: int8 + per-channel scales; V: int8 + per-token scales), 4 fp32 recent
  CHECK(bytes(KVStorage::Int8Channel) == slots * (3 * (32 * D + 4 * D) + 3 * 32 * (D + 4) + 4 * D * 4 * 2));
}
