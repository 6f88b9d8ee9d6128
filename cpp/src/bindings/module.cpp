// celerinfer._core: the C++ engine. One small file per class, registered here.
#include <pybind11/pybind11.h>

#include "bindings/numpy_tensor.h"
#include "engine/backend.h"
#include "core/error.h"
#include "backend/cpu/threadpool.h"

namespace py = pybind11;

namespace celer::py_bind {
void bind_config(py::module_& m);
void bind_model(py::module_& m);
void bind_engine(py::module_& m);
void bind_sampler(py::module_& m);
void bind_calibrate(py::module_& m);
void bind_gguf(py::module_& m);
}  // namespace celer::py_bind

PYBIND11_MODULE(_core, m) {
  using namespace celer;
  m.doc() = "celerinfer C++ engine";

  // Exceptions: FormatError is a ValueError subclass; IOError becomes OSError.
  static py::exception<FormatError> format_error(m, "FormatError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const FormatError& e) {
      py::set_error(format_error, e.what());
    } catch (const celer::ValueError& e) {
      py::set_error(PyExc_ValueError, e.what());
    } catch (const celer::IOError& e) {
      py::set_error(PyExc_OSError, e.what());
    } catch (const celer::Interrupted& e) {
      py::set_error(PyExc_KeyboardInterrupt, e.what());
    }
  });

  py_bind::bind_config(m);
  py_bind::bind_model(m);
  py_bind::bind_engine(m);
  py_bind::bind_sampler(m);
  py_bind::bind_calibrate(m);
  py_bind::bind_gguf(m);

  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Threads for the C++ engine (n <= 0: CELER_NUM_THREADS or all CPUs).");
  m.def("get_num_threads", &get_num_threads);
  m.attr("built_with_cuda") = built_with_cuda();
}
