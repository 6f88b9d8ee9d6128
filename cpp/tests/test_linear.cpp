// The linear layers over packed weights: every SIMD level and weight format against a plain
// double-precision loop over the unpacked weights (and, for bf16, the inputs rounded to bf16),
// on sizes that are not multiples of the vector width, the Q8 block, the GEMM tile, the
// weight block, the K block or a GEMV's chunk of scales (odd K included: bf16 pairs); and the
// packing itself.
#include <cmath>
#include <tuple>
#include <vector>

#include "backend/cpu/gemm.h"
#include "backend/cpu/gemv.h"
#include "backend/cpu/linear.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/simd.h"
#include "core/error.h"
#include "harness.h"
#include "core/block_quant.h"
#include "core/model.h"
#include "core/tensor.h"
#include "backend/cpu/threadpool.h"

using namespace celer;

namespace {
Tensor random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  Tensor t = Tensor::zeros(DType::F32, {rows, cols});
  auto v = celer_test::random_floats(size_t(rows * cols), seed);
  std::copy(v.begin(), v.end(), t.f32());
  return t;
}

// A random (N, K) weight and bias packed in `format`, the weight's values as the kernels use
// them (unpacked), and a random input (M, K).
struct LinearCase {
  Tensor bias;
  cpu::PackedWeight packed;
  std::vector<float> plain, x;
};
LinearCase linear_case(WeightFormat format, int64_t M, int64_t K, int64_t N, uint64_t seed) {
  LinearCase c;
  c.bias = random_matrix(1, N, seed + 1);
  c.bias.shape = {N};
  c.packed = cpu::pack_weight(random_matrix(N, K, seed + uint64_t(K)), format, &c.bias);
  c.plain.resize(size_t(N * K));
  cpu::unpack_rows(c.packed, 0, N, c.plain.data());
  c.x = celer_test::random_floats(size_t(M * K), seed + 2);
  return c;
}

// Restores the SIMD level and the bf16 GEMM path a test forced.
struct SimdGuard {
  cpu::SimdLevel saved = cpu::simd_level();
  ~SimdGuard() {
    cpu::set_simd_level(saved);
    cpu::set_gemm_bf16_path(nullptr);
    cpu::set_gemm_f32_tile(nullptr);
    cpu::set_q4_gemv_level(nullptr);
  }
};
}  // namespace

TEST(linear_every_level_and_format_matches_naive) {
  SimdGuard guard;
  const int threads = thread_pool()->num_threads();
  // Each level, and at avx512 every bf16 GEMM path this CPU can run (weights widened to f32,
  // vdpbf16ps on pairs, AMX tiles), both f32 tiles and both 4-bit GEMV kernels (the avx2 one
  // with the avx2 tile).
  struct Path {
    cpu::SimdLevel level;
    cpu::Bf16Gemm bf16;
    cpu::F32Tile f32;
  };
  std::vector<Path> paths;
  for (cpu::SimdLevel level : cpu::supported_simd_levels()) {
    if (level != cpu::SimdLevel::Avx512) {
      paths.push_back({level, cpu::Bf16Gemm::Widened, cpu::F32Tile::Avx512});
      continue;
    }
    for (cpu::Bf16Gemm path : cpu::bf16_gemm_paths()) paths.push_back({level, path, cpu::F32Tile::Avx512});
    paths.push_back({level, cpu::Bf16Gemm::Widened, cpu::F32Tile::Avx2});
  }
  for (auto [level, path, tile] : paths) {
    cpu::set_simd_level(level);
    cpu::set_gemm_bf16_path(level == cpu::SimdLevel::Avx512 ? &path : nullptr);
    if (level == cpu::SimdLevel::Avx512) {
      cpu::set_gemm_f32_tile(&tile);
      const cpu::SimdLevel q4 = tile == cpu::F32Tile::Avx2 ? cpu::SimdLevel::Avx2 : cpu::SimdLevel::Avx512;
      cpu::set_q4_gemv_level(&q4);
    }
    for (WeightFormat format : weight_formats()) {
      for (auto [M, K, N] : {std::tuple{1, 1, 3}, {1, 31, 5}, {2, 33, 17}, {3, 64, 40}, {4, 100, 9}, {5, 47, 21},
                             {9, 65, 70}, {17, 96, 130}, {1, 300, 67}, {25, 513, 97}, {40, 257, 33},
                             {12, 256, 64}, {70, 1100, 130},
                             // past the GEMVs' chunks of scales (128 blocks of 32 at avx512)
                             {1, 4200, 11}, {2, 8230, 5}}) {
        const auto [bias, packed, plain, x] = linear_case(format, M, K, N, 7);
        cpu::LinearScratch scratch;
        scratch.reserve(threads, K, M);
        std::vector<float> y(size_t(M * N), 0.5f);
        cpu::linear(packed, x.data(), M, y.data(), /*accumulate=*/true, &scratch);
        for (int m = 0; m < M; ++m)
          for (int n = 0; n < N; ++n) {
            double acc = 0;
            for (int k = 0; k < K; ++k) {
              const float xv = x[size_t(m * K + k)];
              acc += double(format == WeightFormat::BF16 ? bf16_to_f32(f32_to_bf16(xv)) : xv) * plain[size_t(n * K + k)];
            }
            CHECK_NEAR(y[size_t(m * N + n)], acc + bias.f32()[n] + 0.5, 1e-4 * (1 + std::sqrt(double(K))));
          }
      }
    }
  }
}

// A block-quantized source packs into the format of its own values exactly (core/block_quant.h
// defines them), and into any other format through its exact dequantized values.
TEST(block_quantized_sources_pack_exactly) {
  const int64_t N = 7, K = 96;
  const Tensor w = random_matrix(N, K, 3);
  for (auto [type, format] : {std::pair{DType::Q4_0, WeightFormat::Q4_0}, {DType::Q4_1, WeightFormat::Q4_1},
                              {DType::Q8_0, WeightFormat::Int8}}) {
    Tensor q = Tensor::zeros(type, {N, K});
    const uint64_t row_bytes = tensor_bytes(type, {1, K});
    for (int64_t r = 0; r < N; ++r) quantize_blocks(type, w.f32() + r * K, K, q.as<uint8_t>() + r * row_bytes);
    std::vector<float> exact(size_t(N * K)), unpacked(size_t(N * K));
    for (int64_t r = 0; r < N; ++r) dequantize_blocks(type, q.as<uint8_t>() + r * row_bytes, K, exact.data() + r * K);
    for (WeightFormat target : weight_formats()) {
      cpu::PackedWeight p = cpu::pack_weight(q, target);
      cpu::unpack_rows(p, 0, N, unpacked.data());
      if (target == format || target == WeightFormat::F32) {
        CHECK(unpacked == exact);
      } else {  // re-rounded from the exact values: within the target's own rounding
        cpu::PackedWeight direct = cpu::pack_weight(dequantize(q), target);
        std::vector<float> expected(size_t(N * K));
        cpu::unpack_rows(direct, 0, N, expected.data());
        CHECK(unpacked == expected);
      }
    }
  }
  // An f32 matrix whose rows end inside a block: zeros pad the last Q4 block, and the values
  // are llama.cpp's quantization of the row.
  const int64_t K2 = 45;
  const Tensor w2 = random_matrix(3, K2, 5);
  for (auto [type, format] : {std::pair{DType::Q4_0, WeightFormat::Q4_0}, {DType::Q4_1, WeightFormat::Q4_1}}) {
    cpu::PackedWeight p = cpu::pack_weight(w2, format);
    std::vector<float> unpacked(size_t(3 * K2)), row(64);
    std::vector<uint8_t> blocks(2 * dtype_size(type));
    cpu::unpack_rows(p, 0, 3, unpacked.data());
    for (int64_t r = 0; r < 3; ++r) {
      quantize_blocks(type, w2.f32() + r * K2, K2, blocks.data());
      dequantize_blocks(type, blocks.data(), K2, row.data());
      for (int64_t k = 0; k < K2; ++k) CHECK(unpacked[size_t(r * K2 + k)] == row[size_t(k)]);
    }
    CHECK(p.nbytes() == 3 * 2 * dtype_size(type));
  }
}

// MatmulPrecision::High (bf16x3 on AMX) against a double-precision loop, relative to the sum of
// |products| each output adds up. The bound, 4e-6, is ~10x what bf16x3 measures (4e-7 at worst;
// f32 products: 4e-8) and ~35x below what one bf16 product per term gives (1.5e-4): a kernel that
// drops a residual term fails it. Without AMX, High must be Highest, bit for bit.
TEST(linear_high_precision_splits_into_bf16_parts_within_its_bound) {
  SimdGuard guard;
  const int threads = thread_pool()->num_threads();
  for (cpu::SimdLevel level : cpu::supported_simd_levels()) {
    cpu::set_simd_level(level);
    for (WeightFormat format : {WeightFormat::F32, WeightFormat::Int8, WeightFormat::Q4_0, WeightFormat::Q4_1}) {
      const bool splits = cpu::gemm_avx512_active() && cpu::gemm_splits(format, MatmulPrecision::High);
      CHECK(splits == (level == cpu::SimdLevel::Avx512 && cpu::cpu_has_amx_bf16()));
      // M past the GEMV's rows, odd panels, past kAmxMaxRows; K with padded tails and 1-3 K blocks.
      for (auto [M, K, N] : {std::tuple{9, 65, 70}, {17, 96, 130}, {25, 513, 97}, {70, 1100, 130}, {530, 300, 40},
                             {40, 2049, 33}}) {
        const auto [bias, packed, plain, x] = linear_case(format, M, K, N, 11);
        cpu::LinearScratch scratch;
        scratch.reserve(threads, K, M);
        std::vector<float> high(size_t(M * N), 0.5f), highest(size_t(M * N), 0.5f);
        cpu::linear(packed, x.data(), M, high.data(), /*accumulate=*/true, &scratch, MatmulPrecision::High);
        cpu::linear(packed, x.data(), M, highest.data(), /*accumulate=*/true, &scratch);
        if (!splits) {
          CHECK(high == highest);
          continue;
        }
        CHECK(high != highest);  // the split path ran
        for (int m = 0; m < M; ++m)
          for (int n = 0; n < N; ++n) {
            double exact = 0, magnitude = 0;
            for (int k = 0; k < K; ++k) {
              const double product = double(x[size_t(m * K + k)]) * plain[size_t(n * K + k)];
              exact += product;
              magnitude += std::abs(product);
            }
            CHECK_NEAR(high[size_t(m * N + n)], exact + bias.f32()[n] + 0.5, 4e-6 * magnitude + 1e-6);
          }
      }
    }
  }
}

TEST(linear_group_writes_each_output_like_separate_calls) {
  const int64_t M = 2, K = 45;
  Tensor a = random_matrix(19, K, 1), b = random_matrix(7, K, 2), c = random_matrix(33, K, 3);
  for (WeightFormat format : weight_formats()) {
    cpu::PackedWeight pa = cpu::pack_weight(a, format), pb = cpu::pack_weight(b, format), pc = cpu::pack_weight(c, format);
    auto x = celer_test::random_floats(size_t(M * K), 4);
    std::vector<float> ya(M * 19), yb(M * 7), yc(M * 33), sa(M * 19), sb(M * 7), sc(M * 33);
    cpu::linear_group({{&pa, ya.data(), 19}, {&pb, yb.data(), 7}, {&pc, yc.data(), 33}}, x.data(), K, M, nullptr);
    cpu::linear(pa, x.data(), M, sa.data(), false, nullptr);
    cpu::linear(pb, x.data(), M, sb.data(), false, nullptr);
    cpu::linear(pc, x.data(), M, sc.data(), false, nullptr);
    CHECK(ya == sa && yb == sb && yc == sc);  // the same kernels, so bitwise equal
  }
}

TEST(linear_results_do_not_depend_on_thread_count) {
  Tensor w = random_matrix(300, 130, 5);
  for (MatmulPrecision precision : matmul_precisions())
    for (WeightFormat format : weight_formats())
      for (int64_t M : {1, 3, 20, 70}) {
        const cpu::PackedWeight packed = cpu::pack_weight(w, format);
        auto x = celer_test::random_floats(size_t(M * 130), 6);
        std::vector<std::vector<float>> outs;
        for (int threads : {1, 2, 3}) {
          set_num_threads(threads);
          cpu::LinearScratch scratch;
          scratch.reserve(threads, 130, M);
          outs.emplace_back(size_t(M * 300));
          cpu::linear(packed, x.data(), M, outs.back().data(), false, &scratch, precision);
        }
        set_num_threads(0);
        CHECK(outs[0] == outs[1] && outs[1] == outs[2]);
      }
}

TEST(q8_packing_is_blockwise_symmetric_with_fp16_scales) {
  const int64_t K = 70;  // blocks of 32, 32 and 6
  Tensor w = random_matrix(3, K, 9);
  w.f32()[5] = 0.0f;
  const cpu::PackedWeight p = cpu::pack_weight(w, WeightFormat::Int8);
  CHECK(p.blocks_per_row() == 3);
  CHECK(p.nbytes() == uint64_t(3 * K + 3 * 3 * 2));
  std::vector<float> back(size_t(3 * K));
  cpu::unpack_rows(p, 0, 3, back.data());
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t b0 = 0; b0 < K; b0 += 32) {
      float amax = 0;
      for (int64_t k = b0; k < std::min(K, b0 + 32); ++k) amax = std::max(amax, std::fabs(w.f32()[r * K + k]));
      const float scale = f16_to_f32(p.int8_scales(r)[b0 / 32]);
      CHECK_NEAR(scale, amax / 127, amax / 127 * 1e-3);
      for (int64_t k = b0; k < std::min(K, b0 + 32); ++k) {
        CHECK(std::abs(int(p.int8_row(r)[k])) <= 127);
        CHECK_NEAR(back[size_t(r * K + k)], w.f32()[r * K + k], scale * 0.5f + 1e-7);
      }
    }
  CHECK(back[5] == 0.0f);
}

TEST(bf16_packing_rounds_to_nearest_even) {
  Tensor w = random_matrix(2, 19, 10);
  const cpu::PackedWeight p = cpu::pack_weight(w, WeightFormat::BF16);
  CHECK(p.nbytes() == uint64_t(2 * 19 * 2));
  for (int64_t i = 0; i < 2 * 19; ++i) CHECK(p.values.as<uint16_t>()[i] == f32_to_bf16(w.f32()[i]));
}

TEST(f32_packing_copies_nothing) {
  Tensor w = random_matrix(4, 8, 11);
  const cpu::PackedWeight p = cpu::pack_weight(w, WeightFormat::F32);
  CHECK(p.f32 == w.f32());
}

TEST(weight_format_and_simd_names_round_trip) {
  for (WeightFormat f : weight_formats()) CHECK(parse_weight_format(weight_format_name(f)) == f);
  CHECK_THROWS(ValueError, parse_weight_format("q4_k"));
  for (MatmulPrecision p : matmul_precisions())
    CHECK(parse_matmul_precision(matmul_precision_name(p)) == p);
  CHECK_THROWS(ValueError, parse_matmul_precision("medium"));
  CHECK_THROWS(ValueError, cpu::parse_simd_level("sse9"));
  for (cpu::SimdLevel l : cpu::supported_simd_levels()) CHECK(cpu::parse_simd_level(cpu::simd_name(l)) == l);
}

TEST(fp16_row_conversions_match_the_scalar_ones_at_every_level) {
  SimdGuard guard;
  std::vector<float> x = celer_test::random_floats(37, 12, 70000.0f);  // past fp16's range too
  for (float v : {0.0f, -0.0f, 1e-8f, -6.1e-5f, 5.96e-8f, 65504.0f, 65520.0f, INFINITY, -INFINITY, 1.0f / 3})
    x.push_back(v);
  for (cpu::SimdLevel level : cpu::supported_simd_levels()) {
    cpu::set_simd_level(level);
    std::vector<uint16_t> h(x.size());
    std::vector<float> back(x.size());
    cpu::f32_to_f16_row(x.data(), int64_t(x.size()), h.data());
    cpu::f16_to_f32_row(h.data(), int64_t(h.size()), back.data());
    for (size_t i = 0; i < x.size(); ++i) {
      CHECK(h[i] == f32_to_f16(x[i]));
      CHECK(back[i] == f16_to_f32(h[i]) || (std::isnan(back[i]) && std::isnan(f16_to_f32(h[i]))));
    }
  }
}
