// Launch shapes shared by the kernels: grid-stride loops over n elements, one block per row.
#pragma once
#include <algorithm>
#include <cstdint>

namespace celer::cuda {

constexpr int kThreads = 256;  // threads per block for elementwise and per-row kernels

// Enough blocks to cover n with kThreads each, capped: the kernels loop (grid stride).
inline unsigned grid_for(int64_t n) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65536)));
}

}  // namespace celer::cuda
