#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "core/config.h"
#include "core/error.h"

namespace py = pybind11;

namespace celer::py_bind {

namespace {
// The constructor's arguments arrive as Python objects and are converted here, so that a wrong
// type or an integer past int64 is a ValueError naming the field (pybind11's own overload
// resolution would answer with its "incompatible constructor arguments" listing).
int64_t int_field(const py::object& value, const char* name) {
  if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr()))
    throw ValueError(std::string(name) + " must be an integer, got " + std::string(py::repr(value)));
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow != 0) throw ValueError(std::string(name) + " is out of range: " + std::string(py::repr(value)));
  return v;
}

double real_field(const py::object& value, const char* name) {
  if (PyBool_Check(value.ptr()) || PyUnicode_Check(value.ptr()) || !PyNumber_Check(value.ptr()))
    throw ValueError(std::string(name) + " must be a number, got " + std::string(py::repr(value)));
  const double v = PyFloat_AsDouble(value.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw ValueError(std::string(name) + " must be a number, got " + std::string(py::repr(value)));
  }
  return v;
}

bool bool_field(const py::object& value, const char* name) {
  const py::handle type = py::type::of(value);
  const std::string type_name = py::str(type.attr("__name__")), module = py::str(type.attr("__module__"));
  const bool numpy_bool = module == "numpy" && (type_name == "bool" || type_name == "bool_");
  if (!PyBool_Check(value.ptr()) && !numpy_bool)
    throw ValueError(std::string(name) + " must be True or False, got " + std::string(py::repr(value)));
  return value.cast<bool>();
}

std::string str_field(const py::object& value, const char* name) {
  if (!PyUnicode_Check(value.ptr()))
    throw ValueError(std::string(name) + " must be a string, got " + std::string(py::repr(value)));
  return value.cast<std::string>();
}
}  // namespace

void bind_config(py::module_& m) {
  py::class_<ModelConfig>(m, "ModelConfig", R"(Model configuration (Hugging Face names). Immutable;
validated on construction (ValueError names the field). intermediate_size=0 applies the seed
rule: 4*hidden_size rounded up to a multiple of 64 (gpt2: 4*hidden_size). architecture: llama,
qwen2 (q/k/v biases) or gpt2 (learned positions, LayerNorm, biases, GELU MLP). hidden_act="":
the architecture's (silu; gpt2: gelu_new). layer_norm_epsilon: gpt2's LayerNorm epsilon.)")
      .def(py::init([](const py::object& architecture, const py::object& hidden_size,
                       const py::object& num_hidden_layers, const py::object& num_attention_heads,
                       const py::object& num_key_value_heads, const py::object& vocab_size,
                       const py::object& max_position_embeddings, const py::object& intermediate_size,
                       const py::object& rms_norm_eps, const py::object& rope_theta,
                       const py::object& tie_word_embeddings, const py::object& hidden_act,
                       const py::object& layer_norm_epsilon) {
             ModelConfig c;
             c.architecture = str_field(architecture, "architecture");
             c.hidden_size = int_field(hidden_size, "hidden_size");
             c.num_hidden_layers = int_field(num_hidden_layers, "num_hidden_layers");
             c.num_attention_heads = int_field(num_attention_heads, "num_attention_heads");
             c.num_key_value_heads = num_key_value_heads.is_none()
                                         ? c.num_attention_heads
                                         : int_field(num_key_value_heads, "num_key_value_heads");
             c.vocab_size = int_field(vocab_size, "vocab_size");
             c.max_position_embeddings = int_field(max_position_embeddings, "max_position_embeddings");
             c.intermediate_size = int_field(intermediate_size, "intermediate_size");
             c.rms_norm_eps = real_field(rms_norm_eps, "rms_norm_eps");
             c.rope_theta = real_field(rope_theta, "rope_theta");
             c.tie_word_embeddings = bool_field(tie_word_embeddings, "tie_word_embeddings");
             c.hidden_act = str_field(hidden_act, "hidden_act");
             c.layer_norm_epsilon = real_field(layer_norm_epsilon, "layer_norm_epsilon");
             c.resolve();
             return c;
           }),
           py::kw_only(), py::arg("architecture") = py::str("llama"), py::arg("hidden_size") = py::int_(64),
           py::arg("num_hidden_layers") = py::int_(2), py::arg("num_attention_heads") = py::int_(8),
           py::arg("num_key_value_heads") = py::none(), py::arg("vocab_size") = py::int_(128),
           py::arg("max_position_embeddings") = py::int_(128), py::arg("intermediate_size") = py::int_(0),
           py::arg("rms_norm_eps") = py::float_(1e-5), py::arg("rope_theta") = py::float_(1e6),
           py::arg("tie_word_embeddings") = py::bool_(false), py::arg("hidden_act") = py::str(""),
           py::arg("layer_norm_epsilon") = py::float_(1e-5))
      .def_readonly("architecture", &ModelConfig::architecture)
      .def_readonly("hidden_size", &ModelConfig::hidden_size)
      .def_readonly("num_hidden_layers", &ModelConfig::num_hidden_layers)
      .def_readonly("num_attention_heads", &ModelConfig::num_attention_heads)
      .def_readonly("num_key_value_heads", &ModelConfig::num_key_value_heads)
      .def_readonly("vocab_size", &ModelConfig::vocab_size)
      .def_readonly("max_position_embeddings", &ModelConfig::max_position_embeddings)
      .def_readonly("intermediate_size", &ModelConfig::intermediate_size)
      .def_readonly("rms_norm_eps", &ModelConfig::rms_norm_eps)
      .def_readonly("rope_theta", &ModelConfig::rope_theta)
      .def_readonly("tie_word_embeddings", &ModelConfig::tie_word_embeddings)
      .def_readonly("hidden_act", &ModelConfig::hidden_act)
      .def_readonly("layer_norm_epsilon", &ModelConfig::layer_norm_epsilon)
      .def_property_readonly("head_dim", &ModelConfig::head_dim)
      .def_property_readonly("num_parameters", &ModelConfig::num_parameters)
      .def("__repr__", &ModelConfig::to_string)
      .def("__eq__", [](const ModelConfig& a, const ModelConfig& b) { return a == b; })
      .def("__hash__", [](const ModelConfig& c) { return py::hash(py::str(c.to_string())); });
}

}  // namespace celer::py_bind
