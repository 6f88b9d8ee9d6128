#include "engine/forward.h"

#include <cmath>
#include <vector>

#include "engine/engine.h"
#include "core/block_quant.h"
#include "core/error.h"

namespace celer {

namespace {
int64_t read_int(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::I32: return t.as<int32_t>()[i];
    case DType::I64: return t.as<int64_t>()[i];
    case DType::I8: return t.as<int8_t>()[i];
    case DType::U8: case DType::BOOL: return t.as<uint8_t>()[i];
    default: throw ValueError("expected an integer tensor, got " + dtype_name(t.dtype));
  }
}
}  // namespace

TokenBatch check_tokens(const ModelConfig& c, const Tensor& input_ids, const Tensor* attention_mask) {
  require(input_ids.shape.size() == 2, "input_ids must be 2-D (batch, seq_len), got shape " + shape_str(input_ids.shape));
  require(input_ids.dtype == DType::I32 || input_ids.dtype == DType::I64,
          "input_ids must be int32 or int64, got " + dtype_name(input_ids.dtype));
  TokenBatch t;
  t.batch = input_ids.shape[0];
  t.seq_len = input_ids.shape[1];
  require(t.batch >= 1 && t.seq_len >= 1, "input_ids is empty: shape " + shape_str(input_ids.shape));
  require(t.seq_len <= c.max_position_embeddings,
          "sequence length " + std::to_string(t.seq_len) + " exceeds max_position_embeddings (" +
              std::to_string(c.max_position_embeddings) + ")");
  const int64_t n = t.batch * t.seq_len;
  t.ids.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = read_int(input_ids, i);
    require(id >= 0 && id < c.vocab_size, "token id " + std::to_string(id) + " at input_ids[" +
                                              std::to_string(i / t.seq_len) + ", " + std::to_string(i % t.seq_len) +
                                              "] is out of range [0, " + std::to_string(c.vocab_size) + ")");
    t.ids[size_t(i)] = id;
  }
  t.valid.assign(size_t(n), 1);
  if (attention_mask && !attention_mask->empty()) {
    require(attention_mask->shape == input_ids.shape, "attention_mask has shape " + shape_str(attention_mask->shape) +
                                                          " but input_ids has " + shape_str(input_ids.shape));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t m = read_int(*attention_mask, i);
      require(m == 0 || m == 1, "attention_mask must hold only 0 and 1, found " + std::to_string(m));
      t.valid[size_t(i)] = uint8_t(m);
    }
  }
  return t;
}

Tensor forward(const Model& model, const Tensor& input_ids, const Tensor* attention_mask) {
  // The plain forward pass is v0's prefill: no cache kept, each layer's K/V only while that
  // layer attends.
  const TokenBatch tok = check_tokens(model.config, input_ids, attention_mask);
  Engine engine(model, find_version("v0"), tok.seq_len);
  return engine.forward(input_ids, attention_mask);
}

void check_finite(const Model& model, const Tensor& logits) {
  const float* p = logits.f32();
  bool finite = true;
  for (int64_t i = 0, n = logits.numel(); i < n && finite; ++i) finite = std::isfinite(p[i]);
  if (finite) return;
  // Name the culprit when it is a weight; otherwise the activations overflowed.
  for (const WeightSlot& slot : weight_slots(const_cast<Model&>(model))) {
    const Tensor& t = *slot.tensor;
    if (is_block_type(t.dtype)) {  // a block's only floats are its fp16 scales
      const int64_t bad = first_nonfinite_block(t.dtype, t.data, int64_t(t.nbytes() / dtype_size(t.dtype)));
      if (bad >= 0)
        throw ValueError("the logits are not finite: weight '" + slot.name + "' has a NaN or Inf scale in block " +
                         std::to_string(bad));
      continue;
    }
    const float* w = t.f32();
    for (int64_t i = 0, n = t.numel(); i < n; ++i)
      if (!std::isfinite(w[i])) throw ValueError("the logits are not finite: weight '" + slot.name + "' holds " +
                                                 (std::isnan(w[i]) ? "NaN" : "Inf") + " at flat index " +
                                                 std::to_string(i));
  }
  throw ValueError("the logits are not finite (the activations overflowed float32)");
}

}  // namespace celer
