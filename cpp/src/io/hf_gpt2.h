// GPT-2 checkpoints <-> our model layout. Hugging Face GPT-2 stores Conv1D weights as (in, out)
// and fuses q, k, v into one c_attn; our layout (model.h) has (out, in) weights and separate
// q, k, v, so loading copies (split and transposed) and saving fuses them again. Names:
//   transformer.wte / wpe.weight           -> model.embed_tokens / model.embed_positions.weight
//   transformer.h.N.ln_1 / ln_2.{weight,bias} -> input_layernorm / post_attention_layernorm
//   transformer.h.N.attn.c_attn.{weight,bias} -> self_attn.{q,k,v}_proj.{weight,bias}
//   transformer.h.N.attn.c_proj.{weight,bias} -> self_attn.o_proj.{weight,bias}
//   transformer.h.N.mlp.c_fc / c_proj       -> mlp.up_proj / mlp.down_proj.{weight,bias}
//   transformer.ln_f.{weight,bias}          -> model.norm.{weight,bias}
// The "transformer." prefix is optional when reading (the original GPT-2 files lack it).
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/model.h"

namespace celer {

// Returns the tensor stored under a checkpoint name (nullptr when absent), marking it used.
using TensorLookup = std::function<const Tensor*(const std::string&)>;

// Fills every weight of a gpt2 model (its config set) from checkpoint tensors of any float
// dtype; FormatError "<context>: ..." naming a missing or misshapen tensor.
void gpt2_from_hf(Model& model, const TensorLookup& take, const std::string& context);

// The model's weights under GPT-2 checkpoint names ("transformer." prefix), float32, in order.
std::vector<std::pair<std::string, Tensor>> gpt2_to_hf(const Model& model);

// Buffers old GPT-2 checkpoints carry (causal masks): not weights, skipped when loading.
bool gpt2_ignorable(const std::string& name);

}  // namespace celer
