// Helpers shared by the file formats in io/ (internal: not part of the public API).
#pragma once
#include <string>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "io/json.h"
#include "io/mapped_file.h"
#include "core/tensor.h"

namespace celer::io {

// Our formats store little-endian bytes and we copy them as they are.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "celerinfer's file IO assumes a little-endian host");

// The bytes of a mapped file as text (for the JSON reader; the file must outlive the views).
inline std::string_view file_text(const MappedFile& file) {
  return std::string_view(reinterpret_cast<const char*>(file.data()), file.size());
}

// Shortest text that reads back to the same value ("0.1", "1e-05"); NaN / Infinity /
// -Infinity for non-finite values (the tokens Python's json writes). Locale-independent.
std::string format_double(double v);
std::string format_float(float v);

// Runs f(); a FormatError it throws is rethrown with "<context>: " in front, so low-level
// messages ("base64: invalid character ...") say which tensor or key they are about.
template <class F>
auto with_context(const std::string& context, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const FormatError& e) {
    throw FormatError(context + ": " + e.what());
  }
}

// Config members: absent and null both mean "keep the default" (the value is unchanged and
// nullptr / false is returned); a present member of the wrong kind is a FormatError naming
// "<context>.<key>". Booleans also accept 0 and 1 (some writers use them for flags).
const json::Value* member(const json::Value& object, const char* key);
bool read_int(const json::Value& object, const char* key, const std::string& context, int64_t lo, int64_t& out);
bool read_double(const json::Value& object, const char* key, const std::string& context, double& out);
bool read_bool(const json::Value& object, const char* key, const std::string& context, bool& out);
bool read_string(const json::Value& object, const char* key, const std::string& context, std::string& out);

// A JSON list of non-negative integer dimensions; FormatError naming `context` otherwise.
Shape read_shape(const json::Value& v, const std::string& context);

// A weight as float32: F32 is kept as is (a zero-copy view) when 4-byte aligned and copied
// otherwise; F16 / BF16 / F64 are converted. Other dtypes: FormatError naming `what`.
Tensor weight_to_f32(const Tensor& t, const std::string& what);

// Input ids: int32 / int64 kept (copied into owned memory); other dtypes rejected.
Tensor input_ids_tensor(const Tensor& t, const std::string& what);
// Attention mask: int32 / int64 kept; bool / int8 / uint8 widened to int32; floats rejected.
Tensor attention_mask_tensor(const Tensor& t, const std::string& what);

}  // namespace celer::io
