// ModelConfig <-> JSON object text (Hugging Face key names; unknown keys are ignored).
#pragma once
#include <string>

#include "config.h"
#include "json.h"

namespace celer {

ModelConfig config_from_json(const json::Value& object, const std::string& context);
std::string config_to_json(const ModelConfig& config);  // one JSON object, HF names

}  // namespace celer
