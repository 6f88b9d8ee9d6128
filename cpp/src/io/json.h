// A small JSON reader for our file formats. Strings are kept as views into the source text
// (which the caller keeps alive, e.g. a MappedFile), so multi-gigabyte base64 payloads are
// never copied before decoding. Errors throw FormatError with the byte offset.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace celer::json {

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string_view raw_string;  // between the quotes, escapes NOT decoded
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // keys decoded, in file order

  bool is_object() const { return kind == Kind::Object; }
  // Member lookup; nullptr when absent or when this is not an object.
  const Value* find(std::string_view key) const;
  // Member lookup that throws FormatError "missing key '<context>.<key>'".
  const Value& at(std::string_view key, std::string_view context) const;
  // Decoded string value (escapes processed); throws FormatError when not a string.
  std::string str(std::string_view context) const;
  // Number checked to be an integer in [lo, hi]; throws FormatError naming context.
  int64_t integer(std::string_view context, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) const;
  double num(std::string_view context) const;
};

// Parses a whole document; trailing non-space text is an error. Nesting depth is limited.
Value parse(std::string_view text);

// Writes `s` as a JSON string literal with escapes.
std::string quote(std::string_view s);

}  // namespace celer::json
