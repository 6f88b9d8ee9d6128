#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "error.h"

namespace celer {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Uniform double in [0, 1) with 53 random bits (exact on every platform).
double uniform01(SplitMix64& rng) { return double(rng.next() >> 11) * 0x1.0p-53; }

// The repetition penalty of Keskar et al. (CTRL), as in Hugging Face: it always makes the token
// less likely, whatever the sign of its logit.
double penalise(double logit, double penalty) { return logit > 0 ? logit / penalty : logit * penalty; }

std::string row_name(int64_t row) { return "sample: row " + std::to_string(row); }

}  // namespace

void validate(const SamplingParams& p) {
  require(std::isfinite(p.temperature) && p.temperature >= 0,
          "sampling: temperature must be a finite number >= 0 (0 = greedy), got " + std::to_string(p.temperature));
  require(p.top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  require(p.top_p > 0 && p.top_p <= 1,  // false for NaN
          "sampling: top_p must be in (0, 1] (1 = off), got " + std::to_string(p.top_p));
  require(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0,
          "sampling: repetition_penalty must be a finite number > 0 (1 = off), got " +
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

void Sampler::unmark_history(const int64_t* history, const uint8_t* valid, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    if (!valid || valid[j]) seen_[size_t(history[j])] = 0;
}

int64_t Sampler::argmax(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid, int64_t n,
                        double penalty) {
  const bool penalised = penalty != 1.0 && n > 0;
  if (penalised) mark_history(row, history, valid, n);
  // One pass over the vocabulary: the best token that is not in the history (strict > keeps the
  // lowest id among ties), and the first NaN.
  double best = -kInf;
  int64_t best_id = -1, nan_at = -1;
  for (int64_t i = 0; i < vocab_; ++i) {
    const float x = logits[i];
    if (std::isnan(x)) {
      nan_at = i;
      break;
    }
    if (penalised && seen_[size_t(i)]) continue;
    if (double(x) > best) best = x, best_id = i;
  }
  // The history tokens, penalised, each once (clearing its mark as it is seen).
  if (penalised) {
    for (int64_t j = 0; j < n; ++j) {
      if (valid && !valid[j]) continue;
      const int64_t id = history[j];
      if (!seen_[size_t(id)]) continue;
      seen_[size_t(id)] = 0;
      if (nan_at >= 0) continue;
      const double v = penalise(double(logits[id]), penalty);
      if (v > best || (v == best && best_id >= 0 && id < best_id)) best = v, best_id = id;
    }
  }
  if (nan_at >= 0) throw ValueError(row_name(row) + ": logit of token " + std::to_string(nan_at) + " is NaN");
  if (best_id < 0) throw ValueError(row_name(row) + ": every token has logit -inf (nothing can be sampled)");
  return best_id;
}

int64_t Sampler::sample(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid, int64_t n,
                        const SamplingParams& params) {
  validate(params);
  require(row >= 0 && row < batch(),
          "sample: row " + std::to_string(row) + " is outside [0, " + std::to_string(batch()) + ")");
  require(logits != nullptr, row_name(row) + ": logits is null");
  require(n >= 0, row_name(row) + ": history length must be >= 0, got " + std::to_string(n));
  require(n == 0 || history != nullptr, row_name(row) + ": history is null but its length is " + std::to_string(n));

  const double penalty = params.repetition_penalty;
  if (params.temperature == 0.0) return argmax(row, logits, history, valid, n, penalty);

  // 1. Penalised logits into logit_; the candidates are the tokens that are not -inf. (The
  // temperature is applied after subtracting the max, so a tiny temperature cannot overflow.)
  const bool penalised = penalty != 1.0 && n > 0;
  if (penalised) mark_history(row, history, valid, n);
  double* s = logit_.data();
  int32_t* cand = index_.data();
  int64_t m = 0, nan_at = -1;
  double max = -kInf;
  for (int64_t i = 0; i < vocab_; ++i) {
    double v = logits[i];
    if (std::isnan(v)) {
      nan_at = i;
      break;
    }
    if (penalised && seen_[size_t(i)]) {
      seen_[size_t(i)] = 0;
      v = penalise(v, penalty);
    }
    s[i] = v;
    if (v > -kInf) {
      cand[m++] = int32_t(i);
      if (v > max) max = v;
    }
  }
  if (nan_at >= 0) {
    if (penalised) unmark_history(history, valid, n);
    throw ValueError(row_name(row) + ": logit of token " + std::to_string(nan_at) + " is NaN");
  }
  if (m == 0) throw ValueError(row_name(row) + ": every token has logit -inf (nothing can be sampled)");

  // More likely first; equal logits: lower id first.
  auto before = [s](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };

  // 2. top-k: the k best candidates to the front, in linear time.
  if (params.top_k > 0 && params.top_k < m) {
    std::nth_element(cand, cand + params.top_k - 1, cand + m, before);
    m = params.top_k;
  }

  // 3. Softmax of logits / temperature over the candidates (unnormalised, float64). If some
  // logit is +inf the limit is uniform over the +inf tokens.
  double* p = prob_.data();
  double sum = 0;
  if (max == kInf) {
    for (int64_t j = 0; j < m; ++j) sum += (p[cand[j]] = s[cand[j]] == kInf ? 1.0 : 0.0);
  } else {
    const double t = params.temperature;
    for (int64_t j = 0; j < m; ++j) sum += (p[cand[j]] = std::exp((s[cand[j]] - max) / t));
  }

  // 4. top-p: sort the candidates by probability only as far as needed (growing chunks), and keep
  // the shortest prefix whose mass reaches top_p.
  int64_t kept = m;
  double total = sum;
  if (params.top_p < 1.0) {
    const double target = (params.top_p - kTopPSlack) * sum;
    double cum = 0;
    int64_t done = 0, chunk = 64;
    bool reached = false;
    while (!reached && done < m) {
      const int64_t end = std::min(m, done + chunk);
      if (end == m)
        std::sort(cand + done, cand + m, before);
      else
        std::partial_sort(cand + done, cand + end, cand + m, before);
      for (int64_t j = done; j < end; ++j) {
        cum += p[cand[j]];
        if (cum >= target) {
          kept = j + 1;
          reached = true;
          break;
        }
      }
      done = end;
      chunk *= 2;
    }
    total = cum;
  }

  // 5. One uniform draw inverts the CDF of the kept tokens.
  const double u = uniform01(streams_[size_t(row)]) * total;
  double cum = 0;
  int64_t last = -1;
  for (int64_t j = 0; j < kept; ++j) {
    const double pj = p[cand[j]];
    if (pj <= 0) continue;
    cum += pj;
    last = cand[j];
    if (cum > u) return last;
  }
  // Rounding put u at the very top: the last token with mass (there is one: the max has p = 1).
  return last;
}

}  // namespace celer
