// Machine calibration (calibrate.h): the triad bandwidth and the engine's GEMM throughput.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "calibrate.h"

namespace py = pybind11;

namespace celer::py_bind {

void bind_calibrate(py::module_& m) {
  m.def(
      "stream_triad",
      [](int64_t n_floats, int reps) {
        py::gil_scoped_release release;
        return stream_triad_gbps(n_floats, reps);
      },
      py::arg("n_floats") = kTriadDefaultFloats, py::arg("reps") = 10,
      R"(Per-repetition GB/s of a STREAM-style triad a = b + 3 c over three float32 arrays of
n_floats each (3 * 4 * n_floats bytes counted per repetition, as STREAM counts: write-allocate
traffic is not included), run on the engine's thread pool after one warm-up.)");
  m.def(
      "matmul_gflops",
      [](int64_t M, int64_t N, int64_t K, int reps) {
        py::gil_scoped_release release;
        return matmul_gflops(M, N, K, reps);
      },
      py::arg("M"), py::arg("N"), py::arg("K"), py::arg("reps") = 10,
      R"(Per-repetition GFLOP/s of the engine's GEMM (the one prefill uses), y (M, N) = x (M, K)
@ w (N, K)^T on random float32 data, counting 2 * M * N * K flops, after one warm-up.)");
}

}  // namespace celer::py_bind
