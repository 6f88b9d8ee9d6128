// Choosing between two kernels by timing them (kernel_choice.cpp, the bf16 GEMM's path in
// gemm_avx512.cpp): once per process, on the calling thread.
#pragma once
#include <algorithm>
#include <chrono>

namespace celer::cpu {

// best time of `b` / best time of `a`: after a warm-up on `a` (Intel powers its upper AVX-512
// units up on demand), the two alternate five times and each keeps its best run, so that a
// context switch or a burst of load slows one run, not the verdict.
template <class A, class B>
double best_time_ratio(A&& a, B&& b) {
  auto seconds = [](auto&& f) {
    const auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  for (int r = 0; r < 4; ++r) a();
  double best_a = 1e30, best_b = 1e30;
  for (int r = 0; r < 5; ++r) {
    best_a = std::min(best_a, seconds(a));
    best_b = std::min(best_b, seconds(b));
  }
  return best_b / best_a;
}

}  // namespace celer::cpu
