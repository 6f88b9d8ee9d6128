// Each CPU kernel against a plain loop written here, on sizes that are not multiples of the
// vector width or the thread block.
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backend/cpu/ops.h"
#include "core/config.h"
#include "core/error.h"
#include "harness.h"
#include "core/model.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "backend/cpu/threadpool.h"

using namespace celer;


TEST(matmul_matches_naive_on_odd_sizes) {
  for (auto [M, K, N] : {std::tuple{1, 7, 5}, {3, 33, 17}, {17, 64, 130}, {5, 129, 1}}) {
    auto x = celer_test::random_floats(size_t(M * K), 1), w = celer_test::random_floats(size_t(N * K), 2);
    std::vector<float> fast(size_t(M * N)), slow(size_t(M * N));
    cpu::matmul_nt(fast.data(), x.data(), w.data(), M, K, N);
    cpu::matmul_nt_naive(slow.data(), x.data(), w.data(), M, K, N);
    for (size_t i = 0; i < fast.size(); ++i) CHECK_NEAR(fast[i], slow[i], 1e-5);
    // accumulate adds onto what is there
    cpu::matmul_nt(fast.data(), x.data(), w.data(), M, K, N, true);
    for (size_t i = 0; i < fast.size(); ++i) CHECK_NEAR(fast[i], 2 * slow[i], 1e-5);
  }
}

TEST(rmsnorm_matches_formula) {
  const int rows = 3, H = 37;
  auto x = celer_test::random_floats(rows * H, 3, 4.0f), w = celer_test::random_floats(H, 4);
  std::vector<float> out(rows * H);
  cpu::rmsnorm(out.data(), x.data(), w.data(), rows, H, 1e-5f);
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < H; ++i) ss += double(x[r * H + i]) * x[r * H + i];
    double inv = 1.0 / std::sqrt(ss / H + 1e-5);
    for (int i = 0; i < H; ++i) CHECK_NEAR(out[r * H + i], x[r * H + i] * inv * w[i], 1e-5);
  }
}

TEST(rope_rotates_pairs_by_the_table_angles) {
  ModelConfig c;
  c.hidden_size = 24;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.resolve();
  Tensor cos, sin;
  rope_tables(c, cos, sin);
  const int64_t D = c.head_dim(), heads = 2, rows = 3;
  std::vector<int64_t> pos = {0, 5, 77};
  auto x = celer_test::random_floats(size_t(rows * heads * D), 5);
  auto y = x;
  cpu::rope(y.data(), rows, heads, D, pos.data(), cos.f32(), sin.f32());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < D / 2; ++i) {
        const double theta = pos[r] / std::pow(c.rope_theta, 2.0 * i / D);
        const float* a = &x[(r * heads + h) * D];
        const float* b = &y[(r * heads + h) * D];
        CHECK_NEAR(b[i], a[i] * std::cos(theta) - a[i + D / 2] * std::sin(theta), 1e-4);
        CHECK_NEAR(b[i + D / 2], a[i + D / 2] * std::cos(theta) + a[i] * std::sin(theta), 1e-4);
      }
}

TEST(swiglu_matches_formula) {
  auto g = celer_test::random_floats(19, 9, 5.0f), u = celer_test::random_floats(19, 10);
  std::vector<float> out(19);
  cpu::swiglu(out.data(), g.data(), u.data(), 19);
  for (int i = 0; i < 19; ++i) CHECK_NEAR(out[i], g[i] / (1 + std::exp(-double(g[i]))) * u[i], 1e-6);
}

TEST(thread_pool_covers_each_index_once_and_rethrows) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1001);
  pool.parallel_for(1001, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) hits[size_t(i)]++;
  });
  bool once = true;
  for (auto& h : hits) once = once && h.load() == 1;
  CHECK(once);
  CHECK_THROWS(std::runtime_error, pool.parallel_for(100, [](int64_t a, int64_t) {
                 if (a > 0) throw std::runtime_error("worker failed");
               }));
  int nested = 0;  // a nested call runs inline instead of deadlocking
  pool.parallel_for(2, [&](int64_t, int64_t) { pool.parallel_for(4, [&](int64_t a, int64_t b) { (void)a, (void)b; }); });
  CHECK(nested == 0);
}

// Chunks are claimed, not assigned: over many calls of every size, beside a thread that keeps
// the cores busy (so workers are descheduled mid-call), each index still runs exactly once,
// chunks keep their boundaries whoever runs them, and a thread index stays in range.
TEST(thread_pool_claims_every_chunk_once_when_workers_are_descheduled) {
  ThreadPool pool(4);
  std::atomic<bool> stop{false};
  std::vector<std::thread> hogs;
  for (int i = 0; i < 2; ++i)
    hogs.emplace_back([&] {
      volatile uint64_t x = 0;
      while (!stop.load(std::memory_order_relaxed)) x = x + 1;
    });
  bool once = true, in_range = true, boundaries = true;
  for (int call = 0; call < 1000; ++call) {
    const int64_t n = 1 + (call * 37) % 97;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    const int64_t chunk = (n + std::min<int64_t>(4, n) - 1) / std::min<int64_t>(4, n);
    pool.parallel_for_threads(n, [&](int64_t a, int64_t b, int thread) {
      in_range = in_range && thread >= 0 && thread < 4;
      boundaries = boundaries && a % chunk == 0 && (b == n || b - a == chunk);
      for (int64_t i = a; i < b; ++i) hits[size_t(i)]++;
    });
    for (auto& h : hits) once = once && h.load() == 1;
  }
  stop = true;
  for (auto& t : hogs) t.join();
  CHECK(once);
  CHECK(in_range);
  CHECK(boundaries);
}

TEST(random_model_is_deterministic_and_seed_dependent) {
  ModelConfig c;
  Model a = random_model(c, 7), b = random_model(c, 7), d = random_model(c, 8);
  auto sa = weight_slots(a), sb = weight_slots(b), sd = weight_slots(d);
  bool same = true, differs = false;
  for (size_t i = 0; i < sa.size(); ++i) {
    same = same && std::memcmp(sa[i].tensor->data, sb[i].tensor->data, sa[i].tensor->nbytes()) == 0;
    differs = differs || std::memcmp(sa[i].tensor->data, sd[i].tensor->data, sa[i].tensor->nbytes()) != 0;
  }
  CHECK(same);
  CHECK(differs);
  // A fixed value pins the generator itself: changing the RNG would change every saved model.
  SplitMix64 rng(0);
  CHECK(rng.next() == 0xE220A8397B1DCDAFull);
}

TEST(config_validation_names_the_field) {
  auto bad = [](auto edit) {
    ModelConfig c;
    edit(c);
    c.resolve();
  };
  CHECK_THROWS(ValueError, bad([](ModelConfig& c) { c.hidden_size = 0; }));
  CHECK_THROWS(ValueError, bad([](ModelConfig& c) { c.num_attention_heads = 3; }));  // 64 % 3
  CHECK_THROWS(ValueError, bad([](ModelConfig& c) { c.num_key_value_heads = 3; }));  // 8 % 3
  CHECK_THROWS(ValueError, bad([](ModelConfig& c) { c.rms_norm_eps = -1; }));
  CHECK_THROWS(ValueError, bad([](ModelConfig& c) { c.architecture = "mamba"; }));
  ModelConfig c;
  c.resolve();
  CHECK(c.intermediate_size == 256);  // the seed rule: 64*4 rounded to 64
  c.hidden_size = 100;
  c.num_attention_heads = 10;
  c.num_key_value_heads = 5;
  c.intermediate_size = 0;
  c.resolve();
  CHECK(c.intermediate_size == 448);  // 400 -> 448
}

TEST(half_conversions_round_trip_every_value) {
  int f16_bad = 0, bf16_bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(uint16_t(h)), b = bf16_to_f32(uint16_t(h));
    if (!std::isnan(f) && f32_to_f16(f) != h) ++f16_bad;
    if (!std::isnan(b) && f32_to_bf16(b) != h) ++bf16_bad;
  }
  CHECK(f16_bad == 0);
  CHECK(bf16_bad == 0);
  CHECK(f16_to_f32(0x3c00) == 1.0f && f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // 1, smallest subnormal
  CHECK(f32_to_f16(65520.0f) == 0x7c00 && f32_to_f16(65519.0f) == 0x7bff);         // overflow edge
  CHECK(f32_to_bf16(1.00390625f) == 0x3f80);  // a tie rounds to even
}
