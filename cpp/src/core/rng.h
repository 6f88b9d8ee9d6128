// A small, fully specified random number generator, so random models are the same bytes on
// every platform (std:: distributions differ between standard libraries).
#pragma once
#include <cstdint>

namespace celer {

// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit counter through a bijective mixer.
struct SplitMix64 {
  uint64_t state;
  explicit SplitMix64(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform on [-1, 1) with 24 bits: an exact integer times a power of two, so the float
  // result is exact and identical everywhere.
  float uniform_pm1() {
    int32_t k = int32_t(next() >> 40) - (1 << 23);  // [-2^23, 2^23)
    return float(k) * (1.0f / float(1 << 23));
  }
  // Uniform integer in [0, n) (n > 0), by rejection so there is no modulo bias.
  uint64_t below(uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next(); while (x >= limit);
    return x % n;
  }
};

// Stream seed for one named tensor, independent of generation order (FNV-1a of the name).
inline uint64_t stream_seed(uint64_t seed, const char* name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char* p = name; *p; ++p) h = (h ^ uint8_t(*p)) * 0x100000001b3ull;
  return SplitMix64(seed ^ h).next();
}

}  // namespace celer
