#include "io/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "core/error.h"
#include "io/config_json.h"
#include "io/hf_weights.h"
#include "io/io_util.h"
#include "io/json.h"
#include "io/mapped_file.h"

namespace celer {

namespace {
constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as the reference implementation
constexpr char kConfigKey[] = "celerinfer.config";
constexpr char kInputIds[] = "celerinfer.input_ids";
constexpr char kAttentionMask[] = "celerinfer.attention_mask";
constexpr char kRopeCos[] = "celerinfer.rope_cos";
constexpr char kRopeSin[] = "celerinfer.rope_sin";

const struct {
  DType dtype;
  const char* name;
} kDTypes[] = {
    {DType::F32, "F32"}, {DType::F16, "F16"}, {DType::BF16, "BF16"}, {DType::F64, "F64"},  {DType::I8, "I8"},
    {DType::U8, "U8"},   {DType::I32, "I32"}, {DType::I64, "I64"},   {DType::BOOL, "BOOL"},
};

const char* st_dtype_name(DType dtype) {
  for (auto& e : kDTypes)
    if (e.dtype == dtype) return e.name;
  throw ValueError("safetensors: unsupported dtype " + dtype_name(dtype));
}

DType st_dtype(const std::string& name, const std::string& context) {
  for (auto& e : kDTypes)
    if (name == e.name) return e.dtype;
  throw FormatError(context + ": unsupported dtype '" + name + "'");
}

// One header entry, validated against the size of the data section.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry read_entry(const std::string& name, const json::Value& v, uint64_t data_size) {
  const std::string ctx = "tensor '" + name + "'";
  if (!v.is_object()) throw FormatError(ctx + ": expected an object");
  Entry e{name, st_dtype(v.at("dtype", name).str(name + ".dtype"), ctx),
          io::read_shape(v.at("shape", name), name + ".shape"), 0, 0};
  const json::Value& offsets = v.at("data_offsets", name);
  if (offsets.kind != json::Value::Kind::Array || offsets.array.size() != 2)
    throw FormatError(ctx + ": data_offsets must be a list [begin, end]");
  e.begin = uint64_t(offsets.array[0].integer(name + ".data_offsets", 0, INT64_MAX));
  e.end = uint64_t(offsets.array[1].integer(name + ".data_offsets", 0, INT64_MAX));
  const std::string range = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.begin > e.end || e.end > data_size)
    throw FormatError(ctx + ": data_offsets " + range + " lie outside the data section (" +
                      std::to_string(data_size) + " bytes)");
  // checked_numel keeps numel * 8 within int64, so the product below cannot overflow.
  const uint64_t nbytes = uint64_t(io::with_context(ctx, [&] { return checked_numel(e.shape); })) * dtype_size(e.dtype);
  if (e.end - e.begin != nbytes)
    throw FormatError(ctx + ": shape " + shape_str(e.shape) + " of " + st_dtype_name(e.dtype) + " needs " +
                      std::to_string(nbytes) + " bytes but data_offsets " + range + " hold " +
                      std::to_string(e.end - e.begin));
  return e;
}

std::map<std::string, std::string> read_metadata(const json::Value& v) {
  if (!v.is_object()) throw FormatError("__metadata__ must be an object of strings");
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : v.object) {
    if (value.kind != json::Value::Kind::String)
      throw FormatError("__metadata__ '" + key + "' must be a string");
    out[key] = value.str("__metadata__." + key);
  }
  return out;
}

// Sorted by position, each entry must end before the next begins.
void check_no_overlap(std::vector<Entry>& entries) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i].begin < entries[i - 1].end)
      throw FormatError("tensors '" + entries[i - 1].name + "' and '" + entries[i].name + "' overlap");
}

SafetensorsFile read_mapped(const std::shared_ptr<MappedFile>& file) {
  const uint8_t* p = file->data();
  const uint64_t size = file->size();
  if (size < 8) throw FormatError("file too small for a safetensors header (" + std::to_string(size) + " bytes)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, p, 8);  // little endian (io_util.h checks the host)
  if (header_len > kMaxHeaderBytes)
    throw FormatError("header length " + std::to_string(header_len) + " exceeds the limit of " +
                      std::to_string(kMaxHeaderBytes) + " bytes");
  if (header_len > size - 8)
    throw FormatError("header length " + std::to_string(header_len) + " runs past the end of the file (" +
                      std::to_string(size) + " bytes)");
  const json::Value header = io::with_context("header", [&] {
    return json::parse(std::string_view(reinterpret_cast<const char*>(p + 8), header_len));
  });
  if (!header.is_object()) throw FormatError("header is not a JSON object");

  const uint64_t data_size = size - 8 - header_len;
  SafetensorsFile out;
  std::vector<Entry> entries;
  std::set<std::string> names;
  for (const auto& [name, value] : header.object) {
    if (!names.insert(name).second) throw FormatError("tensor '" + name + "' appears twice in the header");
    if (name == "__metadata__") {
      if (value.kind != json::Value::Kind::Null) out.metadata = read_metadata(value);
    } else {
      entries.push_back(read_entry(name, value, data_size));
    }
  }
  check_no_overlap(entries);
  uint8_t* data = const_cast<uint8_t*>(p) + 8 + header_len;  // tensors are mutable views by type only
  for (const Entry& e : entries)
    out.tensors[e.name] = Tensor::view(e.dtype, e.shape, data + e.begin, std::shared_ptr<void>(file));
  return out;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}
std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}
std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The tensors of a checkpoint: one file, or the shards an HF index names.
struct Checkpoint {
  SafetensorsFile contents;
  std::string folder;  // where config.json is looked for
};

Checkpoint read_sharded(const std::string& index_path) {
  Checkpoint ck;
  ck.folder = dir_of(index_path);
  auto file = MappedFile::open(index_path);
  json::Value index = io::with_context(index_path, [&] {
    return json::parse(io::file_text(*file));
  });
  const json::Value& weight_map = io::with_context(index_path, [&]() -> const json::Value& {
    const json::Value& m = index.at("weight_map", "");
    if (!m.is_object()) throw FormatError("weight_map must be an object");
    return m;
  });
  std::map<std::string, SafetensorsFile> shards;
  for (const auto& [name, shard_value] : weight_map.object) {
    const std::string shard = shard_value.str(index_path + ": weight_map." + name);
    if (shard.empty() || shard.find('/') != std::string::npos)
      throw FormatError(index_path + ": weight_map." + name + ": '" + shard + "' is not a file name in this folder");
    auto it = shards.find(shard);
    if (it == shards.end()) {
      it = shards.emplace(shard, read_safetensors(join(ck.folder, shard))).first;
      for (auto& [key, value] : it->second.metadata) ck.contents.metadata.emplace(key, value);
      for (auto& [tname, tensor] : it->second.tensors)
        if (!ck.contents.tensors.emplace(tname, tensor).second)
          throw FormatError(index_path + ": tensor '" + tname + "' is in more than one shard");
    }
    if (!it->second.tensors.count(name))
      throw FormatError(index_path + ": the index puts tensor '" + name + "' in '" + shard + "', which lacks it");
  }
  return ck;
}

// `path`: a .safetensors file, an HF index (*.index.json), or a folder holding either.
Checkpoint read_checkpoint(const std::string& path) {
  if (is_directory(path)) {
    const std::string index = join(path, "model.safetensors.index.json"), single = join(path, "model.safetensors");
    if (exists(index)) return read_sharded(index);
    if (exists(single)) return read_checkpoint(single);
    throw IOError("'" + path + "' is a folder without model.safetensors or model.safetensors.index.json");
  }
  if (ends_with(path, ".index.json")) return read_sharded(path);
  return {read_safetensors(path), dir_of(path)};
}

ModelConfig checkpoint_config(const Checkpoint& ck, const std::string& path) {
  auto it = ck.contents.metadata.find(kConfigKey);
  if (it != ck.contents.metadata.end()) {
    const std::string context = path + ": metadata '" + kConfigKey + "'";
    json::Value v = io::with_context(context, [&] { return json::parse(it->second); });
    return config_from_json(v, context);
  }
  const std::string config_path = join(ck.folder, "config.json");
  if (!exists(config_path))
    throw FormatError(path + ": no model config: the file's metadata has no '" + kConfigKey +
                      "' and there is no config.json beside it");
  auto file = MappedFile::open(config_path);
  json::Value v = io::with_context(config_path, [&] {
    return json::parse(io::file_text(*file));
  });
  return config_from_json(v, config_path, intermediate_size_of(ck.contents.tensors));
}
}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  auto file = MappedFile::open(path);
  return io::with_context(path, [&] { return read_mapped(file); });
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it)
      header += (it == metadata.begin() ? "" : ",") + json::quote(it->first) + ":" + json::quote(it->second);
    header += "}";
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    require(!name.empty() && name != "__metadata__" && names.insert(name).second,
            "write_safetensors: invalid or repeated tensor name '" + name + "'");
    const uint64_t nbytes = t.nbytes();
    require(nbytes == 0 || !t.empty(), "write_safetensors: tensor '" + name + "' has no data");
    std::string shape;
    for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(t.shape[i]);
    header += (header.size() > 1 ? "," : "") + json::quote(name) + ":{\"dtype\":\"" + st_dtype_name(t.dtype) +
              "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + nbytes) + "]}";
    offset += nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data starts 8-byte aligned

  AtomicFileWriter out(path);
  const uint64_t header_len = header.size();
  out.write(&header_len, 8);  // little endian (io_util.h checks the host)
  out.write(header);
  for (const auto& [name, t] : tensors)
    if (t.nbytes()) out.write(t.data, t.nbytes());
  out.commit();
}

Model load_safetensors_model(const std::string& path) {
  Checkpoint ck = read_checkpoint(path);
  TensorMap& tensors = ck.contents.tensors;
  const ModelConfig config = checkpoint_config(ck, path);
  // Our extras (example inputs, RoPE tables) first; every other tensor must be a weight.
  auto extra = [&](const char* name) -> Tensor {
    auto it = tensors.find(name);
    if (it == tensors.end()) return Tensor();
    Tensor t = it->second;
    tensors.erase(it);
    return t;
  };
  const Tensor ids = extra(kInputIds), mask = extra(kAttentionMask), cos = extra(kRopeCos), sin = extra(kRopeSin);
  Model model = model_from_hf_tensors(config, tensors, path);
  if (!ids.empty()) model.input_ids = io::input_ids_tensor(ids, path + ": " + kInputIds);
  if (!mask.empty()) model.attention_mask = io::attention_mask_tensor(mask, path + ": " + kAttentionMask);
  if (!cos.empty()) model.rope_cos = io::weight_to_f32(cos, path + ": " + kRopeCos);
  if (!sin.empty()) model.rope_sin = io::weight_to_f32(sin, path + ": " + kRopeSin);
  io::with_context(path, [&] { validate_model(model); });
  return model;
}

void save_safetensors_model(const Model& model, const std::string& path) {
  Model m = model;  // shares the tensors
  validate_model(m);
  std::vector<std::pair<std::string, Tensor>> tensors = hf_tensors(m);
  const std::pair<const char*, const Tensor*> optional[] = {
      {kInputIds, &m.input_ids}, {kAttentionMask, &m.attention_mask}, {kRopeCos, &m.rope_cos}, {kRopeSin, &m.rope_sin}};
  for (auto [name, t] : optional)
    if (!t->empty()) tensors.emplace_back(name, *t);
  write_safetensors(path, tensors, {{kConfigKey, config_to_json(m.config)}, {"format", "pt"}});
}

}  // namespace celer
