#include "io/gguf_types.h"

#include <utility>

#include "core/error.h"

namespace celer::io {

namespace {
struct TypeName {
  uint32_t id;
  const char* name;
};
// The types llama.cpp defines (ids 4 and 5 were removed formats), for messages.
constexpr TypeName kGgmlTypes[] = {
    {0, "F32"},      {1, "F16"},      {2, "Q4_0"},     {3, "Q4_1"},    {6, "Q5_0"},   {7, "Q5_1"},
    {8, "Q8_0"},     {9, "Q8_1"},     {10, "Q2_K"},    {11, "Q3_K"},   {12, "Q4_K"},  {13, "Q5_K"},
    {14, "Q6_K"},    {15, "Q8_K"},    {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"},
    {20, "IQ4_NL"},  {21, "IQ3_S"},   {22, "IQ2_S"},   {23, "IQ4_XS"}, {24, "I8"},    {25, "I16"},
    {26, "I32"},     {27, "I64"},     {28, "F64"},     {29, "IQ1_M"},  {30, "BF16"},  {34, "TQ1_0"},
    {35, "TQ2_0"},
};
struct Supported {
  uint32_t id;
  DType dtype;
};
constexpr Supported kSupported[] = {
    {0, DType::F32},   {1, DType::F16},   {2, DType::Q4_0},  {3, DType::Q4_1},
    {8, DType::Q8_0},  {12, DType::Q4_K}, {14, DType::Q6_K}, {30, DType::BF16},
};
}  // namespace

DType gguf_tensor_dtype(uint32_t type, const std::string& what) {
  for (const Supported& s : kSupported)
    if (s.id == type) return s.dtype;
  for (const TypeName& t : kGgmlTypes)
    if (t.id == type)
      throw FormatError(what + ": tensor type " + t.name + " is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, "
                        "Q4_K and Q6_K are)");
  throw FormatError(what + ": unknown tensor type " + std::to_string(type));
}

uint32_t gguf_type_of(DType dtype) {
  for (const Supported& s : kSupported)
    if (s.dtype == dtype) return s.id;
  throw ValueError("GGUF has no tensor type for " + dtype_name(dtype));
}

std::string gguf_tensor_name(const std::string& hf) {
  static const std::pair<const char*, const char*> kTop[] = {
      {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"}};
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm.", "attn_norm."},  {"self_attn.q_proj.", "attn_q."},     {"self_attn.k_proj.", "attn_k."},
      {"self_attn.v_proj.", "attn_v."},    {"self_attn.o_proj.", "attn_output."}, {"post_attention_layernorm.", "ffn_norm."},
      {"mlp.gate_proj.", "ffn_gate."},     {"mlp.up_proj.", "ffn_up."},           {"mlp.down_proj.", "ffn_down."}};
  for (const auto& [from, to] : kTop)
    if (hf == from) return to;
  const std::string prefix = "model.layers.";
  if (hf.compare(0, prefix.size(), prefix) == 0) {
    const size_t dot = hf.find('.', prefix.size());
    const std::string layer = hf.substr(prefix.size(), dot - prefix.size()), rest = hf.substr(dot + 1);
    for (const auto& [from, to] : kLayer)
      if (rest.compare(0, std::string(from).size(), from) == 0)
        return "blk." + layer + "." + to + rest.substr(std::string(from).size());
  }
  throw ValueError("no GGUF name for tensor '" + hf + "'");
}

}  // namespace celer::io
