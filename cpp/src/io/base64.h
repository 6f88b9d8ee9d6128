// Standard base64 (RFC 4648, '+' '/', '=' padding).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace celer {

std::string base64_encode(const void* data, size_t n);
// Exact decoded length of `text`; throws FormatError on a length or padding error.
size_t base64_decoded_size(std::string_view text);
// Decodes into out (of base64_decoded_size bytes); throws FormatError on an invalid char.
void base64_decode(std::string_view text, void* out);

}  // namespace celer
