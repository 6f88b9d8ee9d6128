#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "core/config.h"

namespace py = pybind11;

namespace celer::py_bind {

void bind_config(py::module_& m) {
  py::class_<ModelConfig>(m, "ModelConfig", R"(Model configuration (Hugging Face names). Immutable;
validated on construction (ValueError names the field). intermediate_size=0 applies the seed
rule: 4*hidden_size rounded up to a multiple of 64 (gpt2: 4*hidden_size). architecture: llama,
qwen2 (q/k/v biases) or gpt2 (learned positions, LayerNorm, biases, GELU MLP). hidden_act="":
the architecture's (silu; gpt2: gelu_new). layer_norm_epsilon: gpt2's LayerNorm epsilon.)")
      .def(py::init([](std::string architecture, int64_t hidden_size, int64_t num_hidden_layers,
                       int64_t num_attention_heads, py::object num_key_value_heads, int64_t vocab_size,
                       int64_t max_position_embeddings, int64_t intermediate_size, double rms_norm_eps,
                       double rope_theta, bool tie_word_embeddings, std::string hidden_act,
                       double layer_norm_epsilon) {
             ModelConfig c;
             c.architecture = std::move(architecture);
             c.hidden_size = hidden_size;
             c.num_hidden_layers = num_hidden_layers;
             c.num_attention_heads = num_attention_heads;
             c.num_key_value_heads =
                 num_key_value_heads.is_none() ? num_attention_heads : num_key_value_heads.cast<int64_t>();
             c.vocab_size = vocab_size;
             c.max_position_embeddings = max_position_embeddings;
             c.intermediate_size = intermediate_size;
             c.rms_norm_eps = rms_norm_eps;
             c.rope_theta = rope_theta;
             c.tie_word_embeddings = tie_word_embeddings;
             c.hidden_act = std::move(hidden_act);
             c.layer_norm_epsilon = layer_norm_epsilon;
             c.resolve();
             return c;
           }),
           py::kw_only(), py::arg("architecture") = "llama", py::arg("hidden_size") = 64,
           py::arg("num_hidden_layers") = 2, py::arg("num_attention_heads") = 8,
           py::arg("num_key_value_heads") = py::none(), py::arg("vocab_size") = 128,
           py::arg("max_position_embeddings") = 128, py::arg("intermediate_size") = 0,
           py::arg("rms_norm_eps") = 1e-5, py::arg("rope_theta") = 1e6, py::arg("tie_word_embeddings") = false,
           py::arg("hidden_act") = "", py::arg("layer_norm_epsilon") = 1e-5)
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
