#include "io/io_util.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/config.h"

namespace celer::io {

namespace {
std::string non_finite(double v) {
  if (std::isnan(v)) return "NaN";
  return v > 0 ? "Infinity" : "-Infinity";
}

#if !(defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L)
// Fallback for standard libraries without floating-point to_chars: the shortest %.*g that
// reads back exactly; a locale's decimal comma is turned back into a point.
template <class T>
std::string shortest_printf(T v, int max_digits) {
  char buf[64];
  for (int digits = 1; digits <= max_digits; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, double(v));
    for (char* p = buf; *p; ++p)
      if (*p == ',') *p = '.';
    if (T(std::strtod(buf, nullptr)) == v) break;
  }
  return buf;
}
#endif
}  // namespace

std::string format_double(double v) {
  if (!std::isfinite(v)) return non_finite(v);
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  // Like Python's repr: fixed notation for 1e-4 <= |v| < 1e16 ("1000000.0"), else
  // scientific ("1e-05"); either way the fewest digits that read back exactly.
  char buf[64];
  double a = std::fabs(v);
  bool fixed = a == 0 || (a >= 1e-4 && a < 1e16);
  auto r = std::to_chars(buf, buf + sizeof buf, v, fixed ? std::chars_format::fixed : std::chars_format::scientific);
  std::string s(buf, r.ptr);
  if (fixed && s.find('.') == std::string::npos) s += ".0";
  return s;
#else
  return shortest_printf(v, 17);
#endif
}

std::string format_float(float v) {
  if (!std::isfinite(v)) return non_finite(v);
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
#else
  return shortest_printf(v, 9);
#endif
}

namespace {
Tensor owned_copy(const Tensor& t) {
  Tensor out = Tensor::zeros(t.dtype, t.shape);
  if (t.nbytes()) std::memcpy(out.data, t.data, t.nbytes());
  return out;
}
}  // namespace

namespace {
constexpr int64_t kMaxConfigInt = int64_t(1) << 40;  // ModelConfig::resolve applies the real limits
}

const json::Value* member(const json::Value& object, const char* key) {
  const json::Value* v = object.find(key);
  return v && v->kind != json::Value::Kind::Null ? v : nullptr;
}

bool read_int(const json::Value& object, const char* key, const std::string& context, int64_t lo, int64_t& out) {
  const json::Value* v = member(object, key);
  if (v) out = v->integer(context + "." + key, lo, kMaxConfigInt);
  return v != nullptr;
}

bool read_double(const json::Value& object, const char* key, const std::string& context, double& out) {
  const json::Value* v = member(object, key);
  if (v) out = v->num(context + "." + key);
  return v != nullptr;
}

bool read_bool(const json::Value& object, const char* key, const std::string& context, bool& out) {
  const json::Value* v = member(object, key);
  if (!v) return false;
  out = v->kind == json::Value::Kind::Bool ? v->boolean : v->integer(context + "." + key, 0, 1) == 1;
  return true;
}

bool read_string(const json::Value& object, const char* key, const std::string& context, std::string& out) {
  const json::Value* v = member(object, key);
  if (v) out = v->str(context + "." + key);
  return v != nullptr;
}

Shape read_shape(const json::Value& v, const std::string& context) {
  if (v.kind != json::Value::Kind::Array) throw FormatError(context + ": expected a list of dimensions");
  Shape shape;
  for (const json::Value& d : v.array) shape.push_back(d.integer(context, 0, INT64_MAX));
  return shape;
}

Tensor weight_to_f32(const Tensor& t, const std::string& what) {
  switch (t.dtype) {
    case DType::F32:
      if (reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) return t;
      return owned_copy(t);
    case DType::F16:
    case DType::BF16:
    case DType::F64: {
      // A view into a file can start at any byte (a safetensors header of odd length, a data
      // offset that is not a multiple of the element size): to_f32 reads through typed
      // pointers, so a misaligned view is converted from an aligned copy (UBSan, in cpp/fuzz).
      const bool aligned = reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype) == 0;
      check_allocation(uint64_t(t.numel()) * 4 + (aligned ? 0 : t.nbytes()), what + " as float32");
      return to_f32(aligned ? t : owned_copy(t));
    }
    default:
      throw FormatError(what + ": dtype " + dtype_name(t.dtype) + " is not a floating-point type");
  }
}

Tensor input_ids_tensor(const Tensor& t, const std::string& what) {
  if (t.dtype != DType::I32 && t.dtype != DType::I64)
    throw FormatError(what + ": dtype " + dtype_name(t.dtype) + ", expected int32 or int64");
  return owned_copy(t);
}

Tensor attention_mask_tensor(const Tensor& t, const std::string& what) {
  if (t.dtype == DType::I32 || t.dtype == DType::I64) return owned_copy(t);
  if (t.dtype != DType::BOOL && t.dtype != DType::I8 && t.dtype != DType::U8)
    throw FormatError(what + ": dtype " + dtype_name(t.dtype) + ", expected an integer or bool type");
  Tensor out = Tensor::zeros(DType::I32, t.shape);
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i)
    out.as<int32_t>()[i] = t.dtype == DType::I8 ? int32_t(t.as<int8_t>()[i]) : int32_t(t.as<uint8_t>()[i]);
  return out;
}

}  // namespace celer::io
