#include "io/base64.h"

#include <array>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace celer {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr uint8_t kInvalid = 0x80;  // any value with this bit set is not a base64 digit

// Character -> 6-bit value, kInvalid for everything else ('=' included: padding is handled
// by position, not by the table).
const std::array<uint8_t, 256> kDecode = [] {
  std::array<uint8_t, 256> t{};
  t.fill(kInvalid);
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = uint8_t(i);
  return t;
}();

// The same value pre-shifted into its place in a 24-bit group, one table per position, so a
// group is four loads ORed together; an invalid character sets the top byte.
using ShiftedTables = std::array<std::array<uint32_t, 256>, 4>;
const ShiftedTables kShifted = [] {
  ShiftedTables t{};
  for (int pos = 0; pos < 4; ++pos)
    for (int c = 0; c < 256; ++c)
      t[pos][c] = kDecode[c] & kInvalid ? 0xFF000000u : uint32_t(kDecode[c]) << (18 - 6 * pos);
  return t;
}();

// Byte pairs -> two characters: three input bytes are two 12-bit lookups.
const std::array<uint16_t, 4096> kEncodePairs = [] {
  std::array<uint16_t, 4096> t{};
  for (int i = 0; i < 4096; ++i) {
    char pair[2] = {kAlphabet[i >> 6], kAlphabet[i & 63]};
    std::memcpy(&t[i], pair, 2);
  }
  return t;
}();

[[noreturn]] void invalid_at(std::string_view text, size_t pos) {
  unsigned char c = static_cast<unsigned char>(text[pos]);
  char shown[16];
  if (c >= 0x20 && c < 0x7f)
    std::snprintf(shown, sizeof shown, "'%c'", c);
  else
    std::snprintf(shown, sizeof shown, "0x%02x", c);
  throw FormatError(std::string("base64: invalid character ") + shown + " at position " + std::to_string(pos));
}

// Number of '=' at the end (0, 1 or 2); more is reported as a misplaced '=' by the decoder.
size_t padding(std::string_view text) {
  size_t n = text.size();
  if (n >= 1 && text[n - 1] == '=') return n >= 2 && text[n - 2] == '=' ? 2 : 1;
  return 0;
}

// The first non-digit among `count` chars from `pos` (the caller knows there is one).
[[noreturn]] void report_group(std::string_view text, size_t pos, size_t count) {
  for (size_t k = 0; k < count; ++k)
    if (kDecode[static_cast<unsigned char>(text[pos + k])] & kInvalid) invalid_at(text, pos + k);
  invalid_at(text, pos);
}
}  // namespace

std::string base64_encode(const void* data, size_t n) {
  const uint8_t* in = static_cast<const uint8_t*>(data);
  std::string out(4 * ((n + 2) / 3), '=');
  char* o = out.data();
  size_t i = 0;
  for (; i + 3 <= n; i += 3, o += 4) {
    uint32_t v = uint32_t(in[i]) << 16 | uint32_t(in[i + 1]) << 8 | in[i + 2];
    std::memcpy(o, &kEncodePairs[v >> 12], 2);
    std::memcpy(o + 2, &kEncodePairs[v & 4095], 2);
  }
  if (n - i == 1) {
    uint32_t v = uint32_t(in[i]) << 16;
    o[0] = kAlphabet[v >> 18];
    o[1] = kAlphabet[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = uint32_t(in[i]) << 16 | uint32_t(in[i + 1]) << 8;
    o[0] = kAlphabet[v >> 18];
    o[1] = kAlphabet[(v >> 12) & 63];
    o[2] = kAlphabet[(v >> 6) & 63];
  }
  return out;
}

size_t base64_decoded_size(std::string_view text) {
  if (text.size() % 4 != 0)
    throw FormatError("base64: length " + std::to_string(text.size()) + " is not a multiple of 4");
  return text.size() / 4 * 3 - padding(text);
}

void base64_decode(std::string_view text, void* out) {
  base64_decoded_size(text);  // length check
  const size_t pad = padding(text);
  const size_t full = text.size() / 4 - (pad ? 1 : 0);  // groups with 4 digits
  const unsigned char* s = reinterpret_cast<const unsigned char*>(text.data());
  uint8_t* o = static_cast<uint8_t*>(out);
  for (size_t g = 0; g < full; ++g, s += 4, o += 3) {
    uint32_t v = kShifted[0][s[0]] | kShifted[1][s[1]] | kShifted[2][s[2]] | kShifted[3][s[3]];
    if (v >> 24) report_group(text, g * 4, 4);
    o[0] = uint8_t(v >> 16);
    o[1] = uint8_t(v >> 8);
    o[2] = uint8_t(v);
  }
  if (pad == 0) return;
  // The last group: "xy==" -> 1 byte, "xyz=" -> 2 bytes.
  const size_t digits = 4 - pad;
  uint32_t v = 0;
  for (size_t k = 0; k < digits; ++k) {
    uint32_t x = kDecode[s[k]];
    if (x & kInvalid) report_group(text, full * 4, digits);
    v |= x << (18 - 6 * k);
  }
  o[0] = uint8_t(v >> 16);
  if (pad == 1) o[1] = uint8_t(v >> 8);
}

}  // namespace celer
