// Per-phase timers. A ScopedPhase adds the time of its scope to one phase of a StepTiming;
// with timing off it reads no clock at all.
#pragma once
#include <chrono>
#include <cstdint>

namespace celer {

enum Phase : int { kEmbedding = 0, kAttention, kMlp, kHead, kOther, kNumPhases };
inline const char* phase_name(int p) {
  static const char* names[kNumPhases] = {"embedding", "attention", "mlp", "head", "other"};
  return names[p];
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The timing of one engine step (prefill or one decode token).
struct StepTiming {
  int64_t phase_ns[kNumPhases] = {0, 0, 0, 0, 0};
  int64_t total_ns = 0;
  int64_t tokens = 0;  // tokens processed per row in this step
};

class ScopedPhase {
 public:
  ScopedPhase(StepTiming* step, Phase phase) : step_(step), phase_(phase), start_(step ? now_ns() : 0) {}
  ~ScopedPhase() {
    if (step_) step_->phase_ns[phase_] += now_ns() - start_;
  }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  StepTiming* step_;
  Phase phase_;
  int64_t start_;
};

}  // namespace celer
