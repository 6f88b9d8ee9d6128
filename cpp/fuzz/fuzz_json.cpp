// The JSON reader (io/json.cpp) under every JSON file format: parse, then decode every string
// (which the parser promises cannot fail on a parsed document) and check that quote() gives
// back text the parser reads as the same string.
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "io/json.h"

namespace {
void walk(const celer::json::Value& v) {
  using Kind = celer::json::Value::Kind;
  if (v.kind == Kind::String) {
    std::string s;
    try {
      s = v.str("string");
    } catch (const celer::FormatError&) {
      celer_fuzz::violated("str() failed on a string the parser accepted");
    }
    const std::string quoted = celer::json::quote(s);  // parsed values view their text: keep it
    const celer::json::Value again = celer::json::parse(quoted);
    if (again.kind != Kind::String || again.str("again") != s) celer_fuzz::violated("quote -> parse changed a string");
  }
  for (const auto& item : v.array) walk(item);
  for (const auto& [key, item] : v.object) {
    (void)v.find(key);
    walk(item);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  celer::json::Value doc;
  try {
    doc = celer::json::parse(text);
  } catch (const celer::FormatError&) {
    return 0;
  }
  walk(doc);
  return 0;
}
