#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>

#include "bindings/numpy_tensor.h"
#include "engine/engine.h"
#include "core/error.h"
#include "core/kv_layout.h"
#include "core/versions.h"

namespace py = pybind11;

namespace celer::py_bind {

namespace {
py::dict version_dict(const VersionSpec& v) {
  py::dict d;
  d["name"] = v.name;
  d["method"] = v.method;
  d["description"] = v.description;
  d["use_cache"] = v.use_cache;
  // The original registry's flags (records and plots made before the knobs read them).
  d["kv_dtype"] = legacy_kv_dtype(v);
  d["kv_quant"] = legacy_kv_quant(v);
  d["cross_layer_sharing"] = v.sharing != Sharing::None;
  d["kivi_block"] = v.key.quantized() && v.key.along == QuantAlong::Channel ? v.key.group : 0;
  // The knobs.
  for (auto [prefix, q] : {std::pair{"key", &v.key}, std::pair{"value", &v.value}}) {
    d[py::str(std::string(prefix) + "_storage")] = storage_name(q->storage);
    d[py::str(std::string(prefix) + "_bits")] = kv_storage_bits(q->storage);
    d[py::str(std::string(prefix) + "_along")] = along_name(q->along);
    d[py::str(std::string(prefix) + "_group")] = q->group;
  }
  d["residual"] = v.residual;
  d["eviction"] = eviction_name(v.eviction);
  d["sinks"] = v.sinks;
  d["window"] = v.window;
  d["heavy"] = v.heavy;
  d["budget"] = v.budget();
  d["sharing"] = sharing_name(v.sharing);
  d["share_from"] = v.share_from;
  d["merge_angle"] = v.merge_angle;
  return d;
}

// A version from a dict of knobs (the names version_dict gives), starting from `base` (a
// registry name; default v1). Unknown keys are refused, naming them. The summaries version_dict
// derives (kv_dtype, budget, ...) may be present, as in an entry of versions() handed back,
// but must agree with the knobs: they never set anything.
VersionSpec version_from_dict(const py::dict& d) {
  static const char* derived[] = {"kv_dtype", "kv_quant", "cross_layer_sharing", "kivi_block", "key_bits",
                                  "value_bits", "budget"};
  VersionSpec v = find_version(d.contains("base") ? py::str(d["base"]).cast<std::string>() : std::string("v1"));
  v.name = "custom";
  v.method = "custom";
  v.description = "a custom KV-cache method";
  for (auto [key_handle, value] : d) {
    const std::string key = py::str(key_handle);
    auto str = [&] { return value.cast<std::string>(); };
    auto integer = [&] {
      if (!py::isinstance<py::int_>(value) || py::isinstance<py::bool_>(value))
        throw ValueError("version setting '" + key + "' must be an integer");
      return value.cast<int64_t>();
    };
    if (key == "base" || std::find_if(std::begin(derived), std::end(derived),
                                      [&](const char* k) { return key == k; }) != std::end(derived))
      continue;
    else if (key == "name") v.name = str();
    else if (key == "method") v.method = str();
    else if (key == "description") v.description = str();
    else if (key == "use_cache") v.use_cache = value.cast<bool>();
    else if (key == "key_storage") v.key.storage = parse_storage(str());
    else if (key == "value_storage") v.value.storage = parse_storage(str());
    else if (key == "key_along") v.key.along = parse_along(str());
    else if (key == "value_along") v.value.along = parse_along(str());
    else if (key == "key_group") v.key.group = integer();
    else if (key == "value_group") v.value.group = integer();
    else if (key == "residual") v.residual = integer();
    else if (key == "eviction") v.eviction = parse_eviction(str());
    else if (key == "sinks") v.sinks = integer();
    else if (key == "window") v.window = integer();
    else if (key == "heavy") v.heavy = integer();
    else if (key == "sharing") v.sharing = parse_sharing(str());
    else if (key == "share_from") v.share_from = integer();
    else if (key == "merge_angle") v.merge_angle = value.cast<double>();
    else
      throw ValueError("unknown version setting '" + key + "' (known: base, name, method, description, use_cache, "
                       "key_storage, key_along, key_group, value_storage, value_along, value_group, residual, "
                       "eviction, sinks, window, heavy, sharing, share_from, merge_angle)");
  }
  const py::dict follows = version_dict(v);
  for (const char* k : derived)
    if (d.contains(k) && !d[k].equal(follows[k]))
      throw ValueError(std::string("version setting '") + k + "' is " + py::repr(d[k]).cast<std::string>() +
                       " but the knobs give " + py::repr(follows[k]).cast<std::string>() +
                       " (it follows from key_storage, value_storage, ...; set those)");
  return v;
}

// Whether Python has a signal to handle (Ctrl-C): the long calls ask between steps.
bool python_interrupted() {
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;  // the KeyboardInterrupt stays set for the caller
}

// Runs f without the GIL; a call that stopped for a signal raises the Python error that stopped it.
template <class F>
auto interruptible(F&& f) -> decltype(f()) {
  try {
    py::gil_scoped_release release;
    return f();
  } catch (const Interrupted&) {
    if (PyErr_Occurred()) throw py::error_already_set();
    throw;
  }
}

// (steps, phases + 2) int64: the per-phase ns, then total ns, then tokens processed per row.
py::array_t<int64_t> step_table(const std::vector<StepTiming>& steps) {
  py::array_t<int64_t> table({py::ssize_t(steps.size()), py::ssize_t(kNumPhases + 2)});
  auto t = table.mutable_unchecked<2>();
  for (size_t i = 0; i < steps.size(); ++i) {
    for (int p = 0; p < kNumPhases; ++p) t(py::ssize_t(i), p) = steps[i].phase_ns[p];
    t(py::ssize_t(i), kNumPhases) = steps[i].total_ns;
    t(py::ssize_t(i), kNumPhases + 1) = steps[i].tokens;
  }
  return table;
}
}  // namespace

void bind_engine(py::module_& m) {
  m.def("versions", [] {
    py::list out;
    for (const VersionSpec& v : versions()) out.append(version_dict(v));
    return out;
  }, "The versions registry: one dict of flags per KV-cache strategy.");
  m.def("version_spec", [](const py::dict& settings) { return version_dict(version_from_dict(settings)); },
        py::arg("settings"), "A version's full settings from a dict of knobs (validated when an Engine uses it).");
  m.def("kv_layout", [](const py::object& version, int64_t layers, int64_t kv_heads, int64_t head_dim, int64_t rows,
                        int64_t written) {
    const VersionSpec spec = py::isinstance<py::dict>(version) ? version_from_dict(version.cast<py::dict>())
                                                               : find_version(version.cast<std::string>());
    require(layers >= 1 && kv_heads >= 1 && head_dim >= 1 && rows >= 1 && written >= 0,
            "kv_layout needs layers, kv_heads, head_dim, rows >= 1 and written >= 0");
    const KVLayout L = KVLayout::make(spec, layers, rows, std::max<int64_t>(written, 1), 1, kv_heads, head_dim);
    py::dict d;
    d["bytes"] = L.bytes_for(written, rows);  // a merged pair counted as fully merged
    d["held"] = spec.use_cache ? L.held(written) : int64_t(0);
    d["storage_layers"] = spec.use_cache ? L.storage_layers() : int64_t(0);
    std::vector<bool> computes;
    for (int64_t l = 0; l < layers; ++l) computes.push_back(L.computes_kv(l));
    d["computes_kv"] = computes;
    return d;
  }, py::arg("version"), py::arg("layers"), py::arg("kv_heads"), py::arg("head_dim"), py::arg("rows"), py::arg("written"),
  "The KV cache's layout for `written` positions of `rows` rows: bytes (the engine's kv_cache_bytes; a "
  "merged pair counted fully merged), tokens held per row, storage layers, which layers compute K/V.");
  m.def("weight_dtypes", [] {
    std::vector<std::string> out;
    for (WeightFormat f : weight_formats()) out.push_back(weight_format_name(f));
    return out;
  }, "The weight formats an Engine can compute with (its weight_dtype values).");
  m.def("weight_formats", [] {
    py::list out;
    for (const WeightFormatInfo& f : weight_format_table()) {
      py::dict d;
      d["name"] = f.name;
      d["block_values"] = f.block_values;
      d["value_bits"] = f.value_bits;
      d["scale_bytes"] = f.scale_bytes;
      d["padded_blocks"] = f.padded_blocks;
      d["bits_per_weight"] = f.bits_per_weight();
      d["gguf_type"] = f.gguf_type;
      d["description"] = f.description;
      out.append(d);
    }
    return out;
  }, "The weight-format table (core/weight_format.h): one dict per format, f32 first.");
  m.def("weight_format_bytes", [](const std::string& name, int64_t rows, int64_t cols) {
    return weight_format_bytes(parse_weight_format(name), rows, cols);
  }, py::arg("weight_dtype"), py::arg("rows"), py::arg("cols"),
  "Bytes a (rows, cols) matrix takes in a weight format, scales included.");
  m.def("matmul_precisions", [] {
    std::vector<std::string> out;
    for (MatmulPrecision p : matmul_precisions()) out.push_back(matmul_precision_name(p));
    return out;
  }, "An Engine's matmul_precision values, the default first.");
  m.def("phase_names", [] {
    py::list out;
    for (int p = 0; p < kNumPhases; ++p) out.append(phase_name(p));
    return out;
  });
  m.def("peak_rss_bytes", &peak_rss_bytes, "Peak resident set size of this process, in bytes.");

  py::class_<GenerateOptions>(m, "GenerateOptions", "The options of one Engine.generate call (engine/engine.h).")
      .def(py::init<>())
      .def_readwrite("max_new_tokens", &GenerateOptions::max_new_tokens)
      .def_property(
          "temperature", [](const GenerateOptions& o) { return o.sampling.temperature; },
          [](GenerateOptions& o, double v) { o.sampling.temperature = v; })
      .def_property(
          "top_k", [](const GenerateOptions& o) { return o.sampling.top_k; },
          [](GenerateOptions& o, int64_t v) { o.sampling.top_k = v; })
      .def_property(
          "top_p", [](const GenerateOptions& o) { return o.sampling.top_p; },
          [](GenerateOptions& o, double v) { o.sampling.top_p = v; })
      .def_property(
          "repetition_penalty", [](const GenerateOptions& o) { return o.sampling.repetition_penalty; },
          [](GenerateOptions& o, double v) { o.sampling.repetition_penalty = v; })
      .def_readwrite("seed", &GenerateOptions::seed)
      .def_readwrite("eos_token_id", &GenerateOptions::eos_token_id)
      .def_readwrite("return_logits", &GenerateOptions::return_logits)
      .def_readwrite("timing", &GenerateOptions::timing);

  py::class_<GenerationResult>(m, "GenerationResult")
      .def_property_readonly("tokens", [](const GenerationResult& r) { return numpy_from_tensor(r.tokens); })
      .def_property_readonly("logits", [](const GenerationResult& r) { return numpy_or_none(r.logits); })
      .def_property_readonly("steps", [](const GenerationResult& r) { return step_table(r.steps); })
      .def_readonly("prompt_length", &GenerationResult::prompt_length)
      .def_readonly("new_tokens", &GenerationResult::new_tokens)
      .def_readonly("kv_cache_bytes", &GenerationResult::kv_cache_bytes)
      .def_readonly("kv_cache_capacity_bytes", &GenerationResult::kv_cache_capacity_bytes)
      .def_readonly("peak_bytes", &GenerationResult::peak_bytes);

  py::class_<Engine>(m, "Engine")
      .def(py::init([](const std::shared_ptr<Model>& model, const py::object& version, int64_t max_seq_len,
                       const std::string& weight_dtype, const std::string& device) {
             const VersionSpec spec = py::isinstance<py::dict>(version) ? version_from_dict(version.cast<py::dict>())
                                                                        : find_version(version.cast<std::string>());
             std::optional<WeightFormat> format;  // "stored": each matrix in the format of its stored values
             if (weight_dtype != "stored") format = parse_weight_format(weight_dtype);
             py::gil_scoped_release release;  // packing a large model takes a while
             return new Engine(*model, spec, max_seq_len, format, device);
           }),
           py::arg("model"), py::arg("version") = "v1", py::arg("max_seq_len") = 0, py::arg("weight_dtype") = "stored",
           py::arg("device") = "cpu", py::keep_alive<1, 2>())  // the engine reads the model's weights
      .def_property_readonly("device", &Engine::device)
      .def_property_readonly("weight_dtype", [](const Engine& e) { return weight_format_name(e.weight_format()); })
      .def_property_readonly("matrix_formats", [](const Engine& e) {
        py::dict out;
        for (const auto& [format, n] : e.matrix_formats()) out[py::str(weight_format_name(format))] = n;
        return out;
      }, "Weight format -> how many of the engine's matrices (the head included) compute in it.")
      .def_property(
          "matmul_precision", [](const Engine& e) { return matmul_precision_name(e.matmul_precision()); },
          [](Engine& e, const std::string& name) { e.set_matmul_precision(parse_matmul_precision(name)); },
          "How prefill's GEMMs multiply f32 and int8 weights: highest (f32 products) or high (bf16x3 on AMX "
          "tiles where the CPU has them, else as highest).")
      .def_property_readonly("packed_weight_bytes", &Engine::packed_weight_bytes,
                             "Bytes of the packed weights one decode step reads (linear layers and output head).")
      .def_property_readonly("version", [](const Engine& e) { return version_dict(e.version()); })
      .def_property_readonly("max_seq_len", &Engine::max_seq_len)
      .def(
          "generate",
          [](Engine& self, const py::array& input_ids, py::object attention_mask, const GenerateOptions& options,
             py::object on_token) {
            Tensor ids = tensor_from_numpy(input_ids, "input_ids");
            Tensor mask = attention_mask.is_none() ? Tensor() : tensor_from_numpy(attention_mask, "attention_mask");
            GenerateOptions opt = options;
            opt.should_stop = python_interrupted;
            if (!on_token.is_none())
              opt.on_token = [on_token](const int64_t* next, int64_t batch) {
                py::gil_scoped_acquire gil;
                on_token(py::array_t<int64_t>(py::ssize_t(batch), next));  // a Python exception stops the call
              };
            return interruptible([&] { return self.generate(ids, &mask, opt); });
          },
          py::arg("input_ids"), py::arg("attention_mask"), py::arg("options"), py::arg("on_token") = py::none(),
          "Generation; on_token(next_ids) is called after each step with the token each row took.")
      .def(
          "score",
          [](Engine& self, const py::array& input_ids, py::object attention_mask, int64_t prefill_length) {
            Tensor ids = tensor_from_numpy(input_ids, "input_ids");
            Tensor mask = attention_mask.is_none() ? Tensor() : tensor_from_numpy(attention_mask, "attention_mask");
            Tensor logits = interruptible([&] { return self.score(ids, &mask, prefill_length, python_interrupted); });
            return numpy_from_tensor(logits);
          },
          py::arg("input_ids"), py::arg("attention_mask") = py::none(), py::arg("prefill_length") = 1)
      .def(
          "forward",
          [](Engine& self, const py::array& input_ids, py::object attention_mask) {
            Tensor ids = tensor_from_numpy(input_ids, "input_ids");
            Tensor mask = attention_mask.is_none() ? Tensor() : tensor_from_numpy(attention_mask, "attention_mask");
            Tensor logits;
            {
              py::gil_scoped_release release;
              logits = self.forward(ids, &mask);
            }
            return numpy_from_tensor(logits);
          },
          py::arg("input_ids"), py::arg("attention_mask") = py::none());
}

}  // namespace celer::py_bind
