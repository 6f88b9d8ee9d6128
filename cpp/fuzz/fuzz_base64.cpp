// base64 (io/base64.cpp): decoding arbitrary text, and encode -> decode giving back the bytes.
#include <cstring>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "io/base64.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CELER_FUZZ_EXPECTED({
    const size_t n = celer::base64_decoded_size(text);
    if (n > size) celer_fuzz::violated("decoded size larger than the text");
    std::vector<uint8_t> out(n + 1, 0xA5);  // one guard byte past the end
    celer::base64_decode(text, out.data());
    if (out[n] != 0xA5) celer_fuzz::violated("base64_decode wrote past the decoded size");
  });
  // Any bytes survive a round trip.
  const std::string coded = celer::base64_encode(data, size);
  if (celer::base64_decoded_size(coded) != size) celer_fuzz::violated("decoded size of encoded bytes");
  std::vector<uint8_t> back(size);
  celer::base64_decode(coded, back.data());
  if (size && std::memcmp(back.data(), data, size) != 0) celer_fuzz::violated("encode -> decode changed the bytes");
  return 0;
}
