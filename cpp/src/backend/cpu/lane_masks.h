// Lane masks for AVX-512 masked loads and stores (__mmask16 / __mmask32 are these integers):
// the first n lanes, n clipped to [0, width], so a loop's tail never reads past its data.
#pragma once
#include <cstdint>

namespace celer::cpu {

constexpr uint16_t first_lanes16(int64_t n) { return n >= 16 ? 0xFFFF : n <= 0 ? 0 : uint16_t((1u << n) - 1u); }
constexpr uint32_t first_lanes32(int64_t n) { return n >= 32 ? 0xFFFFFFFFu : n <= 0 ? 0u : (1u << n) - 1u; }

}  // namespace celer::cpu
