#include "io/hf_weights.h"

#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include "core/error.h"
#include "io/hf_config.h"
#include "io/hf_gpt2.h"
#include "io/io_util.h"
#include "io/safetensors.h"

namespace celer {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Tensors a checkpoint may hold besides the weights we read.
bool ignorable(const std::string& name, const ModelConfig& config) {
  if (name == "lm_head.weight") return config.tie_word_embeddings;  // tied: the embedding is used
  if (config.gpt2_style()) return gpt2_ignorable(name);
  return ends_with(name, ".rotary_emb.inv_freq");  // older HF Llama checkpoints; we compute it
}
}  // namespace

Model model_from_hf_tensors(const ModelConfig& config, const TensorMap& tensors, const std::string& context) {
  Model model;
  model.config = config;
  std::set<std::string> used;
  TensorLookup take = [&](const std::string& name) -> const Tensor* {
    auto it = tensors.find(name);
    if (it == tensors.end()) return nullptr;
    used.insert(name);
    return &it->second;
  };
  if (config.gpt2_style()) {
    gpt2_from_hf(model, take, context);
  } else {
    for (const WeightSlot& slot : weight_slots(model)) {
      const Tensor* t = take(slot.name);
      if (!t) throw FormatError(context + ": missing tensor '" + slot.name + "'");
      *slot.tensor = io::weight_to_f32(*t, context + ": tensor '" + slot.name + "'");
    }
  }
  for (const auto& [name, t] : tensors)
    if (!used.count(name) && !ignorable(name, config))
      throw FormatError(context + ": unexpected tensor '" + name + "' (not a weight of " + config.to_string() + ")");
  io::with_context(context, [&] { validate_model(model); });
  return model;
}

std::vector<std::pair<std::string, Tensor>> hf_tensors(const Model& model) {
  if (model.config.gpt2_style()) return gpt2_to_hf(model);
  Model m = float32_model(model);  // shares the tensors that are float32 in HF layout already
  std::vector<std::pair<std::string, Tensor>> out;
  for (const WeightSlot& slot : weight_slots(m)) out.emplace_back(slot.name, *slot.tensor);
  return out;
}

int64_t intermediate_size_of(const TensorMap& tensors) {
  auto it = tensors.find("model.layers.0.mlp.up_proj.weight");
  return it != tensors.end() && it->second.shape.size() == 2 ? it->second.shape[0] : 0;
}

void save_hf_folder(const Model& model, const std::string& folder) {
  Model m = model;
  validate_model(m);
  require(!has_custom_rope(m), "this model carries RoPE tables that differ from the ones rope_theta gives; a "
                               "Hugging Face folder cannot hold them (save it as .safetensors or .json)");
  struct stat st;
  if (::stat(folder.c_str(), &st) != 0) {
    if (::mkdir(folder.c_str(), 0777) != 0) throw IOError("cannot create the folder '" + folder + "'");
  } else if (!S_ISDIR(st.st_mode)) {
    throw IOError("'" + folder + "' exists and is not a folder");
  }
  const std::string base = folder.back() == '/' ? folder : folder + "/";
  ::unlink((base + "model.safetensors.index.json").c_str());  // a stale index would win over the new file
  write_safetensors(base + "model.safetensors", hf_tensors(m), {{"format", "pt"}});
  AtomicFileWriter out(base + "config.json");
  out.write(hf_config_json(m.config));
  out.commit();
}

}  // namespace celer
