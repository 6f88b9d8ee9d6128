#include "bindings/numpy_tensor.h"

#include <cstring>

#include "core/error.h"

namespace celer::py_bind {

namespace {
DType dtype_from_numpy(const py::dtype& dt, const char* what) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4) return DType::F32;
  if (kind == 'f' && size == 8) return DType::F64;
  if (kind == 'f' && size == 2) return DType::F16;
  if (kind == 'i' && size == 4) return DType::I32;
  if (kind == 'i' && size == 8) return DType::I64;
  if (kind == 'i' && size == 1) return DType::I8;
  if (kind == 'u' && size == 1) return DType::U8;
  if (kind == 'b') return DType::BOOL;
  throw ValueError(std::string(what) + ": unsupported dtype " + std::string(py::str(dt)));
}

py::dtype numpy_dtype(DType d) {
  switch (d) {
    case DType::F32: return py::dtype::of<float>();
    case DType::F64: return py::dtype::of<double>();
    case DType::F16: return py::dtype("float16");
    case DType::BF16: return py::dtype("uint16");  // numpy has no bfloat16: raw bits
    case DType::I32: return py::dtype::of<int32_t>();
    case DType::I64: return py::dtype::of<int64_t>();
    case DType::I8: return py::dtype::of<int8_t>();
    case DType::U8: return py::dtype::of<uint8_t>();
    case DType::BOOL: return py::dtype("bool");
    default: break;
  }
  throw ValueError("a " + dtype_name(d) + " tensor has no numpy dtype (dequantize it first)");
}
}  // namespace

Tensor tensor_from_numpy(const py::array& array, const char* what) {
  const DType dtype = dtype_from_numpy(array.dtype(), what);
  py::array c = py::array::ensure(array, py::array::c_style);
  // a big-endian array (">f4") holds the same values in swapped bytes: copy them in native order
  if (c && !c.dtype().attr("isnative").cast<bool>())
    c = c.attr("astype")(c.dtype().attr("newbyteorder")("="));
  if (!c) throw ValueError(std::string(what) + ": cannot make a C-contiguous array");
  Shape shape(c.shape(), c.shape() + c.ndim());
  Tensor t = Tensor::zeros(dtype, shape);
  std::memcpy(t.data, c.data(), t.nbytes());
  return t;
}

py::array numpy_from_tensor(const Tensor& tensor, bool writeable) {
  auto* keep = new std::shared_ptr<void>(tensor.owner);
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<void>*>(p); });
  std::vector<py::ssize_t> shape(tensor.shape.begin(), tensor.shape.end());
  py::array out(numpy_dtype(tensor.dtype), shape, tensor.data, owner);
  if (!writeable) py::detail::array_proxy(out.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return out;
}

py::object numpy_or_none(const Tensor& tensor) {
  if (tensor.empty()) return py::none();
  return numpy_from_tensor(tensor);
}

}  // namespace celer::py_bind
