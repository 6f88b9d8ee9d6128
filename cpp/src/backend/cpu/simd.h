// Which SIMD kernels the CPU backend runs, chosen at run time: the widest the CPU supports,
// or the level named by CELER_SIMD (scalar | avx2 | avx512) or set_simd_level(), capped at
// what the CPU supports. Forcing a lower level is how the tests hold every fast path to the
// plain one on the same machine.
#pragma once
#include <string>
#include <vector>

namespace celer::cpu {

enum class SimdLevel { Scalar = 0, Avx2 = 1, Avx512 = 2 };

SimdLevel simd_level();                // the level the kernels use now
SimdLevel best_simd_level();           // the widest this CPU supports
void set_simd_level(SimdLevel level);  // ValueError when the CPU lacks it
std::string simd_name(SimdLevel level);
SimdLevel parse_simd_level(const std::string& name);  // ValueError on an unknown name
std::vector<SimdLevel> supported_simd_levels();
// Whether the CPU has AVX512_BF16 (vdpbf16ps: bf16 pair dot products into f32), which the bf16
// prefill GEMM uses at the avx512 level.
bool cpu_has_avx512_bf16();
// Whether the CPU has AMX tiles with bf16 products and Linux lets this process use them (the
// first call asks the kernel for the tile state, once per process).
bool cpu_has_amx_bf16();

}  // namespace celer::cpu
