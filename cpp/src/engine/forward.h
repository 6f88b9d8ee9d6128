// The full forward pass: every position of a (B, S) batch at once, no cache.
#pragma once
#include <vector>

#include "core/model.h"

namespace celer {

// input_ids: (B, S) int32/int64 in [0, vocab); attention_mask: null or (B, S) of 0/1
// (any integer or bool dtype). Returns logits (B, S, vocab) float32. Positions are 0..S-1 in
// every row; query i attends to keys j <= i whose mask is 1 (rows of padded queries are
// unspecified). Throws ValueError on bad input, and when the logits are not finite
// (naming a weight that holds NaN/Inf when one does).
Tensor forward(const Model& model, const Tensor& input_ids, const Tensor* attention_mask);

// Throws ValueError when logits hold NaN/Inf, naming a non-finite weight if there is one.
void check_finite(const Model& model, const Tensor& logits);

// Checks ids/mask against the model and converts them: ids to int64, mask to 0/1 bytes
// (all ones when absent). Shared by every entry point that takes token ids.
struct TokenBatch {
  int64_t batch = 0, seq_len = 0;
  std::vector<int64_t> ids;
  std::vector<uint8_t> valid;
};
TokenBatch check_tokens(const ModelConfig& config, const Tensor& input_ids, const Tensor* attention_mask);

}  // namespace celer
