// Calibration: the triad kernel computes the triad; both measurements return one positive,
// finite rate per repetition and refuse bad sizes. No speed is asserted.
#include <cmath>
#include <vector>

#include "backend/cpu/calibrate.h"
#include "core/error.h"
#include "harness.h"
#include "backend/cpu/threadpool.h"

using namespace celer;

TEST(triad_kernel_computes_b_plus_s_c) {
  const int64_t n = 37;
  auto b = celer_test::random_floats(n, 11), c = celer_test::random_floats(n, 12);
  std::vector<float> a(n, -1.0f);
  triad_kernel(a.data(), b.data(), c.data(), 3.0f, n);
  for (int64_t i = 0; i < n; ++i) CHECK_NEAR(a[i], double(b[i]) + 3.0 * double(c[i]), 1e-6);
}

TEST(triad_parallel_covers_every_element_across_blocks) {
  // Not a multiple of the 1024-float block, more than one block per thread, odd thread count.
  const int64_t n = 5 * 1024 + 77;
  auto b = celer_test::random_floats(n, 13), c = celer_test::random_floats(n, 14);
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    std::vector<float> a(n + 1, -7.0f);  // one guard element past the end
    triad_parallel(a.data(), b.data(), c.data(), -0.5f, n);
    for (int64_t i = 0; i < n; ++i) CHECK_NEAR(a[i], double(b[i]) - 0.5 * double(c[i]), 1e-6);
    CHECK(a[n] == -7.0f);
  }
  set_num_threads(0);
}

TEST(stream_triad_returns_positive_finite_rates) {
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(1) << 16}) {
    const std::vector<double> gbps = stream_triad_gbps(n, 3);
    CHECK(gbps.size() == 3);
    for (double g : gbps) CHECK(std::isfinite(g) && g > 0.0);
  }
}

TEST(matmul_gflops_returns_positive_finite_rates) {
  const std::vector<double> g = matmul_gflops(17, 70, 33, 2);
  CHECK(g.size() == 2);
  for (double v : g) CHECK(std::isfinite(v) && v > 0.0);
}

TEST(calibration_refuses_bad_sizes) {
  CHECK_THROWS(ValueError, stream_triad_gbps(0, 1));
  CHECK_THROWS(ValueError, stream_triad_gbps(16, 0));
  CHECK_THROWS(ValueError, stream_triad_gbps(int64_t(1) << 39, 1));  // 6 TiB: more than the machine has
  CHECK_THROWS(ValueError, matmul_gflops(0, 4, 4, 1));
  CHECK_THROWS(ValueError, matmul_gflops(4, 4, -1, 1));
  CHECK_THROWS(ValueError, matmul_gflops(4, 4, 4, 0));
  CHECK_THROWS(ValueError, matmul_gflops(int64_t(1) << 20, int64_t(1) << 20, 16, 1));  // 4 TiB output
}
