#include "io/npy.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "config.h"
#include "error.h"
#include "io/io_util.h"
#include "io/mapped_file.h"

namespace celer {

namespace {
constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes
constexpr size_t kMagicSize = 6;

const struct {
  DType dtype;
  const char* descr;
} kDescrs[] = {
    {DType::F32, "<f4"}, {DType::F64, "<f8"}, {DType::F16, "<f2"}, {DType::I32, "<i4"},
    {DType::I64, "<i8"}, {DType::I8, "|i1"},  {DType::U8, "|u1"},  {DType::BOOL, "|b1"},
};

std::string descr_of(DType dtype) {
  for (auto& e : kDescrs)
    if (e.dtype == dtype) return e.descr;
  throw ValueError("npy: " + dtype_name(dtype) + " has no NumPy dtype; convert the tensor to float32 first");
}

// "(2, 5, 128)", "(5,)", "()": Python's tuple syntax, as NumPy writes it.
std::string shape_tuple(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The header dict of a .npy file: a Python literal with exactly the keys descr,
// fortran_order and shape. Parsed as data (never evaluated).
class HeaderParser {
 public:
  explicit HeaderParser(std::string_view text) : s_(text) {}

  void parse(std::string& descr, bool& fortran_order, Shape& shape) {
    bool seen_descr = false, seen_order = false, seen_shape = false;
    expect('{');
    while (!peek('}')) {
      std::string key = string_literal();
      expect(':');
      if (key == "descr" && !seen_descr) {
        descr = string_literal();
        seen_descr = true;
      } else if (key == "fortran_order" && !seen_order) {
        fortran_order = boolean();
        seen_order = true;
      } else if (key == "shape" && !seen_shape) {
        shape = tuple();
        seen_shape = true;
      } else {
        fail("unexpected or repeated key '" + key + "'");
      }
      if (!peek(',')) break;
      expect(',');
    }
    expect('}');
    skip_ws();
    if (i_ != s_.size()) fail("text after the dict");
    if (!seen_descr || !seen_order || !seen_shape) fail("the dict needs 'descr', 'fortran_order' and 'shape'");
  }

 private:
  std::string_view s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError("npy header: " + what + " at character " + std::to_string(i_));
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool peek(char c) {
    skip_ws();
    return i_ < s_.size() && s_[i_] == c;
  }
  void expect(char c) {
    if (!peek(c)) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string string_literal() {
    skip_ws();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) fail("expected a string");
    char q = s_[i_++];
    size_t end = s_.find(q, i_);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string out(s_.substr(i_, end - i_));
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_ws();
    for (auto [word, value] : {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}})
      if (s_.substr(i_, word.size()) == word) {
        i_ += word.size();
        return value;
      }
    fail("expected True or False");
  }
  int64_t dimension() {
    skip_ws();
    size_t start = i_;
    int64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > (INT64_MAX - 9) / 10) fail("dimension too large");
      v = v * 10 + (s_[i_++] - '0');
    }
    if (i_ == start) fail("expected a dimension");
    if (i_ < s_.size() && s_[i_] == 'L') ++i_;  // Python 2 longs: (3L, 4L)
    return v;
  }
  // "()", "(5,)", "(2, 3)", "(2, 3,)".
  Shape tuple() {
    Shape shape;
    expect('(');
    while (!peek(')')) {
      shape.push_back(dimension());
      if (!peek(',')) break;
      expect(',');
    }
    expect(')');
    return shape;
  }
};

uint32_t read_le(const uint8_t* p, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint32_t(p[i]) << (8 * i);
  return v;
}
}  // namespace

void save_npy(const std::string& path, const Tensor& tensor) {
  const size_t nbytes = tensor.nbytes();
  require(nbytes == 0 || !tensor.empty(), "save_npy: the tensor has no data");
  std::string dict = "{'descr': '" + descr_of(tensor.dtype) + "', 'fortran_order': False, 'shape': " +
                     shape_tuple(tensor.shape) + ", }";
  // Version 1.0 has a 2-byte header length; 2.0 (4 bytes) only when the dict is that long.
  const bool v1 = dict.size() + 64 < 65536;
  const size_t prefix = v1 ? 10 : 12;
  size_t total = prefix + dict.size() + 1;  // + '\n'
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::string head(kMagic, kMagicSize);
  head += char(v1 ? 1 : 2);
  head += char(0);
  const uint32_t len = uint32_t(dict.size());
  for (size_t i = 0; i < (v1 ? 2u : 4u); ++i) head += char((len >> (8 * i)) & 0xff);
  AtomicFileWriter out(path);
  out.write(head + dict);
  if (nbytes) out.write(tensor.data, nbytes);
  out.commit();
}

Tensor load_npy(const std::string& path) {
  auto file = MappedFile::open(path);
  return io::with_context(path, [&] {
    const uint8_t* p = file->data();
    const size_t size = file->size();
    if (size < 10 || std::memcmp(p, kMagic, kMagicSize) != 0) throw FormatError("not a .npy file (bad magic)");
    const int major = p[6], minor = p[7];
    if (major < 1 || major > 3 || minor != 0)
      throw FormatError("unsupported .npy version " + std::to_string(major) + "." + std::to_string(minor));
    const size_t prefix = major == 1 ? 10 : 12;
    if (size < prefix) throw FormatError("truncated header");
    const size_t header_len = read_le(p + 8, prefix - 8);
    if (header_len > size - prefix)
      throw FormatError("header length " + std::to_string(header_len) + " runs past the end of the file");

    std::string descr;
    bool fortran_order = false;
    Shape shape;
    HeaderParser(std::string_view(reinterpret_cast<const char*>(p + prefix), header_len))
        .parse(descr, fortran_order, shape);
    if (fortran_order) throw FormatError("fortran_order=True arrays are not supported (save a C-order array)");
    const auto* entry = std::find_if(std::begin(kDescrs), std::end(kDescrs), [&](auto& e) { return descr == e.descr; });
    if (entry == std::end(kDescrs)) throw FormatError("unsupported dtype descr '" + descr + "'");

    const uint64_t nbytes = uint64_t(checked_numel(shape)) * dtype_size(entry->dtype);
    const size_t data_size = size - prefix - header_len;
    if (nbytes != data_size)
      throw FormatError("shape " + shape_str(shape) + " of " + dtype_name(entry->dtype) + " needs " +
                        std::to_string(nbytes) + " bytes of data but the file holds " + std::to_string(data_size));
    check_allocation(nbytes, "reading " + path);
    Tensor t = Tensor::zeros(entry->dtype, shape);
    if (nbytes) std::memcpy(t.data, p + prefix + header_len, nbytes);
    return t;
  });
}

}  // namespace celer
