// Machine calibration (calibrate.h): the triad bandwidth and the engine's GEMM throughput.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "backend/cpu/simd.h"
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
  m.def(
      "linear_seconds",
      [](int64_t M, int64_t N, int64_t K, int reps, const std::string& weight_dtype) {
        py::gil_scoped_release release;
        return linear_seconds(M, N, K, reps, weight_dtype);
      },
      py::arg("M"), py::arg("N"), py::arg("K"), py::arg("reps") = 10, py::arg("weight_dtype") = "f32",
      "Per-repetition seconds of the engine's linear layer on (M, K) x (N, K)^T with the weights packed "
      "as weight_dtype (f32, bf16, int8), after one warm-up.");
  m.def(
      "multiply_add_peak_gflops",
      [](const std::string& weight_dtype, int reps) {
        py::gil_scoped_release release;
        return multiply_add_peak_gflops(weight_dtype, reps);
      },
      py::arg("weight_dtype") = "f32", py::arg("reps") = 5,
      "Per-repetition GFLOP/s of the multiply-add instruction the AVX-512 prefill GEMM uses for weight_dtype "
      "(f32 FMA; vdpbf16ps for bf16 where the CPU has it) on every engine thread, nothing loaded: the GEMM's "
      "compute ceiling. ValueError below the avx512 SIMD level.");
  m.def("simd_level", [] { return cpu::simd_name(cpu::simd_level()); },
        "The SIMD level the CPU kernels use now: scalar, avx2 or avx512.");
  m.def("set_simd_level", [](const std::string& name) { cpu::set_simd_level(cpu::parse_simd_level(name)); },
        py::arg("level"), "Force the CPU kernels' SIMD level (at most what this CPU supports).");
  m.def("simd_levels", [] {
    std::vector<std::string> out;
    for (cpu::SimdLevel l : cpu::supported_simd_levels()) out.push_back(cpu::simd_name(l));
    return out;
  }, "The SIMD levels this CPU supports, narrowest first.");
}

}  // namespace celer::py_bind
