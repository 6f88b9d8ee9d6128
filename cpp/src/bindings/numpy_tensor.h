// numpy <-> Tensor at the Python boundary. Arrays coming in are copied only when they are
// small inputs; tensors going out are zero-copy views that keep the C++ storage alive.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "core/tensor.h"

namespace celer::py_bind {

namespace py = pybind11;

// A C-contiguous copy of `array` as a Tensor (dtype mapped from numpy; unknown -> ValueError).
Tensor tensor_from_numpy(const py::array& array, const char* what);

// A numpy view of `tensor` (no copy); writeable=false marks model weights read-only.
py::array numpy_from_tensor(const Tensor& tensor, bool writeable = true);

// numpy view or None when the tensor is empty.
py::object numpy_or_none(const Tensor& tensor);

}  // namespace celer::py_bind
