// Regressions from fuzzing the parsers (cpp/fuzz, docs/guide/troubleshooting.md). The bugs were
// undefined behaviour that a plain build does not show (misaligned typed loads): these tests
// check the values, and the sanitizer build (scripts/sanitize.sh) checks the loads.
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "harness.h"
#include "io/gguf.h"
#include "io/io_util.h"
#include "io/safetensors.h"

using namespace celer;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/celer_fuzz_regression_XXXXXX";
    path = ::mkdtemp(name);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

template <class T>
void append(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

const float kValues[3] = {1.5f, -2.25f, 0.125f};  // exact in F16, BF16 and F64

// A safetensors file with a 1-byte U8 tensor first: every float tensor after it starts at an odd
// offset (the format does not require alignment, so a valid file may look like this).
std::string misaligned_safetensors() {
  std::string data;
  data += char(7);  // "u8" at [0, 1)
  const size_t f16_at = data.size();
  for (float v : kValues) append(data, f32_to_f16(v));
  const size_t bf16_at = data.size();
  for (float v : kValues) append(data, f32_to_bf16(v));
  const size_t f64_at = data.size();
  for (float v : kValues) append(data, double(v));
  auto entry = [](const char* name, const char* dtype, size_t begin, size_t end) {
    return std::string("\"") + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[" +
           (std::string(dtype) == "U8" ? "1" : "3") + "],\"data_offsets\":[" + std::to_string(begin) + "," +
           std::to_string(end) + "]}";
  };
  std::string header = "{" + entry("u8", "U8", 0, 1) + "," + entry("f16", "F16", f16_at, bf16_at) + "," +
                       entry("bf16", "BF16", bf16_at, f64_at) + "," + entry("f64", "F64", f64_at, data.size()) + "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data section 8-byte aligned, as writers do
  std::string file;
  append(file, uint64_t(header.size()));
  return file + header + data;
}

}  // namespace

// weight_to_f32 used to convert F16 / BF16 / F64 views through misaligned uint16_t / double
// pointers (UBSan: "load of misaligned address"); it now converts from an aligned copy.
TEST(fuzz_regression_misaligned_half_and_double_views_convert_exactly) {
  TempDir dir;
  write_file(dir / "odd.safetensors", misaligned_safetensors());
  SafetensorsFile st = read_safetensors(dir / "odd.safetensors");
  for (const char* name : {"f16", "bf16", "f64"}) {
    const Tensor& view = st.tensors.at(name);
    CHECK(reinterpret_cast<uintptr_t>(view.data) % dtype_size(view.dtype) != 0);  // the case under test
    Tensor f = io::weight_to_f32(view, name);
    CHECK(f.dtype == DType::F32 && f.shape == Shape{3});
    CHECK(reinterpret_cast<uintptr_t>(f.data) % alignof(float) == 0);
    for (int i = 0; i < 3; ++i) CHECK(f.f32()[i] == kValues[i]);
  }
  // An aligned view still converts in place of a copy, with the same values.
  std::vector<uint16_t> halves;
  for (float v : kValues) halves.push_back(f32_to_f16(v));
  Tensor aligned = Tensor::view(DType::F16, {3}, halves.data(), nullptr);
  Tensor f = io::weight_to_f32(aligned, "aligned");
  for (int i = 0; i < 3; ++i) CHECK(f.f32()[i] == kValues[i]);
}

// general.alignment of 1, 2 or 4 put GGUF tensor views at odd addresses (F16 values and block
// scales read through typed pointers); the GGUF specification's floor of 8 is now enforced.
TEST(fuzz_regression_gguf_alignment_below_8_is_refused) {
  auto gguf_with_alignment = [](uint32_t alignment) {
    std::string f = "GGUF";
    append(f, uint32_t(3));  // version
    append(f, uint64_t(0));  // tensors
    append(f, uint64_t(1));  // metadata entries
    const std::string key = "general.alignment";
    append(f, uint64_t(key.size()));
    f += key;
    append(f, uint32_t(4));  // uint32
    append(f, alignment);
    return f;
  };
  TempDir dir;
  for (uint32_t bad : {0u, 1u, 2u, 3u, 4u, 12u}) {
    const std::string path = dir / ("a" + std::to_string(bad) + ".gguf");
    write_file(path, gguf_with_alignment(bad));
    std::string message = "<no exception>";
    try {
      read_gguf(path);
    } catch (const FormatError& e) {
      message = e.what();
    }
    if (message.find("general.alignment must be a power of two from 8") == std::string::npos)
      celer_test::fail(__FILE__, __LINE__, "alignment " + std::to_string(bad) + ": " + message);
  }
  for (uint32_t good : {8u, 32u, 4096u}) {
    const std::string path = dir / ("a" + std::to_string(good) + ".gguf");
    write_file(path, gguf_with_alignment(good));
    CHECK(read_gguf(path).alignment == good);
  }
}
