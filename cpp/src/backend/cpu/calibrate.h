// Machine calibration: the two peaks the roofline model compares the engine against, measured
// with the engine's own thread pool on this machine.
//
// - Memory bandwidth: a STREAM-style triad a[i] = b[i] + s * c[i] over three float arrays much
//   larger than the last-level cache. Bytes per repetition are counted as STREAM counts them,
//   3 * 4 * n (two reads and one write); the write-allocate read of `a` that a cache without
//   non-temporal stores also performs is NOT counted, so the figure is comparable to STREAM's.
// - Matmul throughput: the engine's own GEMM (cpu::matmul_nt, the one prefill runs) on random
//   fp32 data, 2 * M * N * K flops per repetition. This is the peak *this engine* reaches here,
//   not the CPU's theoretical FMA peak.
//
// Both run one warm-up repetition, then time `reps` repetitions one by one and return the rate
// of each (the caller summarises them: median, best, spread).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace celer {

// 64 MiB per triad array (16 Mi floats): the default working set is 3 x 64 MiB. Callers that
// know the last-level cache size should pick larger (see python/celerinfer/calibration.py).
constexpr int64_t kTriadDefaultFloats = int64_t(16) << 20;

// The triad kernel on one contiguous range: a[i] = b[i] + s * c[i], i < n.
void triad_kernel(float* a, const float* b, const float* c, float s, int64_t n);

// The same over [0, n), split across the engine's thread pool in chunks of whole 4 KiB blocks.
// The split depends only on n and the pool size, so an initialisation run through this split
// (first touch) places each page near the thread that later streams it.
void triad_parallel(float* a, const float* b, const float* c, float s, int64_t n);

// Per-repetition GB/s (1e9 bytes/s) of the triad over three arrays of n_floats each (64-byte
// aligned, first-touch initialised in parallel with the timed loop's split). After timing, a
// sample of the results is checked against the formula (a wrong kernel throws std::logic_error).
// ValueError for n_floats < 1, reps < 1, or more memory than the machine has.
std::vector<double> stream_triad_gbps(int64_t n_floats = kTriadDefaultFloats, int reps = 10);

// Per-repetition GB/s of a read-only stream over one array of n_floats floats (4 * n_floats
// bytes per repetition), split across the pool like the triad: what a decode step does with
// its weights (it reads them and writes almost nothing). A triad counts writes too, and a
// machine whose writes are slower than its reads shows a triad below what decode can reach:
// the ceiling of "% of bandwidth" is the best of both. The folded value is checked against
// the array's (a loop the compiler dropped throws std::logic_error). Same checks as the triad.
std::vector<double> stream_read_gbps(int64_t n_floats = 3 * kTriadDefaultFloats, int reps = 10);

// Per-repetition GFLOP/s (1e9 flop/s) of cpu::matmul_nt on y (M, N) = x (M, K) @ w (N, K)^T
// with uniform random inputs, counting 2 * M * N * K flops. ValueError for sizes < 1, reps < 1
// or more memory than the machine has.
std::vector<double> matmul_gflops(int64_t M, int64_t N, int64_t K, int reps = 10);

// Per-repetition seconds of the engine's linear layer (linear.h) y (M, N) = x (M, K) @ W^T with
// W packed as weight_dtype ("f32", "bf16", "int8"): the kernel micro-benchmark (few rows: the
// decode GEMV; many: the prefill GEMM). Same checks as matmul_gflops.
// `matmul_precision`: "highest" or "high" (backend/cpu/matmul_precision.h).
std::vector<double> linear_seconds(int64_t M, int64_t N, int64_t K, int reps, const std::string& weight_dtype,
                                   const std::string& matmul_precision = "highest");

// Per-repetition GFLOP/s of the multiply-add instruction the prefill GEMM uses for
// weight_dtype (f32 FMA; at avx512 vdpbf16ps or AMX for bf16 where the CPU has them), every
// thread running independent chains with nothing loaded: the compute ceiling GEMM throughput
// is judged against. ValueError at the scalar level.
std::vector<double> multiply_add_peak_gflops(const std::string& weight_dtype, int reps = 5);

}  // namespace celer
