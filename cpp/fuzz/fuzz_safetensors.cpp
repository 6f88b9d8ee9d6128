// safetensors (io/safetensors.cpp): the header length, the JSON header, every entry's dtype /
// shape / data_offsets, overlap checks, then the model mapping (the "celerinfer.config"
// metadata as our config JSON, Hugging Face tensor names, F16 / BF16 conversion, validation).
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = celer_fuzz::input_file().set(data, size);
  CELER_FUZZ_EXPECTED(celer::read_safetensors(path));
  CELER_FUZZ_EXPECTED(celer::load_safetensors_model(path));
  return 0;
}
