#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

// GCC 12 reports a false "may be used uninitialized" inside the AVX-512 intrinsics that Eigen's
// reductions inline (_mm512_undefined_ps); it is not about this file's code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>

#include "core/error.h"

namespace celer {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Uniform double in [0, 1) with 53 random bits (exact on every platform).
double uniform01(SplitMix64& rng) { return double(rng.next() >> 11) * 0x1.0p-53; }

// The repetition penalty of Keskar et al. (CTRL), as in Hugging Face: a penalty > 1 makes the
// token less likely whatever the sign of its logit (< 1 favours it).
double penalise(double logit, double penalty) { return logit > 0 ? logit / penalty : logit * penalty; }

std::string row_name(int64_t row) { return "sample: row " + std::to_string(row); }

// The logits are scanned in blocks with Eigen's vectorised reductions (a plain loop that tracks
// an index does not vectorise); each block is small enough to stay in L1 for a second look.
constexpr int64_t kBlock = 4096;

// The largest of x[0, n) (n > 0), NaN if any is NaN.
float max_or_nan(const float* x, int64_t n) {
#if EIGEN_VERSION_AT_LEAST(3, 4, 0)
  return Eigen::Map<const Eigen::ArrayXf>(x, n).maxCoeff<Eigen::PropagateNaN>();
#else
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = (x[i] > m || std::isnan(x[i])) && !std::isnan(m) ? x[i] : m;
  return m;
#endif
}

// Largest and smallest logit, or the index of the first NaN (nan_at >= 0; max/min unspecified).
struct Scan {
  float max = -std::numeric_limits<float>::infinity();
  float min = std::numeric_limits<float>::infinity();
  int64_t nan_at = -1;
};
Scan scan(const float* x, int64_t n) {
  Scan r;
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const Eigen::Map<const Eigen::ArrayXf> block(x + b0, std::min(kBlock, n - b0));
    const float hi = max_or_nan(block.data(), block.size());
    if (std::isnan(hi)) {
      for (int64_t i = b0;; ++i)
        if (std::isnan(x[i])) return r.nan_at = i, r;
    }
    r.max = std::max(r.max, hi);
    r.min = std::min(r.min, block.minCoeff());
  }
  return r;
}

// The first index of the largest value of x[0, n) (-1 when all are -inf), or the first NaN.
int64_t first_argmax(const float* x, int64_t n, int64_t* nan_at) {
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_id = -1;
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t len = std::min(kBlock, n - b0);
    const float hi = max_or_nan(x + b0, len);
    if (std::isnan(hi)) {
      for (int64_t i = b0;; ++i)
        if (std::isnan(x[i])) return *nan_at = i, -1;
    }
    if (hi > best) {  // strict: an equal value in a later block has a higher id
      best = hi;
      for (int64_t i = b0;; ++i)
        if (x[i] == hi) {
          best_id = i;
          break;
        }
    }
  }
  return best_id;
}

[[noreturn]] void throw_nan(int64_t row, int64_t token) {
  throw ValueError(row_name(row) + ": logit of token " + std::to_string(token) + " is NaN");
}
[[noreturn]] void throw_impossible(int64_t row) {
  throw ValueError(row_name(row) + ": every token has logit -inf (nothing can be sampled)");
}

}  // namespace

// The checks below run on every sample() call: their messages are built only when they fail,
// so a good call allocates nothing.
void validate(const SamplingParams& p) {
  if (!(std::isfinite(p.temperature) && p.temperature >= 0))
    throw ValueError("sampling: temperature must be a finite number >= 0 (0 = greedy), got " +
                     std::to_string(p.temperature));
  if (p.top_k < 0) throw ValueError("sampling: top_k must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1))  // true for NaN
    throw ValueError("sampling: top_p must be in (0, 1] (1 = off), got " + std::to_string(p.top_p));
  if (!(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0))
    throw ValueError("sampling: repetition_penalty must be a finite number > 0 (1 = off), got " +
                     std::to_string(p.repetition_penalty));
}

Sampler::Sampler(int64_t vocab_size, int64_t batch, uint64_t seed) : vocab_(vocab_size) {
  require(vocab_size >= 1 && vocab_size <= std::numeric_limits<int32_t>::max(),
          "Sampler: vocab_size must be in [1, 2^31), got " + std::to_string(vocab_size));
  require(batch >= 0, "Sampler: batch must be >= 0, got " + std::to_string(batch));
  streams_.assign(size_t(batch), SplitMix64(0));
  reseed(seed);
  logit_.assign(size_t(vocab_size), 0.0);
  prob_.assign(size_t(vocab_size), 0.0);
  index_.assign(size_t(vocab_size), 0);
  seen_.assign(size_t(vocab_size), 0);
  bucket_mass_.assign(size_t(kBuckets), 0.0);
}

void Sampler::reseed(uint64_t seed) {
  char name[40];
  for (size_t b = 0; b < streams_.size(); ++b) {
    std::snprintf(name, sizeof name, "sample.row%zu", b);
    streams_[b] = SplitMix64(stream_seed(seed, name));
  }
}

void Sampler::mark_history(int64_t row, const int64_t* history, const uint8_t* valid, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {  // check everything first, so an error leaves no marks
    if (valid && !valid[j]) continue;
    const int64_t id = history[j];
    if (id < 0 || id >= vocab_)
      throw ValueError(row_name(row) + ": history token " + std::to_string(id) + " (position " + std::to_string(j) +
                       ") is outside [0, " + std::to_string(vocab_) + ")");
  }
  for (int64_t j = 0; j < n; ++j)
    if (!valid || valid[j]) seen_[size_t(history[j])] = 1;
}

int64_t Sampler::argmax(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid, int64_t n,
                        double penalty) {
  int64_t nan_at = -1;
  const int64_t top = first_argmax(logits, vocab_, &nan_at);
  if (nan_at >= 0) throw_nan(row, nan_at);
  if (penalty == 1.0 || n == 0) {
    if (top < 0) throw_impossible(row);
    return top;
  }
  mark_history(row, history, valid, n);
  double best = -kInf;
  int64_t best_id = -1;
  if (top >= 0 && !seen_[size_t(top)]) {
    // The raw winner is not in the history: it is also the best token outside the history.
    best = logits[top], best_id = top;
  } else {
    // Otherwise one pass for the best token outside the history (strict > keeps the lowest id).
    for (int64_t i = 0; i < vocab_; ++i)
      if (!seen_[size_t(i)] && double(logits[i]) > best) best = logits[i], best_id = i;
  }
  // The history tokens, penalised, each once (clearing its mark as it is seen).
  for (int64_t j = 0; j < n; ++j) {
    if (valid && !valid[j]) continue;
    const int64_t id = history[j];
    if (!seen_[size_t(id)]) continue;
    seen_[size_t(id)] = 0;
    const double v = penalise(double(logits[id]), penalty);
    if (v > best || (v == best && best_id >= 0 && id < best_id)) best = v, best_id = id;
  }
  if (best_id < 0) throw_impossible(row);
  return best_id;
}

void Sampler::check_call(int64_t row, const float* logits, const int64_t* history, int64_t n,
                         const SamplingParams& params) const {
  validate(params);
  if (row < 0 || row >= batch())
    throw ValueError("sample: row " + std::to_string(row) + " is outside [0, " + std::to_string(batch()) + ")");
  if (logits == nullptr) throw ValueError(row_name(row) + ": logits is null");
  if (n < 0) throw ValueError(row_name(row) + ": history length must be >= 0, got " + std::to_string(n));
  if (n > 0 && history == nullptr)
    throw ValueError(row_name(row) + ": history is null but its length is " + std::to_string(n));
}

int64_t Sampler::sample(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid, int64_t n,
                        const SamplingParams& params) {
  check_call(row, logits, history, n, params);
  if (params.temperature == 0.0) return argmax(row, logits, history, valid, n, params.repetition_penalty);
  double total = 0;
  const int64_t kept = filter(row, logits, history, valid, n, params, &total);
  return draw(row, kept, total, params);
}

void Sampler::distribution(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid,
                           int64_t n, const SamplingParams& params, double* probs) {
  check_call(row, logits, history, n, params);
  if (probs == nullptr) throw ValueError(row_name(row) + ": probs is null");
  if (params.temperature == 0.0) {
    const int64_t top = argmax(row, logits, history, valid, n, params.repetition_penalty);
    std::fill(probs, probs + vocab_, 0.0);
    probs[top] = 1.0;
    return;
  }
  double total = 0;
  const int64_t kept = filter(row, logits, history, valid, n, params, &total);
  std::fill(probs, probs + vocab_, 0.0);
  for (int64_t j = 0; j < kept; ++j) probs[index_[size_t(j)]] = prob_[size_t(index_[size_t(j)])] / total;
}

int64_t Sampler::filter(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid, int64_t n,
                        const SamplingParams& params, double* total_out) {
  const double penalty = params.repetition_penalty;
  // 1. Penalised logits into logit_ (float64); the candidates are the tokens that are not -inf.
  // (The temperature is applied after subtracting the max, so a tiny one cannot overflow.)
  const Scan raw = scan(logits, vocab_);
  if (raw.nan_at >= 0) throw_nan(row, raw.nan_at);
  if (raw.max == -std::numeric_limits<float>::infinity()) throw_impossible(row);
  double* s = logit_.data();
  Eigen::Map<Eigen::ArrayXd> all(s, vocab_);
  all = Eigen::Map<const Eigen::ArrayXf>(logits, vocab_).cast<double>();
  double max = raw.max;
  if (penalty != 1.0 && n > 0) {
    mark_history(row, history, valid, n);
    for (int64_t j = 0; j < n; ++j) {  // each distinct token once, clearing its mark
      if (valid && !valid[j]) continue;
      const size_t id = size_t(history[j]);
      if (!seen_[id]) continue;
      seen_[id] = 0;
      s[id] = penalise(s[id], penalty);
    }
    max = all.maxCoeff();  // the penalty never makes a token -inf or NaN
  }
  int32_t* cand = index_.data();
  int64_t m = 0;
  if (raw.min > -std::numeric_limits<float>::infinity()) {
    for (int64_t i = 0; i < vocab_; ++i) cand[i] = int32_t(i);
    m = vocab_;
  } else {
    for (int64_t i = 0; i < vocab_; ++i)
      if (s[i] > -kInf) cand[m++] = int32_t(i);
  }

  // More likely first; equal logits: lower id first.
  auto before = [s](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };

  // 2. top-k: the k best candidates to the front. A small k: one pass with a heap of the k best
  // so far (its front is the worst of them; most tokens lose against it and cost one
  // comparison). A larger k: nth_element (linear time, but several passes).
  const int64_t k = params.top_k;
  if (k > 0 && k < m) {
    if (k * 128 <= m) {
      std::make_heap(cand, cand + k, before);
      double worst = s[cand[0]];
      for (int64_t j = k; j < m; ++j) {
        const int32_t c = cand[j];
        if (s[c] < worst || !before(c, cand[0])) continue;
        std::pop_heap(cand, cand + k, before);
        cand[k - 1] = c;
        std::push_heap(cand, cand + k, before);
        worst = s[cand[0]];
      }
    } else {
      std::nth_element(cand, cand + k - 1, cand + m, before);
    }
    m = k;
  }

  // 3. Softmax of logits / temperature over the candidates (unnormalised, float64). logit_ now
  // holds the exponents (logit - max) / temperature <= 0, which keep the order. If some logit is
  // +inf the limit is uniform over the +inf tokens.
  double* p = prob_.data();
  const double t = params.temperature;
  double sum = 0;
  if (max == kInf) {
    for (int64_t j = 0; j < m; ++j) {
      const int32_t c = cand[j];
      s[c] = s[c] == kInf ? 0.0 : -kInf;
      sum += (p[c] = s[c] == 0.0 ? 1.0 : 0.0);
    }
  } else if (m == vocab_) {  // every token: vectorised
    Eigen::Map<Eigen::ArrayXd> prob(p, vocab_);
    all = (all - max) / t;
    prob = all.exp();
    sum = prob.sum();
  } else {
    for (int64_t j = 0; j < m; ++j) {
      const int32_t c = cand[j];
      s[c] = (s[c] - max) / t;
      sum += (p[c] = std::exp(s[c]));
    }
  }

  // 4. top-p: the shortest most-likely prefix whose mass reaches top_p, without sorting the
  // whole vocabulary. The exponents are binned (kBuckets bins of width kBucketWidth nats below the
  // max; the last bin takes the rest); the bin where the cumulative mass crosses top_p is found
  // from the bin masses. Tokens in the bins above it are all kept (in any order); only the
  // crossing bin is sorted, to keep its most likely tokens.
  int64_t kept = m;
  double total = sum;
  if (params.top_p < 1.0) {
    const double target = (params.top_p - kTopPSlack) * sum;
    auto bin = [s](int32_t c) {
      const double b = -s[c] * (1.0 / kBucketWidth);  // >= 0, may be +inf
      return b < double(kBuckets - 1) ? int(b) : kBuckets - 1;
    };
    double* mass = bucket_mass_.data();
    std::fill(mass, mass + kBuckets, 0.0);
    for (int64_t j = 0; j < m; ++j) mass[bin(cand[j])] += p[cand[j]];
    double above = 0;  // the mass of the bins before the crossing bin
    int cross = 0;
    while (cross < kBuckets - 1 && above + mass[cross] < target) above += mass[cross++];
    // [cand, mid): the bins before the crossing bin; [mid, upto): the crossing bin, sorted.
    int32_t* upto = std::partition(cand, cand + m, [&](int32_t c) { return bin(c) <= cross; });
    int32_t* mid = std::partition(cand, upto, [&](int32_t c) { return bin(c) < cross; });
    std::sort(mid, upto, before);
    double cum = above;
    kept = upto - cand;  // every candidate if rounding never reaches the target
    for (int32_t* it = mid; it != upto; ++it) {
      cum += p[*it];
      if (cum >= target) {
        kept = it + 1 - cand;
        break;
      }
    }
    total = 0;
    for (int64_t j = 0; j < kept; ++j) total += p[cand[j]];
  }

  *total_out = total;
  return kept;
}

int64_t Sampler::draw(int64_t row, int64_t kept, double total, const SamplingParams& params) {
  // 5. One uniform draw inverts the CDF of the kept tokens.
  const double* p = prob_.data();
  const int32_t* cand = index_.data();
  const double u = uniform01(streams_[size_t(row)]) * total;
  double cum = 0;
  int64_t j = 0;
  if (kept == vocab_ && params.top_p >= 1.0) {
    // The candidates are 0..V-1 in order: skip whole blocks by their (vectorised) sums.
    for (; j + kBlock < kept; j += kBlock) {
      const double block = Eigen::Map<const Eigen::ArrayXd>(p + j, kBlock).sum();
      if (cum + block > u) break;
      cum += block;
    }
  }
  for (; j < kept; ++j) {
    cum += p[cand[j]];
    if (cum > u && p[cand[j]] > 0) return cand[j];
  }
  // Rounding put u at the very top: the last token with mass (there is one: the max has p = 1).
  for (j = kept - 1; p[cand[j]] <= 0; --j) {
  }
  return cand[j];
}

}  // namespace celer
