// Calibration kernels of the CPU backend: the STREAM-style triad and the engine's GEMM timed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/cpu/calibrate.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/linear.h"
#include "backend/cpu/simd.h"
#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "backend/cpu/threadpool.h"

namespace celer {

namespace {

constexpr int64_t kTriadBlock = 1024;  // floats per scheduling block: one 4 KiB page
constexpr float kTriadScalar = 3.0f;   // STREAM's scalar

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using AlignedFloats = std::unique_ptr<float[], FreeDeleter>;

// Uninitialised, 64-byte aligned: the pages are touched first by the threads that use them.
AlignedFloats aligned_floats(int64_t n) {
  const size_t bytes = (size_t(n) * sizeof(float) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw ValueError("could not allocate " + std::to_string(bytes) + " bytes for the triad arrays");
  return AlignedFloats(static_cast<float*>(p));
}

// fn(begin, end) over element ranges made of whole blocks: the same split for a given n and pool.
template <class Fn>
void for_blocks(ThreadPool& pool, int64_t n, Fn&& fn) {
  const int64_t blocks = (n + kTriadBlock - 1) / kTriadBlock;
  pool.parallel_for(blocks, [&](int64_t b0, int64_t b1) { fn(b0 * kTriadBlock, std::min(n, b1 * kTriadBlock)); });
}

double seconds_since(int64_t start) { return double(std::max<int64_t>(1, now_ns() - start)) * 1e-9; }

void check_reps(int reps) { require(reps >= 1, "reps must be >= 1, got " + std::to_string(reps)); }

// GB/s of each of `reps` timed calls of run() (after one warm-up), bytes_per_rep per call;
// check() after each, to throw if the call did not compute what it should.
template <class Run, class Check>
std::vector<double> timed_gbps(Run&& run, uint64_t bytes_per_rep, int reps, Check&& check) {
  run();  // warm-up
  std::vector<double> gbps;
  gbps.reserve(size_t(reps));
  for (int r = 0; r < reps; ++r) {
    const int64_t start = now_ns();
    run();
    gbps.push_back(double(bytes_per_rep) / seconds_since(start) * 1e-9);
    check();
  }
  return gbps;
}

}  // namespace

void triad_kernel(float* __restrict a, const float* __restrict b, const float* __restrict c, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

void triad_parallel(float* a, const float* b, const float* c, float s, int64_t n) {
  auto pool = thread_pool();
  for_blocks(*pool, n, [&](int64_t i0, int64_t i1) { triad_kernel(a + i0, b + i0, c + i0, s, i1 - i0); });
}

std::vector<double> stream_triad_gbps(int64_t n_floats, int reps) {
  require(n_floats >= 1, "n_floats must be >= 1, got " + std::to_string(n_floats));
  require(n_floats <= (int64_t(1) << 40), "n_floats " + std::to_string(n_floats) + " is absurdly large");
  check_reps(reps);
  const int64_t n = n_floats;
  const uint64_t bytes_per_rep = uint64_t(n) * 3 * sizeof(float);
  check_allocation(bytes_per_rep, "the triad's three arrays of " + std::to_string(n) + " floats");
  AlignedFloats a = aligned_floats(n), b = aligned_floats(n), c = aligned_floats(n);

  auto pool = thread_pool();  // one pool for the first touch and every repetition: the same split
  // Small integers, so b + s * c is exact with or without a fused multiply-add.
  for_blocks(*pool, n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      a[i] = 0.0f;
      b[i] = float(i % 1024);
      c[i] = float(i % 7);
    }
  });
  auto run = [&] {
    for_blocks(*pool, n, [&](int64_t i0, int64_t i1) {
      triad_kernel(a.get() + i0, b.get() + i0, c.get() + i0, kTriadScalar, i1 - i0);
    });
  };
  const std::vector<double> gbps = timed_gbps(run, bytes_per_rep, reps, [] {});
  // A sample of the results against the formula: the timed loop really computed the triad.
  const int64_t stride = std::max<int64_t>(1, n / 4096);
  for (int64_t i = 0; i < n; i += stride)
    if (a[i] != float(i % 1024) + kTriadScalar * float(i % 7))
      throw std::logic_error("stream_triad_gbps: wrong result at index " + std::to_string(i));
  return gbps;
}

namespace {
// XOR of the 64-bit words of [p, p + n floats): integer, so the compiler vectorizes it, and every
// byte read counts in the result. n even.
uint64_t fold_words(const float* p, int64_t n) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n / 2; i += 8) {  // a 64-byte line per step, the next ones asked for 2 KiB ahead
    __builtin_prefetch(w + i + 256, /*rw=*/0, /*locality=*/3);
    for (int j = 0; j < 8; ++j) acc[j] ^= w[i + j];
  }
  for (; i < n / 2; ++i) acc[0] ^= w[i];
  uint64_t x = 0;
  for (uint64_t a : acc) x ^= a;
  return x;
}
}  // namespace

std::vector<double> stream_read_gbps(int64_t n_floats, int reps) {
  require(n_floats >= 2, "n_floats must be >= 2, got " + std::to_string(n_floats));
  require(n_floats <= (int64_t(3) << 40), "n_floats " + std::to_string(n_floats) + " is absurdly large");
  check_reps(reps);
  const int64_t n = n_floats & ~int64_t(1023);  // whole 4 KiB blocks: every thread's range is even
  require(n >= 1024, "n_floats must be >= 1024 for the read stream, got " + std::to_string(n_floats));
  const uint64_t bytes_per_rep = uint64_t(n) * sizeof(float);
  check_allocation(bytes_per_rep, "the read stream's array of " + std::to_string(n) + " floats");
  // On huge pages and with a software prefetch, as decoding reads its weights (the engine's
  // arena, the GEMVs): a stream slower than the engine's own reads is no ceiling.
  const std::shared_ptr<void> buffer = zeroed_buffer(bytes_per_rep, /*huge_pages=*/true);
  float* const a = static_cast<float*>(buffer.get());
  auto pool = thread_pool();
  for_blocks(*pool, n, [&](int64_t i0, int64_t i1) {  // first touch with the timed loop's split
    for (int64_t i = i0; i < i1; ++i) a[i] = float(i % 4093);
  });
  const uint64_t expected = fold_words(a, n);
  std::atomic<uint64_t> folded{0};
  auto run = [&] {
    folded = 0;
    // XOR is associative and commutative: the ranges' folds combine in any order
    for_blocks(*pool, n, [&](int64_t i0, int64_t i1) { folded.fetch_xor(fold_words(a + i0, i1 - i0)); });
  };
  return timed_gbps(run, bytes_per_rep, reps, [&] {
    if (folded != expected) throw std::logic_error("stream_read_gbps: the folded value is wrong");
  });
}

std::vector<double> linear_seconds(int64_t M, int64_t N, int64_t K, int reps, const std::string& weight_dtype,
                                   const std::string& matmul_precision) {
  require(M >= 1 && N >= 1 && K >= 1, "matmul sizes must be >= 1, got M=" + std::to_string(M) +
                                          " N=" + std::to_string(N) + " K=" + std::to_string(K));
  const int64_t limit = int64_t(1) << 24;
  require(M <= limit && N <= limit && K <= limit, "matmul sizes must be at most 2^24 each");
  check_reps(reps);
  const WeightFormat format = parse_weight_format(weight_dtype);
  const MatmulPrecision precision = parse_matmul_precision(matmul_precision);
  const double floats = double(M) * double(K) + double(N) * double(K) + double(M) * double(N);
  require(floats * 4 < 9.0e18, "the matmul operands are absurdly large");
  check_allocation(uint64_t(floats * 4), "the matmul's operands (" + std::to_string(M) + "x" + std::to_string(K) +
                                             ", " + std::to_string(N) + "x" + std::to_string(K) + ")");
  std::vector<float> x(size_t(M * K)), y(size_t(M * N));
  Tensor w = Tensor::zeros(DType::F32, {N, K});
  SplitMix64 rng(0x5eedca11b7a7e000ull);
  for (float& v : x) v = rng.uniform_pm1();
  for (int64_t i = 0; i < N * K; ++i) w.f32()[i] = rng.uniform_pm1();
  const cpu::PackedWeight packed = cpu::pack_weight(w, format);
  cpu::LinearScratch scratch;
  scratch.reserve(thread_pool()->num_threads(), K, M);

  cpu::linear(packed, x.data(), M, y.data(), false, &scratch, precision);  // warm-up
  std::vector<double> seconds;
  seconds.reserve(size_t(reps));
  for (int r = 0; r < reps; ++r) {
    const int64_t start = now_ns();
    cpu::linear(packed, x.data(), M, y.data(), false, &scratch, precision);
    seconds.push_back(seconds_since(start));
  }
  return seconds;
}

std::vector<double> matmul_gflops(int64_t M, int64_t N, int64_t K, int reps) {
  std::vector<double> rates = linear_seconds(M, N, K, reps, "f32");
  for (double& r : rates) r = 2.0 * double(M) * double(N) * double(K) / r * 1e-9;
  return rates;
}

std::vector<double> multiply_add_peak_gflops(const std::string& weight_dtype, int reps) {
  check_reps(reps);
  const WeightFormat format = parse_weight_format(weight_dtype);
  require(cpu::simd_level() != cpu::SimdLevel::Scalar,
          "the multiply-add peak is measured for the AVX2 and AVX-512 GEMMs; the SIMD level is scalar");
  const bool avx2 = cpu::simd_level() == cpu::SimdLevel::Avx2;
  const cpu::Bf16Gemm instruction = avx2 ? cpu::Bf16Gemm::Widened : cpu::gemm_instruction(format);
  const int threads = thread_pool()->num_threads();
  // ~15-30 ms per thread at 3 GHz (an AMX tile product does 256x a vector FMA's work)
  const int64_t iterations = instruction == cpu::Bf16Gemm::Amx ? int64_t(1) << 19 : int64_t(1) << 22;
  std::vector<float> sinks(size_t(threads) * 16);
  std::vector<double> flops_per_thread(static_cast<size_t>(threads));
  auto run = [&] {
    // one chunk per thread; indexed by chunk (a thread may run two when another is descheduled)
    thread_pool()->parallel_for(threads, [&](int64_t c, int64_t) {
      float* sink = &sinks[size_t(c) * 16];
      flops_per_thread[size_t(c)] = avx2 ? cpu::fma_peak_loop_avx2(iterations, sink)
                                         : cpu::multiply_add_peak_loop(instruction, iterations, sink);
    });
  };
  run();  // warm-up (and clock ramp-up)
  double flops = 0;
  for (double f : flops_per_thread) flops += f;
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    const int64_t start = now_ns();
    run();
    rates.push_back(flops / seconds_since(start) * 1e-9);
  }
  return rates;
}

}  // namespace celer
