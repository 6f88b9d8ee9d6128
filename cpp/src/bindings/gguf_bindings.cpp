// GGUF files: load (a Model and the file's metadata), inspect, save.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>

#include "core/error.h"
#include "core/model.h"
#include "io/gguf.h"

namespace py = pybind11;

namespace celer::py_bind {

namespace {
// The metadata as one Python object (a bare std::vector would become a list).
struct Metadata {
  GgufMetadata items;
};
using MetadataPtr = std::shared_ptr<Metadata>;

py::object to_python(const GgufValue& v) {
  switch (v.type) {
    case GgufType::Bool: return py::bool_(v.integer != 0);
    case GgufType::F32: case GgufType::F64: return py::float_(v.number);
    case GgufType::String: return py::str(v.text);
    case GgufType::Array: {
      if (v.element_type == GgufType::String) return py::cast(v.texts);
      if (v.element_type == GgufType::F32 || v.element_type == GgufType::F64) return py::cast(v.numbers);
      if (v.element_type == GgufType::Bool) {
        py::list out;
        for (int64_t b : v.integers) out.append(py::bool_(b != 0));
        return std::move(out);
      }
      return py::cast(v.integers);
    }
    default: return py::int_(v.integer);
  }
}

// A Python value as GGUF metadata, with the types llama.cpp reads such keys as: int -> uint32
// (int64 when outside it), float -> float32, bool, str; lists of int -> int32, of float ->
// float32, of str.
GgufValue from_python(const std::string& key, const py::handle& value) {
  GgufValue v;
  auto integer = [&](const py::handle& h, GgufType& type, int64_t& out) {
    out = h.cast<int64_t>();
    type = out >= 0 && out <= int64_t(UINT32_MAX) ? GgufType::U32 : GgufType::I64;
  };
  if (py::isinstance<py::bool_>(value)) {
    v.type = GgufType::Bool;
    v.integer = value.cast<bool>();
  } else if (py::isinstance<py::int_>(value)) {
    integer(value, v.type, v.integer);
  } else if (py::isinstance<py::float_>(value)) {
    v.type = GgufType::F32;
    v.number = value.cast<double>();
  } else if (py::isinstance<py::str>(value)) {
    v.type = GgufType::String;
    v.text = value.cast<std::string>();
  } else if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    v.type = GgufType::Array;
    py::sequence items = value.cast<py::sequence>();
    v.element_type = GgufType::I32;
    if (py::len(items) > 0) {
      const py::handle first = items[0];
      if (py::isinstance<py::str>(first)) v.element_type = GgufType::String;
      else if (py::isinstance<py::float_>(first)) v.element_type = GgufType::F32;
    }
    for (const py::handle item : items) {
      if (v.element_type == GgufType::String) v.texts.push_back(item.cast<std::string>());
      else if (v.element_type == GgufType::F32) v.numbers.push_back(item.cast<double>());
      else v.integers.push_back(item.cast<int64_t>());
    }
  } else {
    throw ValueError("GGUF metadata '" + key + "': cannot store a " +
                     std::string(py::str(value.get_type().attr("__name__"))));
  }
  return v;
}
}  // namespace

void bind_gguf(py::module_& m) {
  py::class_<Metadata, MetadataPtr>(m, "GgufMetadata",
                                     "A GGUF file's metadata, keeping each value's GGUF type for saving.")
      .def("__len__", [](const Metadata& md) { return md.items.size(); })
      .def("__contains__", [](const Metadata& md, const std::string& key) { return find_key(md.items, key) != nullptr; })
      .def("__getitem__",
           [](const Metadata& md, const std::string& key) {
             const GgufValue* v = find_key(md.items, key);
             if (v == nullptr) throw py::key_error(key);
             return to_python(*v);
           })
      .def("get",
           [](const Metadata& md, const std::string& key, py::object fallback) {
             const GgufValue* v = find_key(md.items, key);
             return v == nullptr ? fallback : to_python(*v);
           },
           py::arg("key"), py::arg("default") = py::none())
      .def("keys", [](const Metadata& md) {
        std::vector<std::string> out;
        for (const auto& kv : md.items) out.push_back(kv.first);
        return out;
      })
      .def("type_of", [](const Metadata& md, const std::string& key) {
        const GgufValue* v = find_key(md.items, key);
        if (v == nullptr) throw py::key_error(key);
        return v->type == GgufType::Array ? "array[" + gguf_type_name(v->element_type) + "]" : gguf_type_name(v->type);
      }, "The GGUF type of a key's value (e.g. 'uint32', 'array[string]').");

  m.def(
      "load_gguf",
      [](const std::string& path) {
        auto metadata = std::make_shared<Metadata>();
        std::shared_ptr<Model> model;
        {
          py::gil_scoped_release release;
          model = std::make_shared<Model>(load_gguf(path, &metadata->items));
        }
        return py::make_tuple(model, metadata);
      },
      py::arg("path"), "(Model, GgufMetadata) of a GGUF file, its tensors memory-mapped.");
  m.def(
      "read_gguf",
      [](const std::string& path) {
        GgufFile g;
        {
          py::gil_scoped_release release;
          g = read_gguf(path);
        }
        py::list tensors;
        for (const GgufTensor& t : g.tensors)
          tensors.append(py::dict(py::arg("name") = t.name, py::arg("dtype") = dtype_name(t.dtype),
                                  py::arg("shape") = py::tuple(py::cast(t.shape)), py::arg("offset") = t.offset));
        return py::dict(py::arg("version") = g.version, py::arg("alignment") = g.alignment,
                        py::arg("tensors") = tensors,
                        py::arg("metadata") = std::make_shared<Metadata>(Metadata{std::move(g.metadata)}));
      },
      py::arg("path"), "A GGUF file's structure, validated: version, alignment, tensors, metadata.");
  m.def(
      "save_gguf",
      [](const Model& model, const std::string& path, const std::string& format, const MetadataPtr& base,
         const py::dict& extra) {
        GgufMetadata md = base ? base->items : GgufMetadata{};
        for (auto [key, value] : extra) {
          const std::string k = py::str(key);
          GgufValue v = from_python(k, value);
          bool replaced = false;
          for (auto& kv : md)
            if (kv.first == k) kv.second = v, replaced = true;
          if (!replaced) md.emplace_back(k, std::move(v));
        }
        py::gil_scoped_release release;
        save_gguf(model, path, format, md);
      },
      py::arg("model"), py::arg("path"), py::arg("format") = "stored", py::arg("metadata") = nullptr,
      py::arg("extra") = py::dict(),
      "Writes a GGUF file: matrices in `format`, the metadata's keys plus `extra` (config sizes always win).");
  m.def("gguf_write_formats", &gguf_write_formats);
}

}  // namespace celer::py_bind
