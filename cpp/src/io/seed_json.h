// The seed JSON format (shared/seeds/000_*.txt): meta, config, inputs, rope, weights, each
// tensor {data: base64 little-endian C-order, shape, dtype, preview}; linear weights (out, in).
#pragma once
#include <string>

#include "core/model.h"

namespace celer {

// Loads and validates a seed JSON model (weights converted to float32). Throws IOError /
// FormatError naming the key or tensor at fault.
Model load_seed_json(const std::string& path);

// Writes `model` in the seed format (atomic). The RoPE cache is written (computed from
// rope_theta when the model has none), and the inputs when the model carries them.
void save_seed_json(const Model& model, const std::string& path);

}  // namespace celer
