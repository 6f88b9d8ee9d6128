// Token sampling: repetition penalty, greedy, temperature, top-k, top-p (nucleus), one seeded
// random stream per batch row. All scratch memory is sized at construction; sample() never
// allocates, so it can run inside the decode loop.
//
// Order of the steps for one row (the same order as Hugging Face's logits processors):
//   penalty -> greedy: argmax (ties -> lowest id)
//           -> else: logits / temperature -> top-k -> softmax (float64, max-subtracted)
//                    -> top-p -> one uniform double in [0, 1) inverts the CDF of the kept tokens.
// (top-k runs on the penalised logits before they are divided by the temperature: the order is
// the same.) A call with temperature > 0 takes exactly one random draw from the row's stream and
// a greedy call takes none, so the same seed and the same calls give the same tokens. (The
// vectorised exp may differ in the last bit between CPUs with different SIMD widths; a draw
// changes only if it lands within that of a CDF boundary.)
//
// Cost for V tokens: greedy is one vectorised pass; sampling is a few passes plus V exp; top-k
// uses a heap (small k) or nth_element, never a sort; top-p bins the log-probabilities and sorts
// only the bin where the cumulative mass crosses top_p (a full sort only for a flat distribution).
#pragma once
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace celer {

struct SamplingParams {
  double temperature = 0.0;         // 0: greedy (argmax, ties -> lowest token id)
  int64_t top_k = 0;                // 0: off; else keep the k most likely (boundary ties -> lower id)
  double top_p = 1.0;               // nucleus: smallest most-likely set with probability >= top_p; 1.0: off
  double repetition_penalty = 1.0;  // on tokens in the history: logit > 0 ? logit / p : logit * p; 1.0: off
};

// ValueError with a clear message: temperature < 0 or not finite; top_k < 0; top_p not in
// (0, 1] or NaN; repetition_penalty <= 0 or not finite.
void validate(const SamplingParams& params);

// top-p keeps tokens until the cumulative probability reaches top_p - kTopPSlack: the logits
// are float32, so a nucleus that sums to exactly top_p in exact arithmetic (0.5 + 0.3 for
// top_p = 0.8) is not widened by a rounding error in the last bits.
inline constexpr double kTopPSlack = 1e-6;

class Sampler {
 public:
  // One independent random stream per row b, seeded with stream_seed(seed, "sample.row<b>").
  Sampler(int64_t vocab_size, int64_t batch, uint64_t seed);

  // Restart every row's stream from `seed` (as if newly constructed; no allocation).
  void reseed(uint64_t seed);

  // The next token of row `row` from its logits (vocab_size floats, not modified).
  // history: the row's previous tokens (n ids) for the repetition penalty; entries whose
  // valid flag is 0 are ignored (valid may be null: all valid); a token repeated in the history
  // is penalised once. Valid ids must lie in [0, vocab_size) (checked when the penalty is on).
  // ValueError: bad params or row, a NaN logit (naming the row and token), every token -Inf.
  // +Inf logits are allowed: the draw is then uniform over the +Inf tokens (greedy: the lowest).
  int64_t sample(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid, int64_t n,
                 const SamplingParams& params);

  // The distribution sample() would draw from (same arguments, no draw taken): probs[i] for
  // every token (vocab_size doubles, summing to 1; 0 outside the kept set; one-hot when greedy).
  // For tests and diagnostics.
  void distribution(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid, int64_t n,
                    const SamplingParams& params, double* probs);

  int64_t vocab_size() const { return vocab_; }
  int64_t batch() const { return int64_t(streams_.size()); }

 private:
  void check_call(int64_t row, const float* logits, const int64_t* history, int64_t n,
                  const SamplingParams& params) const;
  // Steps 1-4 (temperature > 0): leaves the kept tokens in index_[0, kept) with unnormalised
  // probabilities prob_[token] summing to *total; returns kept (>= 1).
  int64_t filter(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid, int64_t n,
                 const SamplingParams& params, double* total);
  // Step 5: one uniform draw from the row's stream inverts the CDF of the kept tokens.
  int64_t draw(int64_t row, int64_t kept, double total, const SamplingParams& params);
  // Greedy: one vectorised pass over the logits (plus one more when the penalty moves the winner).
  int64_t argmax(int64_t row, const float* logits, const int64_t* history, const uint8_t* valid, int64_t n,
                 double penalty);
  // Check the valid history ids are in range, then mark them in seen_.
  void mark_history(int64_t row, const int64_t* history, const uint8_t* valid, int64_t n);

  int64_t vocab_;
  std::vector<SplitMix64> streams_;  // one per row
  std::vector<double> logit_;        // (V) penalised logits
  std::vector<double> prob_;         // (V) unnormalised probabilities, by token id
  std::vector<int32_t> index_;       // (V) candidate token ids
  std::vector<uint8_t> seen_;        // (V) history marks, all zero between calls
  std::vector<double> bucket_mass_;  // (kBuckets) top-p: probability mass per bin of log-probability

  static constexpr int kBuckets = 1024;
  static constexpr double kBucketWidth = 1.0 / 32;  // nats: bins cover 32 nats below the max
};

}  // namespace celer
