// Which kernels the avx512 level runs where its AVX-512 kernel is not always the fastest:
// chosen by measured speed, not by ISA alone (gemm.h: the f32 GEMM tile; gemv.h: the 4-bit
// GEMV). Cores with two 512-bit FMA pipes run AVX-512 at twice AVX2's flops; cores that split
// each 512-bit instruction in two halves (AMD Zen 4), or issue 512-bit instructions on fewer
// ports than 256-bit ones, may run the AVX2 kernel as fast or faster.
#include <atomic>
#include <vector>

#include "backend/cpu/gemm.h"
#include "backend/cpu/gemv.h"
#include "backend/cpu/timed_choice.h"
#include "core/error.h"
#include "core/tensor.h"

namespace celer::cpu {

namespace {

// Whether the AVX2 kernel runs faster: by more than 5%, so that noise does not flip a tie.
template <class A, class B>
bool avx2_outruns_avx512(A&& avx512, B&& avx2) {
  return best_time_ratio(avx512, avx2) * 1.05 < 1.0;
}

// Deterministic test values in [-0.75, 0.75].
std::vector<float> pattern(int64_t n, uint64_t step) {
  std::vector<float> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(int(i * step % 97) - 48) / 64.0f;
  return v;
}

// The f32 tiles on 64 weight rows x kGemmKc inputs and 96 activation rows (~1.6M
// multiply-adds, four times over; everything in L2: the kernels' own pace).
bool avx2_tile_outruns_avx512() {
  static const bool faster = [] {
    constexpr int64_t M = 96, N = kGemmPanelRows, K = kGemmKc;
    const std::vector<float> weights = pattern(N * K, 7919), x = pattern(M * K, 104729);
    PackedWeight w;
    w.rows = N;
    w.cols = K;
    w.f32 = weights.data();
    std::vector<float> packed(static_cast<size_t>(packed_activation_floats(M, K))), y(static_cast<size_t>(M * N));
    std::vector<float> scratch(static_cast<size_t>(kGemmWeightScratch));
    auto run = [&](bool avx2) {
      if (avx2)
        pack_activations_avx2(x.data(), K, M, K, false, 0, avx2_panels(M), packed.data());
      else
        pack_activations(x.data(), K, M, K, false, false, 0, gemm_panels(M), packed.data());
      const PackedActivations xa{packed.data(), M, K, false};
      for (int rep = 0; rep < 4; ++rep)
        (avx2 ? gemm_rows_avx2 : gemm_rows_avx512)(w, 0, N, xa, y.data(), N, false, scratch.data());
    };
    return avx2_outruns_avx512([&] { run(false); }, [&] { run(true); });
  }();
  return faster;
}

// The 4-bit GEMV on one activation row and 256 Q4_1 rows x 2048 inputs (~300 KB: in L2, where
// the kernels' instruction rate, not DRAM, sets the pace), four times over.
bool avx2_q4_gemv_outruns_avx512() {
  static const bool faster = [] {
    constexpr int64_t N = 256, K = 2048;
    Tensor source = Tensor::zeros(DType::F32, {N, K});
    const std::vector<float> values = pattern(N * K, 7919), x = pattern(K, 104729);
    std::copy(values.begin(), values.end(), source.f32());
    const PackedWeight w = pack_weight(source, WeightFormat::Q4_1);
    std::vector<float> y(static_cast<size_t>(N));
    auto run = [&](SimdLevel level) {
      for (int rep = 0; rep < 4; ++rep) gemv_rows_with(w, 0, N, x.data(), K, 1, y.data(), N, false, level);
    };
    return avx2_outruns_avx512([&] { run(SimdLevel::Avx512); }, [&] { run(SimdLevel::Avx2); });
  }();
  return faster;
}

std::atomic<int> g_f32_tile{-1};  // set_gemm_f32_tile; -1: not forced
std::atomic<int> g_q4_gemv{-1};   // set_q4_gemv_level; -1: not forced

void require_avx512_cpu(const char* what) {
  require(best_simd_level() == SimdLevel::Avx512, std::string(what) + " is chosen only on AVX-512 CPUs");
}

}  // namespace

std::string f32_tile_name(F32Tile tile) { return tile == F32Tile::Avx2 ? "avx2" : "avx512"; }

void set_gemm_f32_tile(const F32Tile* tile) {
  if (tile != nullptr) require_avx512_cpu("the f32 GEMM tile");
  g_f32_tile.store(tile == nullptr ? -1 : int(*tile));
}

F32Tile gemm_f32_tile() {
  const int forced = g_f32_tile.load(std::memory_order_relaxed);
  if (forced >= 0) return F32Tile(forced);
  return avx2_tile_outruns_avx512() ? F32Tile::Avx2 : F32Tile::Avx512;
}

void set_q4_gemv_level(const SimdLevel* level) {
  if (level != nullptr) {
    require_avx512_cpu("the 4-bit GEMV's kernel");
    require(*level == SimdLevel::Avx2 || *level == SimdLevel::Avx512,
            "the 4-bit GEMV's kernel at avx512 is the avx2 or the avx512 one, not " + simd_name(*level));
  }
  g_q4_gemv.store(level == nullptr ? -1 : int(*level));
}

SimdLevel gemv_kernel_level(WeightFormat format, SimdLevel level) {
  if (level != SimdLevel::Avx512 || (format != WeightFormat::Q4_0 && format != WeightFormat::Q4_1)) return level;
  const int forced = g_q4_gemv.load(std::memory_order_relaxed);
  if (forced >= 0) return SimdLevel(forced);
  return avx2_q4_gemv_outruns_avx512() ? SimdLevel::Avx2 : SimdLevel::Avx512;
}

void make_kernel_choices() {
  if (simd_level() != SimdLevel::Avx512) return;
  gemm_f32_tile();
  gemv_kernel_level(WeightFormat::Q4_1, SimdLevel::Avx512);
}

}  // namespace celer::cpu
