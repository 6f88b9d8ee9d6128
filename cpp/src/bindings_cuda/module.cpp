// celerinfer._cuda: the CUDA backend's status, build facts and (for the tests) each op with
// numpy in and out. A separate module from _core so that importing celerinfer never needs the
// CUDA runtime; cudart is linked statically and the driver / cuBLAS are found at run time.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "backend/cuda/cublas_loader.h"
#include "backend/cuda/device.h"
#include "backend/cuda/device_buffer.h"

namespace py = pybind11;

void bind_cuda_ops(py::module_& m);  // ops_bindings.cpp

#ifndef CELER_CUDA_ARCHS
#define CELER_CUDA_ARCHS "unknown"
#endif
#ifndef CELER_NVCC_VERSION
#define CELER_NVCC_VERSION "unknown"
#endif

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "celerinfer CUDA backend (status, build facts, ops with numpy in/out for the tests)";

  m.def("status", [] {
    const celer::cuda::Status st = celer::cuda::status();
    py::list devices;
    for (const auto& d : st.devices) {
      py::dict e;
      e["index"] = d.index;
      e["name"] = d.name;
      e["compute_capability"] = py::make_tuple(d.major, d.minor);
      e["multiprocessors"] = d.multiprocessors;
      e["total_memory"] = d.total_memory;
      e["free_memory"] = d.free_memory;
      e["memory_bus_bits"] = d.memory_bus_bits;
      e["memory_clock_khz"] = d.memory_clock_khz;
      devices.append(e);
    }
    py::dict out;
    out["device_count"] = st.device_count;
    out["reason"] = st.reason;
    out["runtime_version"] = st.runtime_version;
    out["driver_version"] = st.driver_version;
    out["devices"] = devices;
    return out;
  }, "Driver, runtime and devices; never raises (a missing driver or GPU is given in 'reason').");

  m.def("build_info", [] {
    py::dict out;
    out["cuda_architectures"] = CELER_CUDA_ARCHS;
    out["nvcc_version"] = CELER_NVCC_VERSION;
    return out;
  }, "How this module was compiled: CUDA architectures and nvcc version.");

  m.def("allocated_bytes", &celer::cuda::allocated_bytes, "Device bytes held by celerinfer's buffers now.");

  m.def("load_cublas", [](const std::vector<std::string>& candidates) {
    celer::cuda::cublas::load(candidates);
    return celer::cuda::cublas::loaded_path();
  }, py::arg("candidates") = std::vector<std::string>{},
     "Loads cuBLAS (candidates first, then libcublas.so.13/.12/.so); returns what was loaded. "
     "RuntimeError listing every attempt when none loads.");
  m.def("cublas_path", &celer::cuda::cublas::loaded_path, "The cuBLAS library loaded, or ''.");

  bind_cuda_ops(m);
}
