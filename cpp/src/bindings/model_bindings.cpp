#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/numpy_tensor.h"
#include "engine/forward.h"
#include "io/config_json.h"
#include "io/hf_config.h"
#include "io/hf_weights.h"
#include "io/io_util.h"
#include "io/safetensors.h"
#include "io/seed_json.h"
#include "core/model.h"

namespace py = pybind11;

namespace celer::py_bind {

using ModelPtr = std::shared_ptr<Model>;

void bind_model(py::module_& m) {
  py::class_<Model, ModelPtr>(m, "Model", "Weights and config of a model (C++ side; see celerinfer.Model).")
      .def_property_readonly("config", [](const Model& self) { return self.config; })
      .def_property_readonly("input_ids", [](const Model& self) { return numpy_or_none(self.input_ids); })
      .def_property_readonly("attention_mask", [](const Model& self) { return numpy_or_none(self.attention_mask); })
      .def_property_readonly("weight_dtypes",
                             [](Model& self) {
                               py::dict out;
                               for (const WeightSlot& slot : weight_slots(self))
                                 out[py::str(slot.name)] = dtype_name(slot.tensor->dtype);
                               return out;
                             },
                             "Hugging Face name -> the dtype the model stores the weight in (float32, q4_1, ...).")
      .def_property_readonly("rope_interleaved_rows", [](const Model& self) { return self.rope_interleaved_rows; })
      .def_property_readonly("rope",
                             [](const Model& self) -> py::object {
                               if (self.rope_cos.empty()) return py::none();
                               return py::make_tuple(numpy_from_tensor(self.rope_cos, false),
                                                     numpy_from_tensor(self.rope_sin, false));
                             })
      .def(
          "set_inputs",
          [](Model& self, py::object input_ids, py::object attention_mask) {
            Tensor ids = input_ids.is_none() ? Tensor() : tensor_from_numpy(input_ids, "input_ids");
            Tensor mask = attention_mask.is_none() ? Tensor() : tensor_from_numpy(attention_mask, "attention_mask");
            if (!ids.empty()) check_tokens(self.config, ids, &mask);
            self.input_ids = std::move(ids);
            self.attention_mask = std::move(mask);
          },
          py::arg("input_ids"), py::arg("attention_mask") = py::none())
      .def(
          "state_dict",
          [](Model& self) {
            py::dict out;
            Model hf = float32_model(self);
            for (const WeightSlot& slot : weight_slots(hf)) out[py::str(slot.name)] = numpy_from_tensor(*slot.tensor, false);
            return out;
          },
          "Hugging Face name -> read-only float32 numpy array of the weight in Hugging Face's layout: a view "
          "(no copy) where the model holds it so, else an exact dequantized copy.")
      .def(
          "forward",
          [](const Model& self, const py::array& input_ids, py::object attention_mask) {
            Tensor ids = tensor_from_numpy(input_ids, "input_ids");
            Tensor mask = attention_mask.is_none() ? Tensor() : tensor_from_numpy(attention_mask, "attention_mask");
            Tensor logits;
            {
              py::gil_scoped_release release;
              logits = forward(self, ids, &mask);
            }
            return numpy_from_tensor(logits);
          },
          py::arg("input_ids"), py::arg("attention_mask") = py::none())
      .def(
          "save_seed_json",
          [](const Model& self, const std::string& path) {
            py::gil_scoped_release release;
            save_seed_json(self, path);
          },
          py::arg("path"))
      .def(
          "save_safetensors",
          [](const Model& self, const std::string& path) {
            py::gil_scoped_release release;
            save_safetensors_model(self, path);
          },
          py::arg("path"))
      .def(
          "save_hf_folder",
          [](const Model& self, const std::string& folder) {
            py::gil_scoped_release release;
            save_hf_folder(self, folder);
          },
          py::arg("folder"), "Writes config.json and model.safetensors (Hugging Face names and layout).")
      .def(
          "hf_state_dict",
          [](const Model& self) {
            py::dict out;
            for (const auto& [name, t] : hf_tensors(self)) out[py::str(name)] = numpy_from_tensor(t, false);
            return out;
          },
          "The weights under the names and layout of a Hugging Face checkpoint (gpt2: fused copies).");

  m.def(
      "random_model",
      [](const ModelConfig& config, uint64_t seed) {
        py::gil_scoped_release release;
        return std::make_shared<Model>(random_model(config, seed));
      },
      py::arg("config"), py::arg("seed") = 0);
  m.def(
      "load_seed_json",
      [](const std::string& path) {
        py::gil_scoped_release release;
        return std::make_shared<Model>(load_seed_json(path));
      },
      py::arg("path"));
  m.def(
      "load_safetensors",
      [](const std::string& path) {
        py::gil_scoped_release release;
        return std::make_shared<Model>(load_safetensors_model(path));
      },
      py::arg("path"));
  m.def(
      "model_from_hf_tensors",
      [](const ModelConfig& config, const py::dict& tensors, const std::string& context) {
        TensorMap map;
        for (auto [key, value] : tensors) {
          const std::string name = py::str(key);
          map[name] = tensor_from_numpy(value.cast<py::array>(), name.c_str());
        }
        py::gil_scoped_release release;
        return std::make_shared<Model>(model_from_hf_tensors(config, map, context));
      },
      py::arg("config"), py::arg("tensors"), py::arg("context"),
      "A model from numpy arrays under Hugging Face names (copied; float16/bfloat16/float64 converted).");
  m.def(
      "config_from_json",
      [](const std::string& text, const std::string& context) {
        return config_from_json(io::with_context(context, [&] { return json::parse(text); }), context);
      },
      py::arg("text"), py::arg("context"), "A ModelConfig from JSON text: ours or a Hugging Face config.json.");
  m.def("hf_config_json", &hf_config_json, py::arg("config"), "The Hugging Face config.json text of a config.");
  m.def(
      "random_tokens",
      [](int64_t batch, int64_t seq_len, int64_t vocab_size, uint64_t seed) {
        return numpy_from_tensor(random_tokens(batch, seq_len, vocab_size, seed));
      },
      py::arg("batch"), py::arg("seq_len"), py::arg("vocab_size"), py::arg("seed") = 0,
      "Deterministic random token ids in [0, vocab_size), int32 (batch, seq_len).");
}

}  // namespace celer::py_bind
