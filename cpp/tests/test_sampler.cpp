// The sampler: greedy and its ties, top-k = 1 equals greedy, the direction of the repetition
// penalty, parameter and input checks, determinism of the seeded streams.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "harness.h"
#include "core/rng.h"
#include "engine/sampler.h"

using namespace celer;

namespace {
std::vector<float> random_logits(size_t n, uint64_t seed, float scale = 3.0f) {
  return celer_test::random_floats(n, seed, scale);
}
int64_t naive_argmax(const std::vector<float>& v) {
  int64_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[size_t(best)]) best = int64_t(i);
  return best;
}
SamplingParams greedy() { return SamplingParams{}; }
SamplingParams with_temperature(double t) {
  SamplingParams p;
  p.temperature = t;
  return p;
}
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

TEST(sampler_greedy_is_argmax) {
  Sampler s(1000, 1, 7);
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto logits = random_logits(1000, seed);
    CHECK(s.sample(0, logits.data(), nullptr, nullptr, 0, greedy()) == naive_argmax(logits));
  }
}

TEST(sampler_greedy_ties_go_to_the_lowest_id) {
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 2.0f, 1.0f};
  Sampler s(int64_t(logits.size()), 1, 0);
  CHECK(s.sample(0, logits.data(), nullptr, nullptr, 0, greedy()) == 1);
  // All equal: token 0.
  std::vector<float> flat(9, 0.25f);
  Sampler f(9, 1, 0);
  CHECK(f.sample(0, flat.data(), nullptr, nullptr, 0, greedy()) == 0);
  // A tie created by the penalty (4 / 2 = 2, token 0 has 2): the lower id, 0, wins.
  std::vector<float> l2 = {2.0f, 1.0f, 4.0f};
  Sampler s2(3, 1, 0);
  const int64_t hist[] = {2};
  SamplingParams p = greedy();
  p.repetition_penalty = 2.0;
  CHECK(s2.sample(0, l2.data(), hist, nullptr, 1, p) == 0);
  // ... and the other way round (token 2 unpenalised at 2, token 0 penalised 4 -> 2): 0 still wins.
  std::vector<float> l3 = {4.0f, 1.0f, 2.0f};
  const int64_t hist0[] = {0};
  CHECK(s2.sample(0, l3.data(), hist0, nullptr, 1, p) == 0);
}

TEST(sampler_greedy_handles_infinities) {
  std::vector<float> logits = {kNegInf, 1.0f, std::numeric_limits<float>::infinity(), 3.0f};
  Sampler s(4, 1, 0);
  CHECK(s.sample(0, logits.data(), nullptr, nullptr, 0, greedy()) == 2);
  std::vector<float> impossible = {kNegInf, kNegInf, kNegInf, kNegInf};
  CHECK_THROWS(ValueError, s.sample(0, impossible.data(), nullptr, nullptr, 0, greedy()));
  CHECK_THROWS(ValueError, s.sample(0, impossible.data(), nullptr, nullptr, 0, with_temperature(1.0)));
  // One possible token: always that one, greedy or not.
  impossible[3] = -50.0f;
  CHECK(s.sample(0, impossible.data(), nullptr, nullptr, 0, greedy()) == 3);
  for (int i = 0; i < 50; ++i) CHECK(s.sample(0, impossible.data(), nullptr, nullptr, 0, with_temperature(2.0)) == 3);
}

TEST(sampler_top_k_1_is_greedy) {
  Sampler s(513, 2, 11);
  SamplingParams p = with_temperature(1.5);
  p.top_k = 1;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto logits = random_logits(513, seed, 0.5f);  // flat-ish: sampling would wander
    for (int64_t row = 0; row < 2; ++row)
      CHECK(s.sample(row, logits.data(), nullptr, nullptr, 0, p) == naive_argmax(logits));
  }
  // Ties at the boundary: top_k = 1 keeps the lowest id.
  std::vector<float> tie = {1.0f, 3.0f, 3.0f, 0.0f};
  Sampler t(4, 1, 0);
  for (int i = 0; i < 50; ++i) CHECK(t.sample(0, tie.data(), nullptr, nullptr, 0, p) == 1);
}

TEST(sampler_top_k_stays_inside_the_k_best) {
  const int64_t V = 300, k = 5;
  auto logits = random_logits(size_t(V), 99, 1.0f);
  std::vector<float> sorted = logits;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  const float kth = sorted[size_t(k - 1)];
  Sampler s(V, 1, 3);
  SamplingParams p = with_temperature(1.0);
  p.top_k = k;
  std::vector<int> seen(size_t(V), 0);
  for (int i = 0; i < 4000; ++i) {
    int64_t t = s.sample(0, logits.data(), nullptr, nullptr, 0, p);
    CHECK(t >= 0 && t < V && logits[size_t(t)] >= kth);
    ++seen[size_t(t)];
  }
  int distinct = 0;
  for (int c : seen) distinct += c > 0;
  CHECK(distinct == k);
}

TEST(sampler_top_p_keeps_the_nucleus) {
  // probabilities 0.5, 0.3, 0.15, 0.05, shuffled over the ids
  std::vector<float> logits = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  Sampler s(4, 1, 5);
  SamplingParams p = with_temperature(1.0);
  for (double top_p : {0.8, 0.81, 0.5, 0.01}) {
    p.top_p = top_p;
    std::vector<int> seen(4, 0);
    for (int i = 0; i < 3000; ++i) ++seen[size_t(s.sample(0, logits.data(), nullptr, nullptr, 0, p))];
    const bool allowed2 = top_p > 0.8;  // id 0 (p 0.15) only once 0.5 + 0.3 < top_p
    CHECK(seen[1] > 0);
    CHECK((seen[3] > 0) == (top_p > 0.5));
    CHECK((seen[0] > 0) == allowed2);
    CHECK(seen[2] == 0);
  }
}

TEST(sampler_repetition_penalty_direction) {
  // Positive logit: divided; negative logit: multiplied. Both make the token less likely.
  // Positive: 3.0 vs 2.0 -> 3.0 / 2 = 1.5 < 2.0: the greedy choice moves to token 1.
  std::vector<float> pos = {3.0f, 2.0f};
  Sampler s(2, 1, 0);
  SamplingParams p = greedy();
  p.repetition_penalty = 2.0;
  const int64_t hist0[] = {0, 0, 0};
  CHECK(s.sample(0, pos.data(), nullptr, nullptr, 0, p) == 0);
  CHECK(s.sample(0, pos.data(), hist0, nullptr, 3, p) == 1);
  // Negative: -1.0 vs -1.5 -> -1.0 * 2 = -2.0 < -1.5: token 1 again. (Dividing would have
  // raised it to -0.5, the wrong direction.)
  std::vector<float> neg = {-1.0f, -1.5f};
  CHECK(s.sample(0, neg.data(), nullptr, nullptr, 0, p) == 0);
  CHECK(s.sample(0, neg.data(), hist0, nullptr, 1, p) == 1);
  // A penalty < 1 favours the history: 1.0 vs 1.2 -> 1.0 / 0.5 = 2.0.
  std::vector<float> fav = {1.0f, 1.2f};
  p.repetition_penalty = 0.5;
  CHECK(s.sample(0, fav.data(), hist0, nullptr, 1, p) == 0);
  // Entries marked invalid are ignored.
  p.repetition_penalty = 2.0;
  const uint8_t none_valid[] = {0, 0, 0};
  const uint8_t last_valid[] = {0, 0, 1};
  CHECK(s.sample(0, pos.data(), hist0, none_valid, 3, p) == 0);
  CHECK(s.sample(0, pos.data(), hist0, last_valid, 3, p) == 1);
  // A repeated token is penalised once, not once per occurrence: 3.0 / 2 = 1.5 > 1.4
  // (twice would give 0.75).
  std::vector<float> once = {3.0f, 1.4f};
  CHECK(s.sample(0, once.data(), hist0, nullptr, 3, p) == 0);
}

TEST(sampler_repetition_penalty_lowers_sampled_frequency) {
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  const int64_t hist[] = {2};
  SamplingParams p = with_temperature(1.0);
  p.repetition_penalty = 3.0;  // token 2: logit 1/3, probability e^(1/3) / (3e + e^(1/3)) ~ 0.14
  Sampler s(4, 1, 21);
  int count = 0;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) count += s.sample(0, logits.data(), hist, nullptr, 1, p) == 2;
  const double expected = std::exp(1.0 / 3) / (3 * std::exp(1.0) + std::exp(1.0 / 3));
  CHECK(std::fabs(double(count) / draws - expected) < 0.02);
}

TEST(sampler_history_marks_do_not_leak_between_calls) {
  std::vector<float> pos = {3.0f, 2.0f};
  Sampler s(2, 1, 0);
  SamplingParams p = greedy();
  p.repetition_penalty = 2.0;
  const int64_t hist0[] = {0};
  const int64_t bad[] = {0, 7};
  CHECK(s.sample(0, pos.data(), hist0, nullptr, 1, p) == 1);
  CHECK_THROWS(ValueError, s.sample(0, pos.data(), bad, nullptr, 2, p));
  std::vector<float> nan = {std::nanf(""), 2.0f};
  CHECK_THROWS(ValueError, s.sample(0, nan.data(), hist0, nullptr, 1, p));
  p.temperature = 1.0;
  CHECK_THROWS(ValueError, s.sample(0, nan.data(), hist0, nullptr, 1, p));
  // No history now: no penalty may remain from the calls above.
  p.temperature = 0.0;
  CHECK(s.sample(0, pos.data(), nullptr, nullptr, 0, p) == 0);
  p.temperature = 1e-6;
  for (int i = 0; i < 20; ++i) CHECK(s.sample(0, pos.data(), nullptr, nullptr, 0, p) == 0);
}

TEST(sampler_validate_rejects_bad_params) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  SamplingParams ok;
  validate(ok);
  auto bad = [](auto change) {
    SamplingParams p;
    change(p);
    return p;
  };
  CHECK_THROWS(ValueError, validate(bad([](SamplingParams& p) { p.temperature = -0.1; })));
  CHECK_THROWS(ValueError, validate(bad([&](SamplingParams& p) { p.temperature = nan; })));
  CHECK_THROWS(ValueError, validate(bad([&](SamplingParams& p) { p.temperature = inf; })));
  CHECK_THROWS(ValueError, validate(bad([](SamplingParams& p) { p.top_k = -1; })));
  CHECK_THROWS(ValueError, validate(bad([](SamplingParams& p) { p.top_p = 0.0; })));
  CHECK_THROWS(ValueError, validate(bad([](SamplingParams& p) { p.top_p = 1.5; })));
  CHECK_THROWS(ValueError, validate(bad([](SamplingParams& p) { p.top_p = -0.5; })));
  CHECK_THROWS(ValueError, validate(bad([&](SamplingParams& p) { p.top_p = nan; })));
  CHECK_THROWS(ValueError, validate(bad([](SamplingParams& p) { p.repetition_penalty = 0.0; })));
  CHECK_THROWS(ValueError, validate(bad([](SamplingParams& p) { p.repetition_penalty = -1.0; })));
  CHECK_THROWS(ValueError, validate(bad([&](SamplingParams& p) { p.repetition_penalty = inf; })));
  // Edges that are allowed.
  validate(bad([](SamplingParams& p) { p.top_p = 1.0; }));
  validate(bad([](SamplingParams& p) { p.top_p = 1e-9; }));
  validate(bad([](SamplingParams& p) { p.top_k = 1000000; }));
  // sample() validates too, and checks its row and sizes.
  std::vector<float> logits = {0.0f, 1.0f};
  Sampler s(2, 2, 0);
  CHECK_THROWS(ValueError, s.sample(0, logits.data(), nullptr, nullptr, 0, bad([](SamplingParams& p) { p.top_k = -3; })));
  CHECK_THROWS(ValueError, s.sample(2, logits.data(), nullptr, nullptr, 0, greedy()));
  CHECK_THROWS(ValueError, s.sample(-1, logits.data(), nullptr, nullptr, 0, greedy()));
  CHECK_THROWS(ValueError, s.sample(0, logits.data(), nullptr, nullptr, 3, greedy()));
  CHECK_THROWS(ValueError, Sampler(0, 1, 0));
  CHECK_THROWS(ValueError, Sampler(4, -1, 0));
}

TEST(sampler_nan_logits_raise_naming_the_row) {
  std::vector<float> logits = {0.0f, 1.0f, std::nanf(""), 2.0f};
  Sampler s(4, 3, 0);
  bool named = false;
  try {
    s.sample(2, logits.data(), nullptr, nullptr, 0, with_temperature(1.0));
  } catch (const ValueError& e) {
    named = std::string(e.what()).find("row 2") != std::string::npos;
  }
  CHECK(named);
  CHECK_THROWS(ValueError, s.sample(0, logits.data(), nullptr, nullptr, 0, greedy()));
}

TEST(sampler_same_seed_same_tokens_rows_independent) {
  const int64_t V = 200;
  auto logits = random_logits(size_t(V), 4, 0.3f);
  SamplingParams p = with_temperature(1.0);
  p.top_p = 0.95;
  Sampler a(V, 2, 42), b(V, 2, 42), c(V, 2, 43);
  int same_ab = 0, same_ac = 0, same_rows = 0;
  const int draws = 200;
  for (int i = 0; i < draws; ++i) {
    int64_t ta = a.sample(0, logits.data(), nullptr, nullptr, 0, p);
    int64_t tb = b.sample(0, logits.data(), nullptr, nullptr, 0, p);
    int64_t tc = c.sample(0, logits.data(), nullptr, nullptr, 0, p);
    int64_t ta1 = a.sample(1, logits.data(), nullptr, nullptr, 0, p);
    same_ab += ta == tb;
    same_ac += ta == tc;
    same_rows += ta == ta1;
  }
  CHECK(same_ab == draws);
  CHECK(same_ac < draws / 4);
  CHECK(same_rows < draws / 4);
  // A greedy call takes no draw: interleaving one does not shift the stream.
  Sampler d(V, 1, 42), e(V, 1, 42);
  for (int i = 0; i < 50; ++i) {
    e.sample(0, logits.data(), nullptr, nullptr, 0, greedy());
    CHECK(d.sample(0, logits.data(), nullptr, nullptr, 0, p) == e.sample(0, logits.data(), nullptr, nullptr, 0, p));
  }
  // reseed restarts the streams.
  Sampler r(V, 1, 42), q(V, 1, 42);
  int64_t first = r.sample(0, logits.data(), nullptr, nullptr, 0, p);
  r.sample(0, logits.data(), nullptr, nullptr, 0, p);
  r.reseed(42);
  CHECK(r.sample(0, logits.data(), nullptr, nullptr, 0, p) == first);
  CHECK(q.sample(0, logits.data(), nullptr, nullptr, 0, p) == first);
}

// The naive nucleus: sort everything by (logit desc, id asc), keep the prefix reaching top_p.
static std::vector<int64_t> naive_nucleus(const std::vector<float>& logits, double temperature, int64_t top_k,
                                          double top_p) {
  std::vector<int64_t> order;
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] > kNegInf) order.push_back(int64_t(i));
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  });
  if (top_k > 0 && size_t(top_k) < order.size()) order.resize(size_t(top_k));
  const double max = logits[size_t(order[0])];
  std::vector<double> p;
  double sum = 0;
  for (int64_t id : order) sum += p.emplace_back(std::exp((logits[size_t(id)] - max) / temperature));
  double cum = 0;
  for (size_t j = 0; j < order.size(); ++j) {
    cum += p[j];
    if (top_p < 1.0 && cum >= (top_p - kTopPSlack) * sum) {
      order.resize(j + 1);
      break;
    }
  }
  return order;
}

TEST(sampler_top_p_matches_a_full_sort) {
  // Wide logits (over 60 nats, so every bin and the catch-all last bin are used), many exact ties
  // (quantised to 1/8), some -inf; the kept set and its probabilities are compared with a plain
  // sort of everything, and draws stay inside it.
  const int64_t V = 3000;
  SplitMix64 rng(77);
  int checked = 0;
  std::vector<double> probs(static_cast<size_t>(V));
  for (int trial = 0; trial < 12; ++trial) {
    std::vector<float> logits(static_cast<size_t>(V));
    for (auto& x : logits) x = std::round(rng.uniform_pm1() * 30.0f * 8.0f) / 8.0f;
    for (int i = 0; i < 100; ++i) logits[rng.below(uint64_t(V))] = kNegInf;
    // a group of near-top tokens so the nucleus has several members
    for (int i = 0; i < 12; ++i) logits[rng.below(uint64_t(V))] = 30.0f - float(i % 4) * 0.125f;
    for (double temperature : {0.5, 1.0, 4.0}) {
      for (int64_t top_k : {int64_t(0), int64_t(20), int64_t(2000)}) {
        for (double top_p : {0.3, 0.9, 0.999, 1.0}) {
          SamplingParams p = with_temperature(temperature);
          p.top_k = top_k;
          p.top_p = top_p;
          const auto nucleus = naive_nucleus(logits, temperature, top_k, top_p);
          std::vector<double> expected(static_cast<size_t>(V), 0.0);
          const float top = logits[size_t(nucleus[0])];
          double mass = 0;
          for (int64_t id : nucleus) mass += std::exp((logits[size_t(id)] - top) / temperature);
          for (int64_t id : nucleus) expected[size_t(id)] = std::exp((logits[size_t(id)] - top) / temperature) / mass;

          Sampler s(V, 1, uint64_t(trial));
          s.distribution(0, logits.data(), nullptr, nullptr, 0, p, probs.data());
          bool same_set = true, close = true;
          for (int64_t i = 0; i < V; ++i) {
            same_set = same_set && ((probs[size_t(i)] > 0) == (expected[size_t(i)] > 0));
            close = close && std::fabs(probs[size_t(i)] - expected[size_t(i)]) <= 1e-12;
          }
          CHECK(same_set);
          CHECK(close);
          bool inside = true;
          for (int d = 0; d < 100; ++d) {
            const int64_t t = s.sample(0, logits.data(), nullptr, nullptr, 0, p);
            inside = inside && t >= 0 && t < V && probs[size_t(t)] > 0;
          }
          CHECK(inside);
          ++checked;
        }
      }
    }
  }
  CHECK(checked == 12 * 36);
}

TEST(sampler_top_k_keeps_exactly_the_k_best) {
  // Both selection paths (a heap for k <= m / 128, nth_element above) against a full sort, with
  // many ties (logits quantised to 1/4) broken by the lower id.
  const int64_t V = 6000;
  std::vector<double> probs(static_cast<size_t>(V));
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    std::vector<float> logits = random_logits(size_t(V), seed, 6.0f);
    for (auto& x : logits) x = std::round(x * 4.0f) / 4.0f;
    std::vector<int64_t> order(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) order[size_t(i)] = i;
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
    });
    for (int64_t k : {int64_t(1), int64_t(7), int64_t(46), int64_t(47), int64_t(300), int64_t(5999)}) {
      SamplingParams p = with_temperature(2.0);
      p.top_k = k;
      Sampler s(V, 1, seed);
      s.distribution(0, logits.data(), nullptr, nullptr, 0, p, probs.data());
      std::vector<uint8_t> in(static_cast<size_t>(V), 0);
      for (int64_t j = 0; j < k; ++j) in[size_t(order[size_t(j)])] = 1;
      int wrong = 0;
      for (int64_t i = 0; i < V; ++i) wrong += (probs[size_t(i)] > 0) != bool(in[size_t(i)]);
      CHECK(wrong == 0);
    }
  }
}

TEST(sampler_distribution_is_what_sample_draws_from) {
  // distribution() takes no draw; the frequencies of sample() follow it (4 tokens, 20000 draws,
  // each frequency within 0.015 of its probability: > 5 standard deviations).
  std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, -3.0f};
  const int64_t hist[] = {3};
  SamplingParams p = with_temperature(0.7);
  p.top_k = 4;
  p.repetition_penalty = 1.3;
  Sampler a(5, 1, 9), b(5, 1, 9);
  std::vector<double> probs(5);
  a.distribution(0, logits.data(), hist, nullptr, 1, p, probs.data());
  CHECK(probs[4] == 0.0);
  double total = 0;
  for (double q : probs) total += q;
  CHECK_NEAR(total, 1.0, 1e-12);
  std::vector<int> count(5, 0);
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) ++count[size_t(a.sample(0, logits.data(), hist, nullptr, 1, p))];
  for (int i = 0; i < 5; ++i) CHECK(std::fabs(double(count[size_t(i)]) / draws - probs[size_t(i)]) < 0.015);
  // a's stream after distribution() + draws equals b's after the draws alone
  for (int i = 0; i < draws; ++i) b.sample(0, logits.data(), hist, nullptr, 1, p);
  CHECK(a.sample(0, logits.data(), hist, nullptr, 1, p) == b.sample(0, logits.data(), hist, nullptr, 1, p));
  // greedy: one-hot
  a.distribution(0, logits.data(), nullptr, nullptr, 0, greedy(), probs.data());
  CHECK(probs[3] == 1.0 && probs[0] == 0.0);
}

TEST(sampler_large_vocabulary_paths_agree_with_small_ones) {
  // 150k tokens: the vectorised scans (blocks of 4096) and block-skipping draw see the same
  // winner wherever it sits, including in the last, partial block.
  const int64_t V = 151936;
  std::vector<float> logits = random_logits(size_t(V), 5, 4.0f);
  Sampler s(V, 1, 1);
  for (int64_t where : {int64_t(0), int64_t(4095), int64_t(4096), int64_t(77777), V - 1}) {
    std::vector<float> l = logits;
    l[size_t(where)] = 50.0f;
    CHECK(s.sample(0, l.data(), nullptr, nullptr, 0, greedy()) == where);
    CHECK(s.sample(0, l.data(), nullptr, nullptr, 0, with_temperature(1.0)) == where);  // p > 1 - 1e-13
    l[size_t(where)] = std::nanf("");
    bool named = false;
    try {
      s.sample(0, l.data(), nullptr, nullptr, 0, with_temperature(1.0));
    } catch (const ValueError& e) {
      named = std::string(e.what()).find("token " + std::to_string(where) + " ") != std::string::npos;
    }
    CHECK(named);
  }
  // Two tokens with all the mass, at both ends: the draw reaches the far one through the block sums.
  std::vector<float> two(size_t(V), -60.0f);
  two[3] = 0.0f;
  two[size_t(V - 2)] = 0.0f;
  int far = 0;
  const int draws = 2000;
  for (int i = 0; i < draws; ++i) {
    int64_t t = s.sample(0, two.data(), nullptr, nullptr, 0, with_temperature(1.0));
    CHECK(t == 3 || t == V - 2);
    far += t == V - 2;
  }
  CHECK(far > draws * 4 / 10 && far < draws * 6 / 10);  // 0.5 each; sd 0.011
}
