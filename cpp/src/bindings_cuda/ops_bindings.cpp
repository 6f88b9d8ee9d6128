// Each CUDA op with numpy in and out (upload, run, synchronize, download), so the tests can
// hold it to numpy / torch. Not a fast path: every call allocates and copies.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "backend/cuda/device.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/kv_cache_ops.h"
#include "backend/cuda/ops.h"
#include "bindings_cuda/host_arrays.h"

namespace py = pybind11;
using namespace celer::cuda;
using namespace celer::cuda::py_arrays;
using celer::KVStorage;
using celer::require;

namespace {

void device_sync() { CELER_CUDA_CHECK(cudaDeviceSynchronize()); }

// (rows, H) with a per-column vector of H: the shape shared by the norms and bias.
std::pair<int64_t, int64_t> rows_cols(const Array<float>& x, const char* name) {
  require_ndim(x, 2, name);
  return {x.shape(0), x.shape(1)};
}

py::array_t<float> norm(const Array<float>& x, const Array<float>& w, const Array<float>* b, float eps) {
  require_device();
  const auto [rows, H] = rows_cols(x, "x");
  require(w.size() == H, "weight must have x.shape[1] values");
  if (b) require(b->size() == H, "bias must have x.shape[1] values");
  auto dx = upload(x), dw = upload(w);
  DeviceBuffer<float> db = b ? upload(*b) : DeviceBuffer<float>();
  DeviceBuffer<float> out(static_cast<size_t>(rows * H));
  if (b)
    layernorm(out.get(), dx.get(), dw.get(), db.get(), rows, H, eps, nullptr);
  else
    rmsnorm(out.get(), dx.get(), dw.get(), rows, H, eps, nullptr);
  device_sync();
  return download(out, {rows, H});
}

KVStorage storage_from(const std::string& s) {
  if (s == "f32") return KVStorage::F32;
  if (s == "f16") return KVStorage::F16;
  if (s == "int8") return KVStorage::Int8;
  throw celer::ValueError("storage must be 'f32', 'f16' or 'int8', got '" + s + "'");
}

// A device cache layer of (batch, kv_heads, max_seq, D) in the given storage.
struct DeviceCache {
  DeviceBuffer<uint8_t> k, v;
  DeviceBuffer<float> k_scale, v_scale;
  CacheLayer layer;
  DeviceCache(KVStorage s, int64_t batch, int64_t kv_heads, int64_t max_seq, int64_t D) {
    const size_t elems = size_t(batch * kv_heads * max_seq * D);
    const size_t width = s == KVStorage::F32 ? 4 : s == KVStorage::F16 ? 2 : 1;
    k = DeviceBuffer<uint8_t>(elems * width);
    v = DeviceBuffer<uint8_t>(elems * width);
    if (s == KVStorage::Int8) {
      k_scale = DeviceBuffer<float>(size_t(batch * kv_heads * max_seq));
      v_scale = DeviceBuffer<float>(size_t(batch * kv_heads * max_seq));
    }
    layer = CacheLayer{s, k.get(), v.get(), k_scale.get(), v_scale.get(), batch, kv_heads, max_seq, D};
  }
};

// k, v: (batch, T, kv_heads, D) written in chunks of `chunk` tokens (each chunk one cache_write
// at p0 = its first position), so positions other than 0 are exercised.
DeviceCache fill_cache(const Array<float>& k, const Array<float>& v, const std::string& storage, int64_t max_seq,
                       int64_t chunk) {
  require_ndim(k, 4, "k");
  require(v.ndim() == 4 && std::equal(k.shape(), k.shape() + 4, v.shape()), "v must have k's shape");
  const int64_t batch = k.shape(0), T = k.shape(1), kvh = k.shape(2), D = k.shape(3);
  if (max_seq <= 0) max_seq = T;
  require(T <= max_seq, "more tokens than max_seq");
  require(chunk > 0, "chunk must be > 0");
  DeviceCache cache(storage_from(storage), batch, kvh, max_seq, D);
  for (int64_t p0 = 0; p0 < T; p0 += chunk) {
    const int64_t n = std::min(chunk, T - p0);
    // rows (b * n + i) of kvh * D: gather the chunk on the host in that order
    std::vector<float> kc(size_t(batch * n * kvh * D)), vc(kc.size());
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < n; ++i) {
        const size_t src = size_t(((b * T) + p0 + i) * kvh * D), dst = size_t((b * n + i) * kvh * D);
        std::copy_n(k.data() + src, kvh * D, kc.begin() + dst);
        std::copy_n(v.data() + src, kvh * D, vc.begin() + dst);
      }
    DeviceBuffer<float> dk(kc.size()), dv(vc.size());
    dk.upload(kc.data(), kc.size());
    dv.upload(vc.data(), vc.size());
    cache_write(cache.layer, dk.get(), dv.get(), n, p0, nullptr);
    device_sync();
  }
  return cache;
}

}  // namespace

void bind_cuda_ops(py::module_& m) {
  m.def("rmsnorm", [](const Array<float>& x, const Array<float>& w, float eps) { return norm(x, w, nullptr, eps); },
        py::arg("x"), py::arg("weight"), py::arg("eps"));
  m.def("layernorm", [](const Array<float>& x, const Array<float>& w, const Array<float>& b, float eps) {
    return norm(x, w, &b, eps);
  }, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps"));

  m.def("rope", [](const Array<float>& x, int64_t heads, const Array<int64_t>& pos, const Array<float>& cos,
                   const Array<float>& sin) {
    require_device();
    const auto [rows, width] = rows_cols(x, "x");
    require(heads > 0 && width % heads == 0 && (width / heads) % 2 == 0, "x.shape[1] must be heads * D with D even");
    const int64_t D = width / heads;
    require_ndim(cos, 2, "cos");
    require(cos.shape(1) == D && sin.ndim() == 2 && sin.shape(0) == cos.shape(0) && sin.shape(1) == D,
            "cos and sin must be (max_pos, D)");
    require(pos.size() == rows, "pos must have one position per row");
    for (int64_t r = 0; r < rows; ++r)
      require(pos.data()[r] >= 0 && pos.data()[r] < cos.shape(0), "pos out of range of the cos/sin tables");
    auto dx = upload(x);
    auto dp = upload(pos);
    auto dc = upload(cos), ds = upload(sin);
    rope(dx.get(), rows, heads, D, dp.get(), dc.get(), ds.get(), nullptr);
    device_sync();
    return download(dx, {rows, width});
  }, py::arg("x"), py::arg("heads"), py::arg("pos"), py::arg("cos"), py::arg("sin"));

  m.def("swiglu", [](const Array<float>& gate, const Array<float>& up) {
    require_device();
    require(gate.size() == up.size(), "gate and up must have the same size");
    auto dg = upload(gate), du = upload(up);
    DeviceBuffer<float> out(static_cast<size_t>(gate.size()));
    swiglu(out.get(), dg.get(), du.get(), gate.size(), nullptr);
    device_sync();
    return download(out, {gate.size()});
  }, py::arg("gate"), py::arg("up"));

  m.def("gelu", [](const Array<float>& x, bool tanh_form) {
    require_device();
    auto dx = upload(x);
    gelu(dx.get(), x.size(), tanh_form, nullptr);
    device_sync();
    return download(dx, {x.size()});
  }, py::arg("x"), py::arg("tanh_form"));

  m.def("add_bias", [](const Array<float>& x, const Array<float>& bias) {
    require_device();
    const auto [rows, N] = rows_cols(x, "x");
    require(bias.size() == N, "bias must have x.shape[1] values");
    auto dx = upload(x), db = upload(bias);
    add_bias(dx.get(), db.get(), rows, N, nullptr);
    device_sync();
    return download(dx, {rows, N});
  }, py::arg("x"), py::arg("bias"));

  m.def("add", [](const Array<float>& x, const Array<float>& y) {
    require_device();
    require(x.size() == y.size(), "x and y must have the same size");
    auto dx = upload(x), dy = upload(y);
    add(dx.get(), dy.get(), x.size(), nullptr);
    device_sync();
    return download(dx, {x.size()});
  }, py::arg("x"), py::arg("y"));

  m.def("embedding", [](const Array<float>& table, const Array<int64_t>& ids, std::optional<Array<float>> pos_table,
                        std::optional<Array<int64_t>> pos) {
    require_device();
    const auto [V, H] = rows_cols(table, "table");
    const int64_t rows = ids.size();
    for (int64_t r = 0; r < rows; ++r) require(ids.data()[r] >= 0 && ids.data()[r] < V, "token id out of range");
    require(pos_table.has_value() == pos.has_value(), "pos_table and pos go together");
    DeviceBuffer<float> dpt;
    DeviceBuffer<int64_t> dpos;
    if (pos_table) {
      require(pos_table->ndim() == 2 && pos_table->shape(1) == H, "pos_table must be (max_pos, H)");
      require(pos->size() == rows, "pos must have one position per id");
      for (int64_t r = 0; r < rows; ++r)
        require(pos->data()[r] >= 0 && pos->data()[r] < pos_table->shape(0), "position out of range");
      dpt = upload(*pos_table);
      dpos = upload(*pos);
    }
    auto dt = upload(table);
    auto di = upload(ids);
    DeviceBuffer<float> out(static_cast<size_t>(rows * H));
    embedding(out.get(), dt.get(), di.get(), dpt.get(), dpos.get(), rows, H, nullptr);
    device_sync();
    return download(out, {rows, H});
  }, py::arg("table"), py::arg("ids"), py::arg("pos_table") = py::none(), py::arg("pos") = py::none());

  m.def("quantize_int8", [](const Array<float>& x) {
    require_device();
    const auto [rows, D] = rows_cols(x, "x");
    auto dx = upload(x);
    DeviceBuffer<int8_t> q(static_cast<size_t>(rows * D));
    DeviceBuffer<float> scale(static_cast<size_t>(rows));
    quantize_int8_rows(q.get(), scale.get(), dx.get(), rows, D, nullptr);
    device_sync();
    return py::make_tuple(download(q, {rows, D}), download(scale, {rows}));
  }, py::arg("x"), "Per-row symmetric INT8: (q int8 (rows, D), scale float32 (rows)).");

  m.def("dequantize_int8", [](const Array<int8_t>& q, const Array<float>& scale) {
    require_device();
    require_ndim(q, 2, "q");
    const int64_t rows = q.shape(0), D = q.shape(1);
    require(scale.size() == rows, "scale must have one value per row");
    auto dq = upload(q);
    auto ds = upload(scale);
    DeviceBuffer<float> out(static_cast<size_t>(rows * D));
    dequantize_int8_rows(out.get(), dq.get(), ds.get(), rows, D, nullptr);
    device_sync();
    return download(out, {rows, D});
  }, py::arg("q"), py::arg("scale"));

  m.def("f32_to_f16", [](const Array<float>& x) {
    require_device();
    auto dx = upload(x);
    DeviceBuffer<uint16_t> out(static_cast<size_t>(x.size()));
    f32_to_f16(out.get(), dx.get(), x.size(), nullptr);
    device_sync();
    return download(out, {x.size()});
  }, py::arg("x"), "IEEE half bit patterns (uint16); view them with .view(numpy.float16).");
  m.def("f16_to_f32", [](const Array<uint16_t>& bits) {
    require_device();
    auto db = upload(bits);
    DeviceBuffer<float> out(static_cast<size_t>(bits.size()));
    f16_to_f32(out.get(), db.get(), bits.size(), nullptr);
    device_sync();
    return download(out, {bits.size()});
  }, py::arg("bits"));
  m.def("f32_to_bf16", [](const Array<float>& x) {
    require_device();
    auto dx = upload(x);
    DeviceBuffer<uint16_t> out(static_cast<size_t>(x.size()));
    f32_to_bf16(out.get(), dx.get(), x.size(), nullptr);
    device_sync();
    return download(out, {x.size()});
  }, py::arg("x"), "bfloat16 bit patterns (uint16), round to nearest even.");

  m.def("argmax", [](const Array<float>& logits) {
    require_device();
    const auto [rows, V] = rows_cols(logits, "logits");
    auto dx = upload(logits);
    DeviceBuffer<int64_t> ids(static_cast<size_t>(rows)), nan_at(static_cast<size_t>(rows));
    argmax_rows(ids.get(), nan_at.get(), dx.get(), rows, V, nullptr);
    device_sync();
    auto nan = download(nan_at, {rows});
    for (int64_t r = 0; r < rows; ++r)
      require(nan.data()[r] < 0, "logits row " + std::to_string(r) + " holds NaN at index " +
                                     std::to_string(nan.data()[r]));
    return download(ids, {rows});
  }, py::arg("logits"), "Greedy ids (rows,): first index of the maximum; -1 when a row is all -inf.");

  m.def("cache_store", [](const Array<float>& k, const Array<float>& v, const std::string& storage, int64_t max_seq,
                          int64_t chunk) {
    require_device();
    DeviceCache c = fill_cache(k, v, storage, max_seq, chunk);
    const CacheLayer& L = c.layer;
    py::dict out;
    out["k"] = download(c.k, {py::ssize_t(c.k.size())});
    out["v"] = download(c.v, {py::ssize_t(c.v.size())});
    if (L.storage == KVStorage::Int8) {
      out["k_scale"] = download(c.k_scale, {L.batch, L.kv_heads, L.max_seq});
      out["v_scale"] = download(c.v_scale, {L.batch, L.kv_heads, L.max_seq});
    }
    return out;
  }, py::arg("k"), py::arg("v"), py::arg("storage"), py::arg("max_seq") = 0, py::arg("chunk") = 1,
     "Writes k, v (batch, T, kv_heads, D) into a device cache; returns its raw bytes (uint8, "
     "layout (batch, kv_heads, max_seq, D)) and, for int8, the scales.");

  m.def("decode_attention", [](const Array<float>& q, const Array<float>& k, const Array<float>& v,
                               const std::string& storage, std::optional<Array<uint8_t>> key_valid, int64_t max_seq,
                               int64_t chunk) {
    require_device();
    require_ndim(q, 3, "q");
    DeviceCache c = fill_cache(k, v, storage, max_seq, chunk);
    const CacheLayer& L = c.layer;
    const int64_t batch = q.shape(0), q_heads = q.shape(1), D = q.shape(2), T = k.shape(1);
    require(batch == L.batch && D == L.D, "q must be (batch, q_heads, D) with k's batch and D");
    require(q_heads % L.kv_heads == 0, "q_heads must be a multiple of kv_heads");
    require(D <= kMaxHeadDim, "head_dim must be <= 256");
    DeviceBuffer<uint8_t> dvalid;
    if (key_valid) {
      require(key_valid->ndim() == 2 && key_valid->shape(0) == batch && key_valid->shape(1) == T,
              "key_valid must be (batch, T)");
      std::vector<uint8_t> padded(size_t(batch * L.max_seq), 0);  // the kernel reads rows of max_seq
      for (int64_t b = 0; b < batch; ++b) std::copy_n(key_valid->data() + b * T, T, padded.begin() + b * L.max_seq);
      dvalid = DeviceBuffer<uint8_t>(padded.size());
      dvalid.upload(padded.data(), padded.size());
    }
    auto dq = upload(q);
    DeviceBuffer<float> out(static_cast<size_t>(q.size()));
    decode_attention(out.get(), dq.get(), L, q_heads, T, dvalid.get(), nullptr);
    device_sync();
    return download(out, {batch, q_heads, D});
  }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("storage") = "f32", py::arg("key_valid") = py::none(),
     py::arg("max_seq") = 0, py::arg("chunk") = 1,
     "One decode step: q (batch, q_heads, D) at position T - 1 over a cache holding k, v "
     "(batch, T, kv_heads, D) stored as `storage`.");

  m.def("linear", [](const Array<float>& x, const Array<float>& w, const std::string& weight_dtype,
                     const std::vector<std::string>& cublas_candidates) {
    require_device();
    const auto [M, K] = rows_cols(x, "x");
    require_ndim(w, 2, "w");
    require(w.shape(1) == K, "w must be (N, K) with x.shape[1] == K");
    require(weight_dtype == "f32" || weight_dtype == "bf16", "weight_dtype must be 'f32' or 'bf16'");
    const int64_t N = w.shape(0);
    Gemm gemm(nullptr, cublas_candidates);
    auto dx = upload(x), dw = upload(w);
    DeviceBuffer<float> y(static_cast<size_t>(M * N));
    if (weight_dtype == "f32") {
      gemm.nt_f32(y.get(), dx.get(), dw.get(), M, K, N);
    } else {
      DeviceBuffer<uint16_t> wb(static_cast<size_t>(N * K)), xb(static_cast<size_t>(M * K));
      f32_to_bf16(wb.get(), dw.get(), N * K, nullptr);
      gemm.nt_bf16(y.get(), dx.get(), wb.get(), xb.get(), M, K, N);
      device_sync();
    }
    device_sync();
    return download(y, {M, N});
  }, py::arg("x"), py::arg("w"), py::arg("weight_dtype") = "f32",
     py::arg("cublas_candidates") = std::vector<std::string>{},
     "y = x @ w.T through cuBLAS; bf16 rounds w (and x) to bfloat16, sums in fp32.");

  m.def("bandwidth", [](int64_t nbytes, int reps) {
    require_device();
    require(nbytes >= 1024 && reps >= 1, "nbytes >= 1024 and reps >= 1");
    const int64_t n = nbytes / 4;
    DeviceBuffer<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n)), c(static_cast<size_t>(n));
    CELER_CUDA_CHECK(cudaMemset(b.get(), 0, b.bytes()));
    CELER_CUDA_CHECK(cudaMemset(c.get(), 0, c.bytes()));
    copy_f32(a.get(), b.get(), n, nullptr);  // warm-up
    EventTimer timer;
    timer.start();
    for (int r = 0; r < reps; ++r) copy_f32(a.get(), b.get(), n, nullptr);
    const double t_copy = timer.stop() / reps;
    timer.start();
    for (int r = 0; r < reps; ++r) triad_f32(a.get(), b.get(), c.get(), 3.0f, n, nullptr);
    const double t_triad = timer.stop() / reps;
    py::dict out;
    out["bytes"] = n * 4;
    out["copy_seconds"] = t_copy;
    out["triad_seconds"] = t_triad;
    out["copy_gbs"] = 2.0 * n * 4 / t_copy / 1e9;    // read + write
    out["triad_gbs"] = 3.0 * n * 4 / t_triad / 1e9;  // two reads + write
    return out;
  }, py::arg("nbytes") = int64_t(1) << 30, py::arg("reps") = 10, "Device memory bandwidth (copy and triad), GB/s.");

  m.def("triad", [](const Array<float>& b, const Array<float>& c, float s) {
    require_device();
    require(b.size() == c.size(), "b and c must have the same size");
    auto db = upload(b), dc = upload(c);
    DeviceBuffer<float> a(static_cast<size_t>(b.size()));
    triad_f32(a.get(), db.get(), dc.get(), s, b.size(), nullptr);
    device_sync();
    return download(a, {b.size()});
  }, py::arg("b"), py::arg("c"), py::arg("s"), "a = b + s * c (the bandwidth kernel, for its test).");

  m.def("matmul_tflops", [](int64_t n, int reps, const std::string& weight_dtype,
                            const std::vector<std::string>& cublas_candidates) {
    require_device();
    require(n >= 64 && reps >= 1, "n >= 64 and reps >= 1");
    require(weight_dtype == "f32" || weight_dtype == "bf16", "weight_dtype must be 'f32' or 'bf16'");
    Gemm gemm(nullptr, cublas_candidates);
    DeviceBuffer<float> x(static_cast<size_t>(n * n)), w(static_cast<size_t>(n * n)), y(static_cast<size_t>(n * n));
    DeviceBuffer<uint16_t> wb(static_cast<size_t>(n * n)), xb(static_cast<size_t>(n * n));
    CELER_CUDA_CHECK(cudaMemset(x.get(), 0, x.bytes()));
    CELER_CUDA_CHECK(cudaMemset(w.get(), 0, w.bytes()));
    f32_to_bf16(wb.get(), w.get(), n * n, nullptr);
    auto run = [&] {
      if (weight_dtype == "f32")
        gemm.nt_f32(y.get(), x.get(), w.get(), n, n, n);
      else
        gemm.nt_bf16(y.get(), x.get(), wb.get(), xb.get(), n, n, n);
    };
    run();  // warm-up (cuBLAS picks its kernel)
    EventTimer timer;
    timer.start();
    for (int r = 0; r < reps; ++r) run();
    const double t = timer.stop() / reps;
    return 2.0 * double(n) * n * n / t / 1e12;
  }, py::arg("n") = 4096, py::arg("reps") = 10, py::arg("weight_dtype") = "f32",
     py::arg("cublas_candidates") = std::vector<std::string>{},
     "Achieved matmul TFLOP/s of an n x n x n product (bf16 includes rounding x to bf16).");
}
