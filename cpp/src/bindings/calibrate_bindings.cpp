// Machine calibration (calibrate.h): the triad bandwidth and the engine's GEMM throughput.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "backend/cpu/gemm.h"
#include "backend/cpu/gemv.h"
#include "backend/cpu/simd.h"
#include "core/error.h"
#include "backend/cpu/calibrate.h"

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
      "stream_read",
      [](int64_t n_floats, int reps) {
        py::gil_scoped_release release;
        return stream_read_gbps(n_floats, reps);
      },
      py::arg("n_floats") = 3 * kTriadDefaultFloats, py::arg("reps") = 10,
      R"(Per-repetition GB/s of a read-only stream over one float32 array of n_floats (4 *
n_floats bytes per repetition), run on the engine's thread pool after one warm-up: the traffic
of a decode step's weights, which the triad (two reads and a write) can understate.)");
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
      [](int64_t M, int64_t N, int64_t K, int reps, const std::string& weight_dtype,
         const std::string& matmul_precision) {
        py::gil_scoped_release release;
        return linear_seconds(M, N, K, reps, weight_dtype, matmul_precision);
      },
      py::arg("M"), py::arg("N"), py::arg("K"), py::arg("reps") = 10, py::arg("weight_dtype") = "f32",
      py::arg("matmul_precision") = "highest",
      "Per-repetition seconds of the engine's linear layer on (M, K) x (N, K)^T with the weights packed "
      "as weight_dtype (f32, bf16, int8) and the GEMM at matmul_precision (highest, high), after one warm-up.");
  m.def(
      "multiply_add_peak_gflops",
      [](const std::string& weight_dtype, int reps) {
        py::gil_scoped_release release;
        return multiply_add_peak_gflops(weight_dtype, reps);
      },
      py::arg("weight_dtype") = "f32", py::arg("reps") = 5,
      "Per-repetition GFLOP/s of the multiply-add instruction the prefill GEMM uses for weight_dtype "
      "(f32 FMA; at avx512 for bf16 AMX tile products or vdpbf16ps where the CPU has them: prefill_gemm()) on "
      "every engine thread, nothing loaded: the GEMM's compute ceiling. ValueError at the scalar SIMD level.");
  m.def("bf16_gemm_paths", [] {
    std::vector<std::string> out;
    for (cpu::Bf16Gemm p : cpu::bf16_gemm_paths()) out.push_back(cpu::bf16_gemm_name(p));
    return out;
  }, "The ways this CPU can run the bf16 prefill GEMM at the avx512 level: widened (weights widened to f32, "
     "f32 FMAs), pairs (vdpbf16ps, AVX512_BF16), amx (AMX tiles).");
  m.def("bf16_gemm_path", [] { return cpu::bf16_gemm_name(cpu::gemm_bf16_path()); },
        "The bf16 prefill GEMM's path now (forced, or the fastest this CPU has).");
  m.def("set_bf16_gemm_path", [](const std::optional<std::string>& name) {
    if (!name) return cpu::set_gemm_bf16_path(nullptr);
    for (cpu::Bf16Gemm p : {cpu::Bf16Gemm::Widened, cpu::Bf16Gemm::Pairs, cpu::Bf16Gemm::Amx})
      if (cpu::bf16_gemm_name(p) == *name) return cpu::set_gemm_bf16_path(&p);
    throw ValueError("unknown bf16 GEMM path '" + *name + "' (expected widened, pairs or amx)");
  }, py::arg("path"), "Force the bf16 prefill GEMM's path (None: the default choice); ValueError when this CPU "
     "cannot run it. For tests and measurements.");
  m.def("f32_gemm_tile", [] { return cpu::f32_tile_name(cpu::gemm_f32_tile()); },
        "The register tile the avx512 level's f32 prefill GEMM runs: avx512, or avx2 where that one was "
        "measured faster on this CPU (or forced).");
  m.def("set_f32_gemm_tile", [](const std::optional<std::string>& name) {
    if (!name) return cpu::set_gemm_f32_tile(nullptr);
    for (cpu::F32Tile t : {cpu::F32Tile::Avx512, cpu::F32Tile::Avx2})
      if (cpu::f32_tile_name(t) == *name) return cpu::set_gemm_f32_tile(&t);
    throw ValueError("unknown f32 GEMM tile '" + *name + "' (expected avx512 or avx2)");
  }, py::arg("tile"), "Force the avx512 level's f32 GEMM tile (None: the measured choice); ValueError on a CPU "
     "without AVX-512. For tests and measurements.");
  m.def("decode_gemv", [](const std::string& weight_dtype) -> std::string {
    const WeightFormat format = parse_weight_format(weight_dtype);
    const cpu::SimdLevel level = cpu::simd_level();
    if (level == cpu::SimdLevel::Avx512 && format == WeightFormat::BF16 && cpu::cpu_has_avx512_bf16())
      return "avx512-vdpbf16ps";
    return cpu::simd_name(cpu::gemv_kernel_level(format, level));
  }, py::arg("weight_dtype"),
     "The kernel the decode GEMV runs for weight_dtype now: avx512-vdpbf16ps (bf16 where the CPU has it), or the "
     "SIMD level of its kernel (scalar, avx2, avx512; at avx512 the 4-bit formats run the avx2 kernel where that "
     "was measured faster on this CPU).");
  m.def("set_q4_gemv_kernel", [](const std::optional<std::string>& name) {
    if (!name) return cpu::set_q4_gemv_level(nullptr);
    const cpu::SimdLevel level = cpu::parse_simd_level(*name);
    cpu::set_q4_gemv_level(&level);
  }, py::arg("kernel"), "Force the avx512 level's 4-bit GEMV kernel (avx2 or avx512; None: the measured choice); "
     "ValueError on a CPU without AVX-512. For tests and measurements.");
  m.def("prefill_gemm", [](const std::string& weight_dtype, const std::string& matmul_precision) -> std::string {
    const WeightFormat format = parse_weight_format(weight_dtype);
    const MatmulPrecision precision = parse_matmul_precision(matmul_precision);
    if (cpu::gemm_avx2_active()) return "avx2-fma";
    if (!cpu::gemm_avx512_active()) return "eigen";
    if (cpu::gemm_splits(format, precision)) return "amx-bf16x3";
    switch (cpu::gemm_instruction(format)) {
      case cpu::Bf16Gemm::Amx: return "amx-bf16";
      case cpu::Bf16Gemm::Pairs: return "avx512-vdpbf16ps";
      default: return cpu::gemm_f32_tile() == cpu::F32Tile::Avx2 ? "avx2-fma" : "avx512-fma";
    }
  }, py::arg("weight_dtype"), py::arg("matmul_precision") = "highest",
     "The kernel the prefill GEMM runs for weight_dtype at matmul_precision now: amx-bf16, amx-bf16x3 "
     "(f32 and int8 at high, on AMX), avx512-vdpbf16ps, avx512-fma, avx2-fma (the avx2 SIMD level) or eigen (the scalar level).");
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
