// GGUF (io/gguf_read.cpp, gguf_types.cpp, gguf_model.cpp): the header, typed metadata (the
// tokenizer's token / score / merge arrays and the chat template string included), the tensor
// table, alignment and overlap checks, then the mapping onto a Model (sizes from metadata,
// tensor names and shapes, quantized block scales, non-finite values).
#include "fuzz_util.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = celer_fuzz::input_file().set(data, size);
  celer::GgufMetadata metadata;
  CELER_FUZZ_EXPECTED(celer::load_gguf(path, &metadata));
  return 0;
}
