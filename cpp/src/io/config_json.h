// ModelConfig <-> JSON object text: our own format (HF key names plus "architecture"; unknown
// keys are ignored). A Hugging Face config.json (it has "model_type" or "architectures" and
// no "architecture") is read by io/hf_config.h instead.
#pragma once
#include <string>

#include "core/config.h"
#include "io/json.h"

namespace celer {

// intermediate_hint: the intermediate_size the weights show, used when a Hugging Face config
// leaves it out (0: none known; the seed rule applies).
ModelConfig config_from_json(const json::Value& object, const std::string& context, int64_t intermediate_hint = 0);
std::string config_to_json(const ModelConfig& config);  // one JSON object, HF names

// resolve() with a ValueError turned into a FormatError prefixed with `context`.
void resolve_in_context(ModelConfig& config, const std::string& context);

}  // namespace celer
