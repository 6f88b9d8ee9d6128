// File IO: base64, JSON, safetensors, the seed JSON format and the atomic writer. Each
// malformed input must give a FormatError / IOError naming what is wrong, never a crash.
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "harness.h"
#include "io/base64.h"
#include "io/config_json.h"
#include "io/hf_config.h"
#include "io/json.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "io/seed_json.h"
#include "core/model.h"
#include "core/rng.h"

using namespace celer;

namespace {

// The message of the E thrown by f(), or a note saying what happened instead.
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<other exception> ") + e.what();
  }
  return "<no exception>";
}

// expr must throw E whose message contains `part`.
#define CHECK_ERROR(E, expr, part)                                                                     \
  do {                                                                                                 \
    std::string _msg = error_of<E>([&] { (void)(expr); });                                              \
    if (_msg.find(part) == std::string::npos)                                                          \
      celer_test::fail(__FILE__, __LINE__, std::string(#expr " threw '") + _msg + "', expected '" + (part) + "'"); \
  } while (0)

struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/celer_io_test_XXXXXX";
    path = ::mkdtemp(name);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
  size_t count() const {
    return size_t(std::distance(std::filesystem::directory_iterator(path), std::filesystem::directory_iterator()));
  }
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

Tensor iota_tensor(DType dtype, Shape shape) {
  Tensor t = Tensor::zeros(dtype, shape);
  auto* p = static_cast<uint8_t*>(t.data);
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = uint8_t(i * 7 + 3);
  return t;
}

ModelConfig small_config(bool tied = false) {
  ModelConfig c;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.vocab_size = 32;
  c.max_position_embeddings = 12;
  c.tie_word_embeddings = tied;
  c.resolve();
  return c;
}

void check_same_weights(Model& a, Model& b) {
  auto sa = weight_slots(a), sb = weight_slots(b);
  CHECK(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size() && i < sb.size(); ++i) {
    CHECK(sa[i].name == sb[i].name);
    if (!same_bytes(*sa[i].tensor, *sb[i].tensor)) celer_test::fail(__FILE__, __LINE__, "differs: " + sa[i].name);
  }
}

}  // namespace

// ---------------------------------------------------------------- base64

TEST(io_base64_known_vectors) {  // RFC 4648 section 10
  const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; ++i) {
    CHECK(base64_encode(plain[i], std::strlen(plain[i])) == coded[i]);
    std::string out(base64_decoded_size(coded[i]), '\0');
    base64_decode(coded[i], out.data());
    CHECK(out == plain[i]);
  }
}

TEST(io_base64_round_trip_lengths_0_to_10) {
  SplitMix64 rng(7);
  for (size_t n = 0; n <= 10; ++n) {
    std::string bytes(n, '\0');
    for (auto& c : bytes) c = char(rng.next());
    std::string text = base64_encode(bytes.data(), n);
    CHECK(text.size() == 4 * ((n + 2) / 3));
    CHECK(base64_decoded_size(text) == n);
    std::string back(n, '\0');
    base64_decode(text, back.data());
    CHECK(back == bytes);
  }
  std::string all(256, '\0');  // every byte value, every alphabet character
  for (int i = 0; i < 256; ++i) all[size_t(i)] = char(i);
  std::string back(256, '\0');
  base64_decode(base64_encode(all.data(), all.size()), back.data());
  CHECK(back == all);
}

TEST(io_base64_rejects_invalid_input) {
  char out[16];
  CHECK_ERROR(FormatError, base64_decoded_size("abc"), "not a multiple of 4");
  CHECK_ERROR(FormatError, base64_decode("ab!d", out), "invalid character '!' at position 2");
  CHECK_ERROR(FormatError, base64_decode("ab=d", out), "'=' at position 2");
  CHECK_ERROR(FormatError, base64_decode("a===", out), "'=' at position 1");
  CHECK_ERROR(FormatError, base64_decode("====", out), "position 0");
  CHECK_ERROR(FormatError, base64_decode("Zg==Zg==", out), "'=' at position 2");
  CHECK_ERROR(FormatError, base64_decode("Zm9v Zm8", out), "at position 4");
  CHECK_ERROR(FormatError, base64_decode("Zm9\nv", out), "multiple of 4");
  CHECK_ERROR(FormatError, base64_decode("Zm\x01=", out), "0x01 at position 2");
}

// ---------------------------------------------------------------- JSON

TEST(io_json_parses_nested_values) {
  json::Value v = json::parse(R"( {"a": [1, 2.5, -3e2, true, false, null, {"b": "x"}], "c": {}, "d": []} )");
  CHECK(v.is_object());
  const json::Value& a = v.at("a", "");
  CHECK(a.kind == json::Value::Kind::Array && a.array.size() == 7);
  CHECK(a.array[0].integer("a[0]") == 1);
  CHECK(a.array[1].num("a[1]") == 2.5);
  CHECK(a.array[2].num("a[2]") == -300);
  CHECK(a.array[3].kind == json::Value::Kind::Bool && a.array[3].boolean);
  CHECK(a.array[4].kind == json::Value::Kind::Bool && !a.array[4].boolean);
  CHECK(a.array[5].kind == json::Value::Kind::Null);
  CHECK(a.array[6].at("b", "a[6]").str("b") == "x");
  CHECK(v.at("c", "").is_object() && v.at("c", "").object.empty());
  CHECK(v.at("d", "").array.empty());
  CHECK(v.find("zz") == nullptr);
  CHECK(json::parse("[]").find("a") == nullptr);
  CHECK(json::parse("{\"k\": 1, \"k\": 2}").at("k", "").integer("k") == 2);  // last wins, as in Python
  CHECK(json::parse("\"top\"").str("") == "top");
}

TEST(io_json_decodes_escapes_and_unicode) {
  json::Value v = json::parse(R"(["\"\\\/\b\f\n\r\t", "caf\u00e9", "\ud83d\ude00", "\ud800x", "é"])");
  CHECK(v.array[0].raw_string == R"(\"\\\/\b\f\n\r\t)");  // raw: escapes kept
  CHECK(v.array[0].str("") == "\"\\/\b\f\n\r\t");
  CHECK(v.array[1].str("") == "caf\xc3\xa9");
  CHECK(v.array[2].str("") == "\xf0\x9f\x98\x80");  // U+1F600 from a surrogate pair
  CHECK(v.array[3].str("") == "\xef\xbf\xbdx");    // a lone surrogate becomes U+FFFD
  CHECK(v.array[4].str("") == "\xc3\xa9");          // UTF-8 passes through
  CHECK(json::parse("{\"a\\u0062\": 1}").find("ab") != nullptr);  // keys are decoded
  std::string odd = "q\"b\\s\n\x01\xc3\xa9";
  CHECK(json::parse(json::quote(odd)).str("") == odd);
}

TEST(io_json_numbers) {
  CHECK(json::parse("0").num("") == 0);
  CHECK(json::parse("-0").num("") == 0);
  CHECK(json::parse("123456789012").integer("") == 123456789012);
  CHECK(json::parse("1.5e3").num("") == 1500);
  CHECK(json::parse("1E-2").num("") == 0.01);
  CHECK(json::parse("0.1").num("") == 0.1);
  CHECK(std::isinf(json::parse("1e999").num("")));  // as Python reads it
  CHECK(std::isnan(json::parse("NaN").num("")));
  CHECK(json::parse("Infinity").num("") == INFINITY);
  CHECK(json::parse("[-Infinity]").array[0].num("") == -INFINITY);
  for (const char* bad : {"01", "1.", ".5", "+1", "-", "1e", "1e+", "0x10", "--1", "-a", "Inf", "nan", "1.e5"})
    CHECK_THROWS(FormatError, json::parse(bad));
}

TEST(io_json_integer_and_accessor_errors) {
  json::Value v = json::parse(R"({"f": 1.5, "n": -4, "big": 1e30, "s": "x", "nan": NaN})");
  CHECK(v.at("n", "").integer("n", -10, 10) == -4);
  CHECK_ERROR(FormatError, v.at("f", "").integer("cfg.f"), "cfg.f: expected an integer, got 1.5");
  CHECK_ERROR(FormatError, v.at("n", "").integer("cfg.n", 0), "cfg.n: -4 is out of range [0, ");
  CHECK_ERROR(FormatError, v.at("big", "").integer("cfg.big"), "out of range");
  CHECK_ERROR(FormatError, v.at("nan", "").integer("cfg.nan"), "expected an integer, got NaN");
  CHECK_ERROR(FormatError, v.at("s", "").integer("cfg.s"), "cfg.s: expected an integer, got a string");
  CHECK_ERROR(FormatError, v.at("n", "").str("cfg.n"), "cfg.n: expected a string, got a number");
  CHECK_ERROR(FormatError, v.at("s", "").num("cfg.s"), "expected a number");
  CHECK_ERROR(FormatError, v.at("missing", "weights.layers[0]"), "missing key 'weights.layers[0].missing'");
  CHECK_ERROR(FormatError, v.at("s", "").at("k", "cfg.s"), "cfg.s: expected an object");
}

TEST(io_json_reports_errors_with_offsets) {
  CHECK_ERROR(FormatError, json::parse(""), "JSON: unexpected end of input at byte 0");
  CHECK_ERROR(FormatError, json::parse("{\"a\": [1, 2"), "unexpected end of input at byte 11");
  CHECK_ERROR(FormatError, json::parse("{} x"), "unexpected character 'x' at byte 3");
  CHECK_ERROR(FormatError, json::parse("[1,]"), "unexpected character ']' at byte 3");
  CHECK_ERROR(FormatError, json::parse("{\"a\" 1}"), "unexpected character '1' at byte 5");
  CHECK_ERROR(FormatError, json::parse("{a: 1}"), "unexpected character 'a' at byte 1");
  CHECK_ERROR(FormatError, json::parse("[tru]"), "unexpected character ']'");
  CHECK_ERROR(FormatError, json::parse("\"abc"), "unterminated string");
  CHECK_ERROR(FormatError, json::parse("\"a\nb\""), "control character 0x0a in a string at byte 2");
  CHECK_ERROR(FormatError, json::parse("\"\\q\""), "invalid escape '\\q'");
  CHECK_ERROR(FormatError, json::parse("\"\\u12G4\""), "invalid \\u escape");
  CHECK_ERROR(FormatError, json::parse("\"\\u12"), "invalid \\u escape");
  CHECK_ERROR(FormatError, json::parse(std::string("[1]\0", 4)), "unexpected character 0x00 at byte 3");
  CHECK_ERROR(FormatError, json::parse("{\"a\": 1,}"), "unexpected character '}'");
  // Nesting: 64 levels are fine, 65 are refused (no stack overflow on hostile input).
  CHECK(json::parse(std::string(64, '[') + std::string(64, ']')).kind == json::Value::Kind::Array);
  CHECK_ERROR(FormatError, json::parse(std::string(65, '[') + std::string(65, ']')), "nesting deeper than 64");
  CHECK_ERROR(FormatError, json::parse(std::string(100000, '[')), "nesting deeper than 64");
}

TEST(io_json_scans_long_strings_quickly) {
  // 64 MB of base64 in a string: the scanner must not be byte-slow (generous bound).
  std::string doc = "{\"data\": \"" + std::string(64 << 20, 'A') + "\", \"tail\": \"\\\"q\"}";
  auto t0 = std::chrono::steady_clock::now();
  json::Value v = json::parse(doc);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(v.at("data", "").raw_string.size() == size_t(64 << 20));
  CHECK(v.at("tail", "").str("") == "\"q");
  CHECK(seconds < 1.0);
}

// ---------------------------------------------------------------- config JSON

TEST(io_config_json_round_trip_and_defaults) {
  ModelConfig c = small_config(true);
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.5;
  ModelConfig back = config_from_json(json::parse(config_to_json(c)), "config");
  CHECK(back.to_string() == c.to_string());
  CHECK(back.rms_norm_eps == c.rms_norm_eps && back.rope_theta == c.rope_theta);

  // HF-style: model_type, no num_key_value_heads (-> heads), intermediate_size null (-> seed rule).
  ModelConfig hf = config_from_json(json::parse(R"({"model_type": "llama", "hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 100, "max_position_embeddings": 32,
      "intermediate_size": null, "torch_dtype": "bfloat16", "hidden_act": "silu"})"), "config.json");
  CHECK(hf.num_key_value_heads == 8);
  CHECK(hf.intermediate_size == 256);
  CHECK(!hf.tie_word_embeddings);
}

TEST(io_config_json_errors_name_the_key) {
  auto parse = [](const std::string& text) { return config_from_json(json::parse(text), "config"); };
  const std::string base =
      R"("num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 100, "max_position_embeddings": 32)";
  CHECK_ERROR(FormatError, parse("{" + base + "}"), "config: missing key 'hidden_size'");
  CHECK_ERROR(FormatError, parse("{\"hidden_size\": 0, " + base + "}"), "config.hidden_size: 0 is out of range");
  CHECK_ERROR(FormatError, parse("{\"hidden_size\": 6.5, " + base + "}"), "config.hidden_size: expected an integer");
  CHECK_ERROR(FormatError, parse("{\"hidden_size\": 60, " + base + "}"), "config: hidden_size (60) must be divisible");
  CHECK_ERROR(FormatError, parse("{\"hidden_size\": 64, \"architecture\": \"gptx\", " + base + "}"),
              "config: architecture 'gptx' is not supported");
  CHECK_ERROR(FormatError, parse("{\"hidden_size\": 64, \"rope_scaling\": {\"type\": \"linear\"}, " + base + "}"),
              "rope_scaling is not supported");
  CHECK_ERROR(FormatError, parse("{\"hidden_size\": 64, \"rms_norm_eps\": \"x\", " + base + "}"),
              "config.rms_norm_eps: expected a number");
  CHECK_ERROR(FormatError, parse("[1]"), "config: expected a JSON object");
}

// ---------------------------------------------------------------- files

TEST(io_mapped_file_and_atomic_writer) {
  TempDir dir;
  CHECK_ERROR(IOError, MappedFile::open(dir / "missing"), "missing");
  CHECK_ERROR(IOError, MappedFile::open(dir.path), "is a directory");
  write_file(dir / "empty", "");
  auto empty = MappedFile::open(dir / "empty");
  CHECK(empty->size() == 0);

  {
    AtomicFileWriter w(dir / "out.bin");
    w.write("hello ");
    w.write(std::string("world"));
    CHECK(!std::filesystem::exists(dir / "out.bin"));  // nothing under the final name yet
    w.commit();
  }
  CHECK(read_file(dir / "out.bin") == "hello world");
  auto mapped = MappedFile::open(dir / "out.bin");
  CHECK(mapped->size() == 11 && std::memcmp(mapped->data(), "hello world", 11) == 0);
  {
    AtomicFileWriter w(dir / "out.bin");
    w.write("partial");
  }  // no commit: the old file stays and the temporary is removed
  CHECK(read_file(dir / "out.bin") == "hello world");
  CHECK(dir.count() == 2);  // empty, out.bin
  CHECK_ERROR(IOError, AtomicFileWriter(dir / "no/such/dir/x"), "no/such/dir/x");
}

namespace {
std::string st_file(const std::string& header, const std::string& data, uint64_t header_len) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &header_len, 8);
  return out + header + data;
}
std::string st_file(const std::string& header, const std::string& data) {
  return st_file(header, data, header.size());
}
}  // namespace

TEST(io_safetensors_round_trip) {
  TempDir dir;
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"w", iota_tensor(DType::F32, {3, 4})},  {"h", iota_tensor(DType::F16, {5})},
      {"b", iota_tensor(DType::BF16, {2, 3})}, {"d", iota_tensor(DType::F64, {1})},
      {"i", iota_tensor(DType::I64, {2})},     {"q", iota_tensor(DType::I8, {3})},
      {"u", iota_tensor(DType::U8, {1, 1})},   {"m", iota_tensor(DType::BOOL, {2})},
      {"n", iota_tensor(DType::I32, {0, 4})},  {"s", iota_tensor(DType::F32, {})},
  };
  write_safetensors(dir / "t.safetensors", tensors, {{"format", "pt"}, {"note", "a \"quoted\" value"}});
  const std::string bytes = read_file(dir / "t.safetensors");
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  CHECK(header_len % 8 == 0);

  SafetensorsFile f = read_safetensors(dir / "t.safetensors");
  CHECK(f.tensors.size() == tensors.size());
  for (auto& [name, t] : tensors) CHECK(f.tensors.count(name) && same_bytes(f.tensors[name], t));
  CHECK(f.metadata.size() == 2 && f.metadata["note"] == "a \"quoted\" value");
  // Views into one mapping, which outlives the SafetensorsFile through the tensors.
  Tensor w = f.tensors["w"];
  CHECK(w.owner == f.tensors["h"].owner);
  f = SafetensorsFile();
  CHECK(same_bytes(w, tensors[0].second));
  // A write into a view stays in private memory: no crash, the file is unchanged.
  static_cast<uint8_t*>(w.data)[0] ^= 0xff;
  CHECK(read_file(dir / "t.safetensors") == bytes);

  CHECK_THROWS(ValueError,
               write_safetensors(dir / "dup.safetensors", {{"a", tensors[0].second}, {"a", tensors[1].second}}, {}));
}

TEST(io_safetensors_rejects_malformed_files) {
  TempDir dir;
  const std::string path = dir / "bad.safetensors";
  auto read = [&](const std::string& bytes) {
    write_file(path, bytes);
    return read_safetensors(path);
  };
  const std::string data16(16, '\0');
  auto one = [](const std::string& entry) { return "{\"a\":" + entry + "}"; };
  CHECK(read(st_file(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})"), data16)).tensors.size() == 1);
  CHECK(read(st_file("{}", "")).tensors.empty());

  CHECK_ERROR(FormatError, read("abc"), "too small");
  CHECK_ERROR(FormatError, read(st_file("{}", "", 1000)), "header length 1000 runs past the end");
  CHECK_ERROR(FormatError, read(st_file("{}", "", 200'000'000)), "exceeds the limit");
  CHECK_ERROR(FormatError, read(st_file("[1]", "")), "header is not a JSON object");
  CHECK_ERROR(FormatError, read(st_file("{\"a\":", "")), "header: JSON: unexpected end of input");
  CHECK_ERROR(FormatError, read(st_file(one(R"({"dtype":"F32","shape":[4],"data_offsets":[8,24]})"), data16)),
              "tensor 'a': data_offsets [8, 24] lie outside the data section (16 bytes)");
  CHECK_ERROR(FormatError, read(st_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), data16)),
              "outside the data section");
  CHECK_ERROR(FormatError, read(st_file(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), data16)),
              "shape (3,) of F32 needs 12 bytes but data_offsets [0, 8] hold 8");
  CHECK_ERROR(FormatError, read(st_file(one(R"({"dtype":"I16","shape":[4],"data_offsets":[0,8]})"), data16)),
              "tensor 'a': unsupported dtype 'I16'");
  CHECK_ERROR(FormatError, read(st_file(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), data16)),
              "a.shape: -2 is out of range");
  CHECK_ERROR(FormatError, read(st_file(one(R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})"), data16)),
              "expected a list of dimensions");
  CHECK_ERROR(FormatError, read(st_file(one(R"({"dtype":"F32","shape":[2]})"), data16)),
              "missing key 'a.data_offsets'");
  CHECK_ERROR(FormatError, read(st_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), data16)),
              "data_offsets must be a list [begin, end]");
  CHECK_ERROR(FormatError,
              read(st_file(one(R"({"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,16]})"), data16)),
              "too large");
  auto two = [](const std::string& second_name, const std::string& second_offsets) {
    return R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},")" + second_name +
           R"(":{"dtype":"F32","shape":[2],"data_offsets":)" + second_offsets + "}}";
  };
  CHECK(read(st_file(two("b", "[8,16]"), data16)).tensors.size() == 2);
  CHECK_ERROR(FormatError, read(st_file(two("b", "[4,12]"), data16)), "tensors 'a' and 'b' overlap");
  CHECK_ERROR(FormatError, read(st_file(two("a", "[8,16]"), data16)), "appears twice");
  CHECK_ERROR(FormatError, read(st_file(R"({"__metadata__":{"k":1}})", "")), "__metadata__ 'k' must be a string");
  CHECK_ERROR(FormatError, read(st_file(R"({"__metadata__":[]})", "")), "__metadata__ must be an object");
  CHECK(read(st_file(R"({"__metadata__":{}})", "")).tensors.empty());
  CHECK(read(st_file(R"({"__metadata__":null})", "")).metadata.empty());

  // A good file cut short: the last tensor's offsets now run past the data.
  write_safetensors(path, {{"x", iota_tensor(DType::F32, {4})}, {"y", iota_tensor(DType::F32, {4})}}, {});
  std::string full = read_file(path);
  CHECK_ERROR(FormatError, read(full.substr(0, full.size() - 4)), "tensor 'y': data_offsets [16, 32] lie outside");
  CHECK_ERROR(FormatError, read(full.substr(0, 20)), "runs past the end");
  CHECK_ERROR(FormatError, read(full.substr(0, 20)), path);  // messages name the file
}

namespace {
Model model_with_extras(bool tied) {
  ModelConfig c = small_config(tied);
  Model m = random_model(c, 42);
  m.input_ids = random_tokens(2, 5, c.vocab_size, 3);
  m.attention_mask = Tensor::zeros(DType::I32, {2, 5});
  for (int i = 0; i < 10; ++i) m.attention_mask.as<int32_t>()[i] = i % 5 != 0;
  rope_tables(c, m.rope_cos, m.rope_sin);
  return m;
}

std::vector<std::pair<std::string, Tensor>> weights_of(Model& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const WeightSlot& s : weight_slots(m)) out.emplace_back(s.name, *s.tensor);
  return out;
}
}  // namespace

TEST(io_safetensors_model_round_trip) {
  TempDir dir;
  for (bool tied : {false, true}) {
    Model m = model_with_extras(tied);
    save_safetensors_model(m, dir / "m.safetensors");
    Model back = load_safetensors_model(dir / "m.safetensors");
    CHECK(back.config.to_string() == m.config.to_string());
    check_same_weights(m, back);
    CHECK(back.lm_head.empty() == tied);
    CHECK(same_bytes(back.input_ids, m.input_ids) && same_bytes(back.attention_mask, m.attention_mask));
    CHECK(same_bytes(back.rope_cos, m.rope_cos) && same_bytes(back.rope_sin, m.rope_sin));
    CHECK(back.embed_tokens.owner == back.norm.owner);  // float32 weights are views of one mapping
  }
}

TEST(io_safetensors_model_config_json_and_names) {
  TempDir dir;
  Model m = random_model(small_config(), 5);
  auto weights = weights_of(m);
  write_safetensors(dir / "model.safetensors", weights, {});
  CHECK_ERROR(FormatError, load_safetensors_model(dir / "model.safetensors"), "no model config");
  write_file(dir / "config.json", config_to_json(m.config));
  Model back = load_safetensors_model(dir.path);  // a folder with config.json + model.safetensors
  check_same_weights(m, back);

  // A 1-byte tensor first puts every float32 weight off 4-byte alignment: they are copied.
  auto shifted = weights;
  shifted.insert(shifted.begin(), {"model.layers.0.self_attn.rotary_emb.inv_freq", iota_tensor(DType::U8, {1})});
  write_safetensors(dir / "model.safetensors", shifted, {});
  Model copied = load_safetensors_model(dir / "model.safetensors");
  check_same_weights(m, copied);
  CHECK(copied.embed_tokens.owner != copied.norm.owner);
  CHECK(reinterpret_cast<uintptr_t>(copied.embed_tokens.data) % 4 == 0);

  auto without = weights;
  without.pop_back();
  write_safetensors(dir / "model.safetensors", without, {});
  CHECK_ERROR(FormatError, load_safetensors_model(dir / "model.safetensors"),
              "missing tensor 'model.layers.1.mlp.down_proj.weight'");

  auto extra = weights;
  extra.emplace_back("model.layers.2.input_layernorm.weight", m.norm);
  write_safetensors(dir / "model.safetensors", extra, {});
  CHECK_ERROR(FormatError, load_safetensors_model(dir / "model.safetensors"),
              "unexpected tensor 'model.layers.2.input_layernorm.weight'");

  auto wrong = weights;
  for (auto& [name, t] : wrong)
    if (name == "model.layers.0.self_attn.q_proj.weight") t = iota_tensor(DType::F32, {16, 8});
  write_safetensors(dir / "model.safetensors", wrong, {});
  CHECK_ERROR(FormatError, load_safetensors_model(dir / "model.safetensors"),
              "tensor 'model.layers.0.self_attn.q_proj.weight' has shape (16, 8)");

  auto ints = weights;
  ints[1].second = iota_tensor(DType::I32, {16});
  write_safetensors(dir / "model.safetensors", ints, {});
  CHECK_ERROR(FormatError, load_safetensors_model(dir / "model.safetensors"), "not a floating-point type");
}

TEST(io_safetensors_model_converts_half_and_reads_shards) {
  TempDir dir;
  Model m = random_model(small_config(), 9);
  auto weights = weights_of(m);
  // HF checkpoints are often bf16 / f16: they are widened to float32 on load.
  std::vector<std::pair<std::string, Tensor>> half;
  for (size_t i = 0; i < weights.size(); ++i) {
    const Tensor& w = weights[i].second;
    Tensor h = Tensor::zeros(i % 2 ? DType::BF16 : DType::F16, w.shape);
    for (int64_t k = 0; k < w.numel(); ++k)
      h.as<uint16_t>()[k] = i % 2 ? f32_to_bf16(w.f32()[k]) : f32_to_f16(w.f32()[k]);
    half.emplace_back(weights[i].first, h);
  }
  // Two shards and an index, as Hugging Face writes them; an inv_freq buffer is ignored.
  half.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", iota_tensor(DType::F32, {2}));
  const size_t cut = half.size() / 2;
  const std::string shard[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  write_safetensors(dir / shard[0], {half.begin(), half.begin() + long(cut)}, {{"format", "pt"}});
  write_safetensors(dir / shard[1], {half.begin() + long(cut), half.end()}, {{"format", "pt"}});
  std::string index = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
  for (size_t i = 0; i < half.size(); ++i)
    index += (i ? ", " : "") + json::quote(half[i].first) + ": " + json::quote(shard[i < cut ? 0 : 1]);
  write_file(dir / "model.safetensors.index.json", index + "}}");
  write_file(dir / "config.json", config_to_json(m.config));

  Model back = load_safetensors_model(dir.path);
  auto a = weight_slots(back);
  for (size_t i = 0; i < a.size(); ++i) {
    const Tensor& h = half[i].second;
    CHECK(a[i].tensor->dtype == DType::F32 && a[i].tensor->shape == h.shape);
    for (int64_t k = 0; k < h.numel(); ++k) {
      float expect = h.dtype == DType::BF16 ? bf16_to_f32(h.as<uint16_t>()[k]) : f16_to_f32(h.as<uint16_t>()[k]);
      if (a[i].tensor->f32()[k] != expect) {
        celer_test::fail(__FILE__, __LINE__, "converted value differs in " + a[i].name);
        break;
      }
    }
  }
  Model via_index = load_safetensors_model(dir / "model.safetensors.index.json");
  check_same_weights(via_index, back);
  write_file(dir / "model.safetensors.index.json", "{\"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}");
  CHECK_ERROR(FormatError, load_safetensors_model(dir.path), "is not a file name in this folder");
}

// ---------------------------------------------------------------- seed JSON

TEST(io_seed_json_round_trip) {
  TempDir dir;
  for (bool tied : {false, true}) {
    Model m = model_with_extras(tied);
    if (tied) m.input_ids = m.attention_mask = m.rope_cos = m.rope_sin = Tensor();
    save_seed_json(m, dir / "seed.json");
    Model back = load_seed_json(dir / "seed.json");
    CHECK(back.config.to_string() == m.config.to_string());
    check_same_weights(m, back);
    Tensor cos, sin;
    rope_tables(m.config, cos, sin);
    CHECK(same_bytes(back.rope_cos, cos) && same_bytes(back.rope_sin, sin));  // always written
    if (!tied) CHECK(same_bytes(back.input_ids, m.input_ids) && same_bytes(back.attention_mask, m.attention_mask));
    if (tied) CHECK(back.input_ids.empty() && back.lm_head.empty());

    // The file is plain JSON with the agreed keys and previews.
    const std::string text = read_file(dir / "seed.json");
    json::Value doc = json::parse(text);
    CHECK(doc.at("meta", "").at("head_dim", "meta").integer("") == m.config.head_dim());
    CHECK(doc.at("meta", "").at("B", "meta").integer("") == (tied ? 0 : 2));
    CHECK((doc.find("inputs") != nullptr) == !tied);
    CHECK((doc.at("weights", "").find("lm_head") != nullptr) == !tied);
    const json::Value& wq = doc.at("weights", "").at("layers", "").array.at(1).at("wq", "");
    CHECK(wq.at("dtype", "").str("") == "float32");
    CHECK(wq.at("preview", "").array.size() == 8);
    CHECK(float(wq.at("preview", "").array[3].num("")) == m.layers[1].q_proj.f32()[3]);
  }
}

TEST(io_seed_json_preview_of_non_finite_values_is_valid_json) {
  TempDir dir;
  Model m = random_model(small_config(), 1);
  m.norm = to_f32(m.norm);  // own copy before poking values
  m.norm.f32()[0] = NAN;
  m.norm.f32()[1] = INFINITY;
  save_seed_json(m, dir / "seed.json");
  const std::string text = read_file(dir / "seed.json");
  CHECK(text.find("NaN") == std::string::npos && text.find("Infinity") == std::string::npos);
  Model back = load_seed_json(dir / "seed.json");
  CHECK(std::isnan(back.norm.f32()[0]) && std::isinf(back.norm.f32()[1]));
}

namespace {
// A seed document written as another tool (Python's json + base64) might: keys in another
// order, '/' escaped as "\/", float64 weights, int64 ids, a bool mask, extra config keys.
// `record` may change or drop (return "") the record of any key path.
using RecordFn = std::function<std::string(const std::string& path, const std::string& record)>;

std::string foreign_record(const Tensor& t) {
  std::string data;
  for (char c : base64_encode(t.data, t.nbytes())) data += c == '/' ? std::string("\\/") : std::string(1, c);
  std::string shape;
  for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  return "{\"data\": \"" + data + "\", \"shape\": [" + shape + "], \"dtype\": \"" + dtype_name(t.dtype) +
         "\", \"preview\": [0.5, -1.25]}";
}

Tensor as_f64(const Tensor& t) {
  Tensor out = Tensor::zeros(DType::F64, t.shape);
  for (int64_t i = 0; i < t.numel(); ++i) out.as<double>()[i] = t.f32()[i];
  return out;
}

std::string foreign_seed(Model& m, const RecordFn& record, const std::string& meta) {
  auto entry = [&](const std::string& key, const std::string& path, const Tensor& t, bool first = false) {
    std::string r = record(path, foreign_record(t));
    return r.empty() ? std::string() : (first ? "" : ", ") + json::quote(key) + ": " + r;
  };
  std::string config = config_to_json(m.config);
  config.insert(1, "\"dropout\": 0.0, \"flash_attn\": true, ");
  std::string layers;
  const char* keys[] = {"rms_attn", "wq", "wk", "wv", "wo", "rms_ffn", "w_gate", "w_up", "w_down"};
  for (size_t i = 0; i < m.layers.size(); ++i) {
    LayerWeights& L = m.layers[i];
    const Tensor* ts[] = {&L.input_layernorm, &L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj,
                          &L.post_attention_layernorm, &L.gate_proj, &L.up_proj, &L.down_proj};
    const std::string lp = "weights.layers[" + std::to_string(i) + "].";
    std::string body;
    for (int k = 0; k < 9; ++k) body += entry(keys[k], lp + keys[k], as_f64(*ts[k]), body.empty());
    layers += (i ? ", {" : "{") + body + "}";
  }
  Tensor ids = Tensor::zeros(DType::I64, m.input_ids.shape), mask = Tensor::zeros(DType::BOOL, m.input_ids.shape);
  for (int64_t i = 0; i < ids.numel(); ++i) {
    ids.as<int64_t>()[i] = m.input_ids.as<int32_t>()[i];
    mask.as<uint8_t>()[i] = uint8_t(m.attention_mask.as<int32_t>()[i]);
  }
  return "{\"config\": " + config + ",\n \"weights\": {" +
         entry("final_rms", "weights.final_rms", as_f64(m.norm), true) +
         entry("tok_embedding", "weights.tok_embedding", as_f64(m.embed_tokens)) +
         entry("lm_head", "weights.lm_head", as_f64(m.lm_head)) + ", \"layers\": [" + layers + "]},\n" +
         "\"inputs\": {" + entry("attention_mask", "inputs.attention_mask", mask, true) +
         entry("input_ids", "inputs.input_ids", ids) + "},\n" + "\"meta\": " + meta + "}";
}

const RecordFn kUnchanged = [](const std::string&, const std::string& r) { return r; };
const std::string kMeta = "{\"head_dim\": 4, \"S\": 5, \"B\": 2}";
}  // namespace

TEST(io_seed_json_reads_files_of_other_writers) {
  TempDir dir;
  Model m = model_with_extras(false);
  write_file(dir / "seed.json", foreign_seed(m, kUnchanged, kMeta));
  Model back = load_seed_json(dir / "seed.json");
  check_same_weights(m, back);  // float64 -> float32 is exact for float32 values
  CHECK(back.input_ids.dtype == DType::I64 && back.input_ids.as<int64_t>()[3] == m.input_ids.as<int32_t>()[3]);
  CHECK(back.attention_mask.dtype == DType::I32 && same_bytes(back.attention_mask, m.attention_mask));
  CHECK(back.rope_cos.empty());  // no rope in the file: the engine computes it
}

TEST(io_seed_json_errors_name_the_key) {
  TempDir dir;
  Model m = model_with_extras(false);
  auto load = [&](const RecordFn& record, const std::string& meta = kMeta) {
    write_file(dir / "seed.json", foreign_seed(m, record, meta));
    return load_seed_json(dir / "seed.json");
  };
  auto change = [](const std::string& path, std::function<std::string(const std::string&)> f) -> RecordFn {
    return [=](const std::string& p, const std::string& r) { return p == path ? f(r) : r; };
  };
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    return s.replace(s.find(from), from.size(), to);
  };
  CHECK_ERROR(FormatError, load(change("weights.layers[0].wk", [](auto&) { return std::string(); })),
              "missing key 'weights.layers[0].wk'");
  auto record_of = [](Tensor t) { return [t](const std::string&) { return foreign_record(t); }; };
  CHECK_ERROR(FormatError, load(change("weights.layers[1].wq", record_of(iota_tensor(DType::F32, {16, 8})))),
              "weights.layers[1].wq: shape (16, 8) but config implies (16, 16)");
  auto bad_base64 = [](const std::string& r) {  // same length as 16 doubles, one bad character
    std::string data = base64_encode(std::string(128, '\0').data(), 128);
    data[0] = '!';
    size_t begin = r.find("\"data\": \"") + 9;
    return std::string(r).replace(begin, r.find('"', begin) - begin, data);
  };
  CHECK_ERROR(FormatError, load(change("weights.final_rms", bad_base64)),
              "weights.final_rms.data: base64: invalid character '!' at position 0");
  auto longer_data = [&](const std::string& r) { return replace(r, "\"data\": \"", "\"data\": \"AAAA"); };
  CHECK_ERROR(FormatError, load(change("weights.tok_embedding", longer_data)),
              "weights.tok_embedding: shape (32, 16) of float64 needs 4096 bytes but data decodes to 4099");
  CHECK_ERROR(FormatError, load(change("weights.final_rms", [&](auto& r) { return replace(r, "float64", "float8"); })),
              "weights.final_rms.dtype: unknown dtype 'float8'");
  CHECK_ERROR(FormatError, load(change("weights.final_rms", [&](auto& r) { return replace(r, "[16]", "[16, -1]"); })),
              "weights.final_rms.shape: -1 is out of range");
  CHECK_ERROR(FormatError, load(change("weights.final_rms", [&](auto&) { return std::string("[1, 2]"); })),
              "weights.final_rms: expected a tensor record");
  CHECK_ERROR(FormatError, load(change("weights.lm_head", [](auto&) { return std::string(); })),
              "missing key 'weights.lm_head'");
  CHECK_ERROR(FormatError, load(change("inputs.input_ids", record_of(iota_tensor(DType::F32, {2, 5})))),
              "inputs.input_ids: dtype float32, expected int32 or int64");
  CHECK_ERROR(FormatError, load(kUnchanged, "{\"head_dim\": 4, \"S\": 5, \"B\": 3}"),
              "meta: B = 3, S = 5 but inputs.input_ids has shape (2, 5)");
  CHECK_ERROR(FormatError, load(kUnchanged, "{\"head_dim\": 8, \"S\": 5, \"B\": 2}"), "meta.head_dim is 8");
  CHECK_ERROR(FormatError, load(kUnchanged, "{\"head_dim\": 4, \"B\": 2}"), "missing key 'meta.S'");

  write_file(dir / "seed.json", foreign_seed(m, kUnchanged, kMeta).substr(0, 5000));
  CHECK_ERROR(FormatError, load_seed_json(dir / "seed.json"), "JSON: unterminated string");
  CHECK_ERROR(FormatError, load_seed_json(dir / "seed.json"), dir / "seed.json");
  write_file(dir / "seed.json", "[]");
  CHECK_ERROR(FormatError, load_seed_json(dir / "seed.json"), "not a JSON object");
  CHECK_ERROR(IOError, load_seed_json(dir / "missing.json"), "missing.json");

  m.config.num_hidden_layers = 3;  // the file now holds too few layers
  write_file(dir / "seed.json", foreign_seed(m, kUnchanged, kMeta));
  CHECK_ERROR(FormatError, load_seed_json(dir / "seed.json"),
              "weights.layers: 2 entries but config.num_hidden_layers is 3");
}

// ---------------------------------------------------------------- Hugging Face configs and GPT-2 layout

TEST(io_hf_config_round_trip_every_architecture) {
  for (const char* arch : {"llama", "qwen2", "gpt2"}) {
    ModelConfig c;
    c.architecture = arch;
    c.hidden_size = 32;
    c.num_attention_heads = c.num_key_value_heads = 4;
    c.tie_word_embeddings = std::string(arch) == "gpt2";
    c.resolve();
    ModelConfig back = config_from_json(json::parse(hf_config_json(c)), "config.json");
    CHECK(back == c);
  }
  CHECK_ERROR(FormatError, config_from_json(json::parse(R"({"model_type": "bert", "hidden_size": 8})"), "c"),
              "model_type 'bert' is not supported");
}

TEST(io_gpt2_safetensors_round_trip_translates_the_layout) {
  TempDir dir;
  ModelConfig c;
  c.architecture = "gpt2";
  c.hidden_size = 16;
  c.num_attention_heads = c.num_key_value_heads = 2;
  c.vocab_size = 40;
  c.max_position_embeddings = 8;
  Model m = random_model(c, 5);
  save_safetensors_model(m, dir / "g.safetensors");
  SafetensorsFile file = read_safetensors(dir / "g.safetensors");
  CHECK(file.tensors.count("transformer.h.0.attn.c_attn.weight") == 1);
  CHECK(file.tensors.at("transformer.h.0.attn.c_attn.weight").shape == Shape({16, 48}));
  Model back = load_safetensors_model(dir / "g.safetensors");
  auto a = weight_slots(m), b = weight_slots(back);
  CHECK(a.size() == b.size());
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    CHECK(a[i].tensor->nbytes() == b[i].tensor->nbytes() &&
          std::memcmp(a[i].tensor->data, b[i].tensor->data, a[i].tensor->nbytes()) == 0);
}
