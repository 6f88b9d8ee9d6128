// _core.sample: the C++ sampler on numpy logits, many draws per row in one call (for tests and
// for users who bring their own logits).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "engine/sampler.h"

namespace py = pybind11;

namespace celer::py_bind {

namespace {

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// The checked arguments of one call: logits (B, V), history (B, H) with its valid flags.
struct Call {
  SamplingParams params;
  py::array_t<float, py::array::c_style> logits;
  py::array_t<int64_t, py::array::c_style> history;
  std::vector<uint8_t> valid;
  int64_t B = 0, V = 0, H = 0;

  const float* row_logits(int64_t b) const { return logits.data() + b * V; }
  const int64_t* row_history(int64_t b) const { return H > 0 ? history.data() + b * H : nullptr; }
  const uint8_t* row_valid(int64_t b) const { return H > 0 ? valid.data() + b * H : nullptr; }
};

Call parse(const char* fn, const py::array& logits_in, double temperature, int64_t top_k, double top_p,
           double repetition_penalty, const py::object& history_in) {
  const std::string name = fn;
  Call c;
  c.params.temperature = temperature;
  c.params.top_k = top_k;
  c.params.top_p = top_p;
  c.params.repetition_penalty = repetition_penalty;
  validate(c.params);

  // logits: float32 (B, V) or (V,)
  require(logits_in.dtype().kind() == 'f' && logits_in.dtype().itemsize() == 4,
          name + ": logits must be float32, got " + std::string(py::str(logits_in.dtype())));
  require(logits_in.ndim() == 1 || logits_in.ndim() == 2,
          name + ": logits must have shape (batch, vocab) or (vocab,), got " + shape_of(logits_in));
  const bool one_row = logits_in.ndim() == 1;
  c.B = one_row ? 1 : int64_t(logits_in.shape(0));
  c.V = int64_t(logits_in.shape(one_row ? 0 : 1));
  require(c.V >= 1, name + ": logits must have at least one token, got shape " + shape_of(logits_in));
  c.logits = py::array_t<float, py::array::c_style>::ensure(logits_in);
  require(bool(c.logits), name + ": cannot make logits C-contiguous");

  // history: None or integers (B, H) ((H,) with 1-D logits); negative ids are padding.
  if (!history_in.is_none()) {
    py::array h = py::array::ensure(history_in);
    require(bool(h), name + ": history must be an integer array or None");
    const char kind = h.dtype().kind();
    require(kind == 'i' || kind == 'u' || h.size() == 0,
            name + ": history must hold integer token ids, got " + std::string(py::str(h.dtype())));
    const bool shape_ok = (h.ndim() == 2 && h.shape(0) == c.B) || (one_row && h.ndim() == 1);
    require(shape_ok, name + ": history must have shape (" + std::to_string(c.B) + ", H)" +
                          (one_row ? " or (H,)" : "") + " to match logits " + shape_of(logits_in) + ", got " +
                          shape_of(h));
    c.H = int64_t(h.shape(h.ndim() - 1));
    c.history = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(h);
    require(bool(c.history), name + ": cannot convert history to int64");
    const int64_t* ids = c.history.data();
    c.valid.resize(size_t(c.B * c.H));
    for (int64_t i = 0; i < c.B * c.H; ++i) {
      require(ids[i] < c.V, name + ": history id " + std::to_string(ids[i]) + " at row " + std::to_string(i / c.H) +
                                ", position " + std::to_string(i % c.H) + " is >= vocab size " + std::to_string(c.V));
      c.valid[size_t(i)] = ids[i] >= 0;
    }
  }
  return c;
}

py::array_t<int64_t> sample(const py::array& logits, double temperature, int64_t top_k, double top_p,
                            double repetition_penalty, uint64_t seed, const py::object& history, int64_t num_draws) {
  Call c = parse("sample", logits, temperature, top_k, top_p, repetition_penalty, history);
  require(num_draws >= 1, "sample: num_draws must be >= 1, got " + std::to_string(num_draws));
  py::array_t<int64_t> out({py::ssize_t(c.B), py::ssize_t(num_draws)});
  int64_t* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    Sampler sampler(c.V, c.B, seed);
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t d = 0; d < num_draws; ++d)
        dst[b * num_draws + d] =
            sampler.sample(b, c.row_logits(b), c.row_history(b), c.row_valid(b), c.H, c.params);
  }
  return out;
}

py::array_t<double> distribution(const py::array& logits, double temperature, int64_t top_k, double top_p,
                                 double repetition_penalty, const py::object& history) {
  Call c = parse("sampling_distribution", logits, temperature, top_k, top_p, repetition_penalty, history);
  py::array_t<double> out({py::ssize_t(c.B), py::ssize_t(c.V)});
  double* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    Sampler sampler(c.V, c.B, 0);
    for (int64_t b = 0; b < c.B; ++b)
      sampler.distribution(b, c.row_logits(b), c.row_history(b), c.row_valid(b), c.H, c.params, dst + b * c.V);
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
  m.def("sampling_distribution", &distribution, py::arg("logits"), py::arg("temperature") = 0.0,
        py::arg("top_k") = 0, py::arg("top_p") = 1.0, py::arg("repetition_penalty") = 1.0,
        py::arg("history") = py::none(),
        "The probabilities sample() draws from, float64 (batch, vocab): each row sums to 1, 0 outside\n"
        "the tokens that top-k / top-p keep, one-hot when temperature == 0. Same arguments as sample.");
}

}  // namespace celer::py_bind
