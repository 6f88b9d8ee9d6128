#include "backend/cpu/simd.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "core/error.h"

namespace celer::cpu {

namespace {
SimdLevel detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return SimdLevel::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return SimdLevel::Avx2;
#endif
  return SimdLevel::Scalar;
}

SimdLevel initial() {
  const SimdLevel best = detect();
  const char* env = std::getenv("CELER_SIMD");
  if (env == nullptr || *env == '\0') return best;
  const SimdLevel wanted = parse_simd_level(env);
  return wanted < best ? wanted : best;  // an environment variable never crashes a program
}

std::atomic<int>& current() {
  static std::atomic<int> level{int(initial())};
  return level;
}
}  // namespace

SimdLevel best_simd_level() {
  static const SimdLevel best = detect();
  return best;
}

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = best_simd_level() == SimdLevel::Avx512 && __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

bool cpu_has_amx_bf16() {
#if defined(__x86_64__) && defined(__linux__)
  static const bool has = [] {
    if (!cpu_has_avx512_bf16()) return false;  // the AMX GEMM packs with AVX-512 BF16
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!((d >> 22) & 1) || !((d >> 24) & 1)) return false;  // AMX-BF16, AMX-TILE
    uint32_t xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & (3u << 17)) != (3u << 17)) return false;  // the OS saves tile config and data
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return has;
#else
  return false;
#endif
}

SimdLevel simd_level() { return SimdLevel(current().load(std::memory_order_relaxed)); }

void set_simd_level(SimdLevel level) {
  require(level <= best_simd_level(), "this CPU does not support " + simd_name(level) + " (best: " +
                                          simd_name(best_simd_level()) + ")");
  current().store(int(level), std::memory_order_relaxed);
}

std::string simd_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Avx512: return "avx512";
    case SimdLevel::Avx2: return "avx2";
    default: return "scalar";
  }
}

SimdLevel parse_simd_level(const std::string& name) {
  for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512})
    if (simd_name(level) == name) return level;
  throw ValueError("unknown SIMD level '" + name + "' (expected scalar, avx2 or avx512)");
}

std::vector<SimdLevel> supported_simd_levels() {
  std::vector<SimdLevel> out;
  for (int l = 0; l <= int(best_simd_level()); ++l) out.push_back(SimdLevel(l));
  return out;
}

}  // namespace celer::cpu
