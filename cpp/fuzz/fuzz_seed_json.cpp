// The seed JSON format (io/seed_json.cpp over io/json.cpp and io/base64.cpp): config, inputs,
// rope and weights records, each {dtype, shape, data: base64}, checked against one another.
#include "fuzz_util.h"
#include "io/seed_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = celer_fuzz::input_file().set(data, size);
  CELER_FUZZ_EXPECTED(celer::load_seed_json(path));
  return 0;
}
