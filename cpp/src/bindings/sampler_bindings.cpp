// _core.sample: the C++ sampler on numpy logits, many draws per row in one call (for tests and
// for users who bring their own logits).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "error.h"
#include "sampler.h"

namespace py = pybind11;

namespace celer::py_bind {

namespace {

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

py::array_t<int64_t> sample(const py::array& logits_in, double temperature, int64_t top_k, double top_p,
                            double repetition_penalty, uint64_t seed, const py::object& history_in,
                            int64_t num_draws) {
  SamplingParams params;
  params.temperature = temperature;
  params.top_k = top_k;
  params.top_p = top_p;
  params.repetition_penalty = repetition_penalty;
  validate(params);
  require(num_draws >= 1, "sample: num_draws must be >= 1, got " + std::to_string(num_draws));

  // logits: float32 (B, V) or (V,)
  require(logits_in.dtype().kind() == 'f' && logits_in.dtype().itemsize() == 4,
          "sample: logits must be float32, got " + std::string(py::str(logits_in.dtype())));
  require(logits_in.ndim() == 1 || logits_in.ndim() == 2,
          "sample: logits must have shape (batch, vocab) or (vocab,), got " + shape_of(logits_in));
  const bool one_row = logits_in.ndim() == 1;
  const int64_t B = one_row ? 1 : int64_t(logits_in.shape(0));
  const int64_t V = int64_t(logits_in.shape(one_row ? 0 : 1));
  require(V >= 1, "sample: logits must have at least one token, got shape " + shape_of(logits_in));
  auto logits = py::array_t<float, py::array::c_style>::ensure(logits_in);
  require(bool(logits), "sample: cannot make logits C-contiguous");

  // history: None or integers (B, H) ((H,) with 1-D logits); negative ids are padding.
  py::array_t<int64_t, py::array::c_style> history;
  std::vector<uint8_t> valid;
  int64_t H = 0;
  if (!history_in.is_none()) {
    py::array h = py::array::ensure(history_in);
    require(bool(h), "sample: history must be an integer array or None");
    const char kind = h.dtype().kind();
    require(kind == 'i' || kind == 'u' || h.size() == 0,
            "sample: history must hold integer token ids, got " + std::string(py::str(h.dtype())));
    const bool shape_ok = (h.ndim() == 2 && h.shape(0) == B) || (one_row && h.ndim() == 1);
    require(shape_ok, "sample: history must have shape (" + std::to_string(B) + ", H)" +
                          (one_row ? " or (H,)" : "") + " to match logits " + shape_of(logits_in) + ", got " +
                          shape_of(h));
    H = int64_t(h.shape(h.ndim() - 1));
    history = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(h);
    require(bool(history), "sample: cannot convert history to int64");
    const int64_t* ids = history.data();
    valid.resize(size_t(B * H));
    for (int64_t i = 0; i < B * H; ++i) {
      require(ids[i] < V, "sample: history id " + std::to_string(ids[i]) + " at row " + std::to_string(i / H) +
                              ", position " + std::to_string(i % H) + " is >= vocab size " + std::to_string(V));
      valid[size_t(i)] = ids[i] >= 0;
    }
  }

  py::array_t<int64_t> out({py::ssize_t(B), py::ssize_t(num_draws)});
  int64_t* dst = out.mutable_data();
  const float* src = logits.data();
  const int64_t* hist = H > 0 ? history.data() : nullptr;
  const uint8_t* ok = H > 0 ? valid.data() : nullptr;
  {
    py::gil_scoped_release release;
    Sampler sampler(V, B, seed);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < num_draws; ++d)
        dst[b * num_draws + d] =
            sampler.sample(b, src + b * V, hist ? hist + b * H : nullptr, ok ? ok + b * H : nullptr, H, params);
  }
  return out;
}

}  // namespace

void bind_sampler(py::module_& m) {
  m.def("sample", &sample, py::arg("logits"), py::arg("temperature") = 0.0, py::arg("top_k") = 0,
        py::arg("top_p") = 1.0, py::arg("repetition_penalty") = 1.0, py::arg("seed") = 0,
        py::arg("history") = py::none(), py::arg("num_draws") = 1,
        "Sample token ids from float32 logits (batch, vocab) or (vocab,).\n\n"
        "Steps per row: repetition penalty on the tokens in `history` (int (batch, H), negative ids\n"
        "= padding) -> greedy argmax when temperature == 0 (ties -> lowest id), else logits /\n"
        "temperature -> top-k -> softmax -> top-p -> one seeded uniform draw. Each row has its own\n"
        "random stream; the num_draws draws of a row are successive draws from it.\n"
        "Returns int64 (batch, num_draws).");
}

}  // namespace celer::py_bind
