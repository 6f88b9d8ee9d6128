// numpy <-> device helpers for the _cuda test bindings: upload a C-contiguous array of T
// (converting when needed), download into a new numpy array, and shape checks that raise
// ValueError (never a crash on a bad argument).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "backend/cuda/device_buffer.h"
#include "core/error.h"

namespace celer::cuda::py_arrays {

namespace py = pybind11;
template <class T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
DeviceBuffer<T> upload(const Array<T>& a) {
  DeviceBuffer<T> d(size_t(a.size()));
  d.upload(a.data(), size_t(a.size()));
  return d;
}

template <class T>
py::array_t<T> download(const DeviceBuffer<T>& d, const std::vector<py::ssize_t>& shape) {
  py::array_t<T> out(shape);
  d.download(out.mutable_data(), size_t(out.size()));
  return out;
}

template <class T>
void require_ndim(const Array<T>& a, int ndim, const char* name) {
  require(a.ndim() == ndim, std::string(name) + " must have " + std::to_string(ndim) + " dimension(s), got " +
                                std::to_string(a.ndim()));
}

}  // namespace celer::cuda::py_arrays
