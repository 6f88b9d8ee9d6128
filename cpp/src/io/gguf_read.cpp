// Reading GGUF: the byte-level parser (read_gguf) and the mapping onto a Model (load_gguf).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "core/block_quant.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_types.h"
#include "io/io_util.h"

namespace celer {

std::string gguf_type_name(GgufType type) {
  static const char* names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                "bool", "string", "array", "uint64", "int64", "float64"};
  const auto i = uint32_t(type);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "type " + std::to_string(i);
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: case GgufType::Bool: return true;
    default: return false;
  }
}

size_t GgufValue::array_size() const { return integers.size() + numbers.size() + texts.size(); }

const GgufValue* find_key(const GgufMetadata& metadata, const std::string& key) {
  for (const auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

namespace {

// Limits that no real file comes near; a header past them is refused before anything is sized
// from it. The counts are also bounded by the bytes left in the file (each item takes some).
constexpr uint64_t kMaxStringBytes = uint64_t(1) << 30;
constexpr uint64_t kMaxAlignment = uint64_t(1) << 20;
// The GGUF specification's floor ("must be a multiple of 8"): with it every tensor view is
// aligned for its type (F16 values, block scales); an alignment of 1, 2 or 4 would put views at
// odd addresses, which the conversions and kernels read through typed pointers.
constexpr uint64_t kMinAlignment = 8;
constexpr uint32_t kMaxDims = 4;

// A bounds-checked reader over the mapped header.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      throw FormatError(what + " at offset " + std::to_string(pos_) + " runs past the end of the file (" +
                        std::to_string(n) + " bytes needed, " + std::to_string(left()) + " left)");
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));  // little endian (io_util.h checks the host)
    pos_ += sizeof(T);
    return v;
  }
  std::string string(const std::string& what) {
    const uint64_t n = read<uint64_t>(what + " (length)");
    if (n > kMaxStringBytes)
      throw FormatError(what + ": string length " + std::to_string(n) + " exceeds the limit of " +
                        std::to_string(kMaxStringBytes) + " bytes");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_t(n));
    pos_ += n;
    return s;
  }
  // A count of items taking at least `min_bytes` each: refused when the file cannot hold them.
  uint64_t count(const std::string& what, uint64_t min_bytes) {
    const uint64_t n = read<uint64_t>(what);
    if (n > left() / min_bytes)
      throw FormatError(what + " is " + std::to_string(n) + ", more than the " + std::to_string(left()) +
                        " bytes left in the file can hold");
    return n;
  }

 private:
  const uint8_t* data_;
  uint64_t size_, pos_ = 0;
};

uint64_t scalar_bytes(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::String: return 8;  // at least its length
    case GgufType::Array: return 12;  // at least its element type and count
  }
  return 0;
}

GgufType read_type(Cursor& c, const std::string& what) {
  const uint32_t t = c.read<uint32_t>(what + " (type)");
  if (t > uint32_t(GgufType::F64)) throw FormatError(what + ": unknown value type " + std::to_string(t));
  return GgufType(t);
}

// One scalar of type t into v's scalar fields.
void read_scalar(Cursor& c, GgufType t, const std::string& what, GgufValue& v) {
  switch (t) {
    case GgufType::U8: v.integer = c.read<uint8_t>(what); break;
    case GgufType::I8: v.integer = c.read<int8_t>(what); break;
    case GgufType::U16: v.integer = c.read<uint16_t>(what); break;
    case GgufType::I16: v.integer = c.read<int16_t>(what); break;
    case GgufType::U32: v.integer = c.read<uint32_t>(what); break;
    case GgufType::I32: v.integer = c.read<int32_t>(what); break;
    case GgufType::I64: v.integer = c.read<int64_t>(what); break;
    case GgufType::U64: {
      const uint64_t u = c.read<uint64_t>(what);
      if (u > uint64_t(std::numeric_limits<int64_t>::max()))
        throw FormatError(what + ": value " + std::to_string(u) + " is too large");
      v.integer = int64_t(u);
      break;
    }
    case GgufType::Bool: {
      const uint8_t b = c.read<uint8_t>(what);
      if (b > 1) throw FormatError(what + ": a bool must be 0 or 1, got " + std::to_string(b));
      v.integer = b;
      break;
    }
    case GgufType::F32: v.number = c.read<float>(what); break;
    case GgufType::F64: v.number = c.read<double>(what); break;
    case GgufType::String: v.text = c.string(what); break;
    case GgufType::Array: throw FormatError(what + ": arrays of arrays are not supported");
  }
}

GgufValue read_value(Cursor& c, const std::string& key) {
  GgufValue v;
  v.type = read_type(c, "metadata '" + key + "'");
  if (v.type != GgufType::Array) {
    read_scalar(c, v.type, "metadata '" + key + "'", v);
    return v;
  }
  v.element_type = read_type(c, "metadata '" + key + "' (array element)");
  if (v.element_type == GgufType::Array) throw FormatError("metadata '" + key + "': arrays of arrays are not supported");
  const uint64_t n = c.count("metadata '" + key + "' array length", scalar_bytes(v.element_type));
  GgufValue item;
  for (uint64_t i = 0; i < n; ++i) {
    read_scalar(c, v.element_type, "metadata '" + key + "'[" + std::to_string(i) + "]", item);
    if (v.element_type == GgufType::String) v.texts.push_back(std::move(item.text));
    else if (v.element_type == GgufType::F32 || v.element_type == GgufType::F64) v.numbers.push_back(item.number);
    else v.integers.push_back(item.integer);
  }
  return v;
}

GgufTensor read_tensor_info(Cursor& c, uint64_t index) {
  GgufTensor t;
  t.name = c.string("tensor " + std::to_string(index) + " name");
  const std::string what = "tensor '" + t.name + "'";
  const uint32_t n_dims = c.read<uint32_t>(what + " (dimension count)");
  if (n_dims < 1 || n_dims > kMaxDims)
    throw FormatError(what + ": " + std::to_string(n_dims) + " dimensions (expected 1 to " + std::to_string(kMaxDims) + ")");
  std::vector<uint64_t> dims(n_dims);
  for (uint32_t i = 0; i < n_dims; ++i) {
    dims[i] = c.read<uint64_t>(what + " (dimension " + std::to_string(i) + ")");
    if (dims[i] < 1 || dims[i] > uint64_t(std::numeric_limits<int32_t>::max()))
      throw FormatError(what + ": dimension " + std::to_string(i) + " is " + std::to_string(dims[i]) +
                        " (expected 1 to 2^31 - 1)");
  }
  const uint32_t type = c.read<uint32_t>(what + " (type)");
  t.dtype = io::gguf_tensor_dtype(type, what);
  t.offset = c.read<uint64_t>(what + " (offset)");
  for (uint32_t i = n_dims; i-- > 0;) t.shape.push_back(int64_t(dims[i]));  // outermost first
  io::with_context(what, [&] { checked_numel(t.shape); });
  if (t.shape.back() % dtype_block_values(t.dtype) != 0)
    throw FormatError(what + ": a " + dtype_name(t.dtype) + " tensor's rows must be a multiple of " +
                      std::to_string(dtype_block_values(t.dtype)) + " values, got " + std::to_string(t.shape.back()));
  return t;
}

}  // namespace

GgufFile read_gguf(const std::string& path) {
  GgufFile g;
  g.file = MappedFile::open(path);
  Cursor c(g.file->data(), g.file->size());
  return io::with_context(path, [&]() -> GgufFile {
    const uint32_t magic = c.read<uint32_t>("magic");
    if (std::memcmp(&magic, "GGUF", 4) != 0) throw FormatError("not a GGUF file (bad magic)");
    g.version = c.read<uint32_t>("version");
    if (g.version != 2 && g.version != 3)
      throw FormatError("GGUF version " + std::to_string(g.version) + " is not supported (2 and 3 are)");
    // The smallest tensor entry: an empty name, one dimension, type and offset.
    const uint64_t tensor_count = c.count("tensor count", 8 + 4 + 8 + 4 + 8);
    const uint64_t kv_count = c.count("metadata count", 8 + 4 + 1);
    std::set<std::string> keys;
    for (uint64_t i = 0; i < kv_count; ++i) {
      std::string key = c.string("metadata key " + std::to_string(i));
      if (!keys.insert(key).second) throw FormatError("metadata key '" + key + "' appears twice");
      GgufValue v = read_value(c, key);
      g.metadata.emplace_back(std::move(key), std::move(v));
    }
    if (const GgufValue* a = find_key(g.metadata, "general.alignment")) {
      if (!a->is_integer() || a->integer < int64_t(kMinAlignment) || uint64_t(a->integer) > kMaxAlignment ||
          (a->integer & (a->integer - 1)) != 0)
        throw FormatError("general.alignment must be a power of two from " + std::to_string(kMinAlignment) + " to " +
                          std::to_string(kMaxAlignment) + ", got " +
                          (a->is_integer() ? std::to_string(a->integer) : gguf_type_name(a->type)));
      g.alignment = uint64_t(a->integer);
    }
    std::set<std::string> names;
    for (uint64_t i = 0; i < tensor_count; ++i) {
      GgufTensor t = read_tensor_info(c, i);
      if (!names.insert(t.name).second) throw FormatError("tensor '" + t.name + "' appears twice");
      g.tensors.push_back(std::move(t));
    }
    g.data_offset = (c.pos() + g.alignment - 1) / g.alignment * g.alignment;
    if (g.data_offset > g.file->size() && !g.tensors.empty())
      throw FormatError("the data section starts past the end of the file");
    const uint64_t data_size = g.file->size() - std::min<uint64_t>(g.data_offset, g.file->size());
    // Each tensor inside the data section, aligned, and no two overlapping.
    std::vector<std::pair<uint64_t, const GgufTensor*>> spans;
    for (const GgufTensor& t : g.tensors) {
      const std::string what = "tensor '" + t.name + "'";
      if (t.offset % g.alignment != 0)
        throw FormatError(what + ": offset " + std::to_string(t.offset) + " is not a multiple of the alignment (" +
                          std::to_string(g.alignment) + ")");
      const uint64_t bytes = tensor_bytes(t.dtype, t.shape);
      if (t.offset > data_size || bytes > data_size - t.offset)
        throw FormatError(what + ": its " + std::to_string(bytes) + " bytes at offset " + std::to_string(t.offset) +
                          " run past the end of the data section (" + std::to_string(data_size) + " bytes)");
      spans.emplace_back(t.offset, &t);
    }
    std::sort(spans.begin(), spans.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 1; i < spans.size(); ++i) {
      const GgufTensor& prev = *spans[i - 1].second;
      if (spans[i].first < prev.offset + tensor_bytes(prev.dtype, prev.shape))
        throw FormatError("tensors '" + prev.name + "' and '" + spans[i].second->name + "' overlap");
    }
    return std::move(g);
  });
}

}  // namespace celer
