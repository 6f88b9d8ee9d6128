#include "io/json.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "io/io_util.h"

namespace celer::json {

namespace {
constexpr int kMaxDepth = 64;

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::Null: return "null";
    case Value::Kind::Bool: return "a boolean";
    case Value::Kind::Number: return "a number";
    case Value::Kind::String: return "a string";
    case Value::Kind::Array: return "an array";
    case Value::Kind::Object: return "an object";
  }
  return "?";
}

std::string describe_char(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02x", u);
  return buf;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// First byte in [p, end) that ends a plain run inside a string: '"', '\\' or a control
// character. Eight bytes at a time (SWAR "has byte equal / less than" tests), since base64
// payloads can be gigabytes long.
const char* find_string_special(const char* p, const char* end) {
  constexpr uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  while (end - p >= 8) {
    uint64_t x;
    std::memcpy(&x, p, 8);
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x);
    if (hit & highs) break;
    p += 8;
  }
  for (; p < end; ++p) {
    unsigned char c = static_cast<unsigned char>(*p);
    if (c == '"' || c == '\\' || c < 0x20) return p;
  }
  return end;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Four hex digits at s[i..i+4) or -1.
int32_t hex4(std::string_view s, size_t i) {
  if (i + 4 > s.size()) return -1;
  int32_t v = 0;
  for (size_t k = 0; k < 4; ++k) {
    int h = hex_value(s[i + k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

// Decodes the escapes of a raw string body. Surrogate pairs become one code point; a lone
// surrogate (which Python's json can write) becomes U+FFFD.
std::string decode_string(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size();) {
    size_t bs = raw.find('\\', i);
    if (bs == std::string_view::npos) bs = raw.size();
    out.append(raw.data() + i, bs - i);
    if (bs == raw.size()) break;
    if (bs + 1 >= raw.size()) throw FormatError("JSON: string ends inside an escape");
    char e = raw[bs + 1];
    i = bs + 2;
    switch (e) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        int32_t cp = hex4(raw, i);
        if (cp < 0) throw FormatError("JSON: invalid \\u escape");
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < raw.size() && raw[i] == '\\' && raw[i + 1] == 'u') {
          int32_t lo = hex4(raw, i + 2);
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
        append_utf8(out, uint32_t(cp));
        break;
      }
      default:
        throw FormatError("JSON: invalid escape '\\" + std::string(1, e) + "'");
    }
  }
  return out;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()) {}

  Value document() {
    Value v = value(0);
    skip_ws();
    if (p_ != end_) unexpected();
    return v;
  }

 private:
  const char* begin_;
  const char* p_;
  const char* end_;

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError("JSON: " + what + " at byte " + std::to_string(p_ - begin_));
  }
  [[noreturn]] void unexpected() const {
    if (p_ == end_) fail("unexpected end of input");
    fail("unexpected character " + describe_char(*p_));
  }

  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  void expect(char c) {
    skip_ws();
    if (p_ == end_ || *p_ != c) unexpected();
    ++p_;
  }
  // Consumes `word` exactly (true, null, NaN, ...).
  void literal(std::string_view word) {
    for (char c : word) {
      if (p_ == end_ || *p_ != c) unexpected();
      ++p_;
    }
  }

  Value value(int depth) {
    skip_ws();
    if (p_ == end_) unexpected();
    Value v;
    switch (*p_) {
      case '{': return object(depth + 1);
      case '[': return array(depth + 1);
      case '"':
        v.kind = Value::Kind::String;
        v.raw_string = string_body();
        return v;
      case 't': literal("true"); v.kind = Value::Kind::Bool; v.boolean = true; return v;
      case 'f': literal("false"); v.kind = Value::Kind::Bool; return v;
      case 'n': literal("null"); return v;
      case 'N': literal("NaN"); return number_value(std::numeric_limits<double>::quiet_NaN());
      case 'I': literal("Infinity"); return number_value(std::numeric_limits<double>::infinity());
      default:
        if (*p_ == '-' || is_digit(*p_)) return number();
        unexpected();
    }
  }

  static Value number_value(double x) {
    Value v;
    v.kind = Value::Kind::Number;
    v.number = x;
    return v;
  }

  void check_depth(int depth) const {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
  }

  Value object(int depth) {
    check_depth(depth);
    ++p_;  // '{'
    Value v;
    v.kind = Value::Kind::Object;
    skip_ws();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return v;
    }
    while (true) {
      skip_ws();
      if (p_ == end_ || *p_ != '"') unexpected();
      std::string key = decode_string(string_body());
      expect(':');
      v.object.emplace_back(std::move(key), value(depth));
      skip_ws();
      if (p_ == end_) unexpected();
      if (*p_ == '}') break;
      if (*p_ != ',') unexpected();
      ++p_;
    }
    ++p_;
    return v;
  }

  Value array(int depth) {
    check_depth(depth);
    ++p_;  // '['
    Value v;
    v.kind = Value::Kind::Array;
    skip_ws();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
      return v;
    }
    while (true) {
      v.array.push_back(value(depth));
      skip_ws();
      if (p_ == end_) unexpected();
      if (*p_ == ']') break;
      if (*p_ != ',') unexpected();
      ++p_;
    }
    ++p_;
    return v;
  }

  // p_ at the opening quote; returns the raw body and leaves p_ after the closing quote.
  // Escapes are validated here so that str() cannot fail later on a parsed document.
  std::string_view string_body() {
    const char* start = ++p_;
    while (true) {
      p_ = find_string_special(p_, end_);
      if (p_ == end_) fail("unterminated string");
      if (*p_ == '"') break;
      if (*p_ != '\\') fail("control character " + describe_char(*p_) + " in a string");
      ++p_;
      if (p_ == end_) unexpected();
      if (*p_ == 'u') {
        if (hex4(std::string_view(p_ + 1, size_t(end_ - p_ - 1)), 0) < 0) fail("invalid \\u escape");
        p_ += 5;
      } else if (*p_ != '\0' && std::strchr("\"\\/bfnrt", *p_)) {
        ++p_;
      } else {
        fail("invalid escape '\\" + std::string(1, *p_) + "'");
      }
    }
    std::string_view body(start, size_t(p_ - start));
    ++p_;
    return body;
  }

  // Strict JSON number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, or -Infinity.
  Value number() {
    const char* start = p_;
    if (*p_ == '-') {
      ++p_;
      if (p_ < end_ && *p_ == 'I') {
        literal("Infinity");
        return number_value(-std::numeric_limits<double>::infinity());
      }
    }
    if (p_ < end_ && *p_ == '0') {
      ++p_;
    } else if (p_ < end_ && is_digit(*p_)) {
      while (p_ < end_ && is_digit(*p_)) ++p_;
    } else {
      unexpected();
    }
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (p_ == end_ || !is_digit(*p_)) unexpected();
      while (p_ < end_ && is_digit(*p_)) ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !is_digit(*p_)) unexpected();
      while (p_ < end_ && is_digit(*p_)) ++p_;
    }
    return number_value(to_double(start, p_));
  }

  // The text is already known to be a valid number.
  static double to_double(const char* first, const char* last) {
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
    double x = 0;
    auto r = std::from_chars(first, last, x);
    if (r.ec == std::errc() && r.ptr == last) return x;
#endif
    // Out of range (1e999 -> inf, 1e-999 -> 0, as Python reads them) or no from_chars.
    std::string copy(first, last);
    return std::strtod(copy.c_str(), nullptr);
  }
};
}  // namespace

const Value* Value::find(std::string_view key) const {
  if (kind != Kind::Object) return nullptr;
  // The last duplicate wins, as in Python's json.
  for (auto it = object.rbegin(); it != object.rend(); ++it)
    if (it->first == key) return &it->second;
  return nullptr;
}

const Value& Value::at(std::string_view key, std::string_view context) const {
  if (kind != Kind::Object)
    throw FormatError(std::string(context) + ": expected an object, got " + kind_name(kind));
  const Value* v = find(key);
  if (!v) {
    std::string path = context.empty() ? std::string(key) : std::string(context) + "." + std::string(key);
    throw FormatError("missing key '" + path + "'");
  }
  return *v;
}

std::string Value::str(std::string_view context) const {
  if (kind != Kind::String)
    throw FormatError(std::string(context) + ": expected a string, got " + kind_name(kind));
  return io::with_context(std::string(context), [&] { return decode_string(raw_string); });
}

double Value::num(std::string_view context) const {
  if (kind != Kind::Number)
    throw FormatError(std::string(context) + ": expected a number, got " + kind_name(kind));
  return number;
}

int64_t Value::integer(std::string_view context, int64_t lo, int64_t hi) const {
  const std::string ctx(context);
  if (kind != Kind::Number) throw FormatError(ctx + ": expected an integer, got " + kind_name(kind));
  if (!std::isfinite(number) || number != std::trunc(number))
    throw FormatError(ctx + ": expected an integer, got " + io::format_double(number));
  // Both bounds are exact doubles (+-2^63), so the cast below is defined.
  bool in_int64 = number >= -9223372036854775808.0 && number < 9223372036854775808.0;
  int64_t v = in_int64 ? static_cast<int64_t>(number) : 0;
  if (!in_int64 || v < lo || v > hi)
    throw FormatError(ctx + ": " + (in_int64 ? std::to_string(v) : io::format_double(number)) +
                      " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

Value parse(std::string_view text) { return Parser(text).document(); }

std::string quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out += c;  // UTF-8 bytes pass through unchanged
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace celer::json
