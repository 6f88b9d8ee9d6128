// CUDA error checks that throw (never abort): a failed call becomes a C++ exception carrying
// the CUDA error name and string, which the bindings turn into a Python RuntimeError.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace celer::cuda {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw CudaError(std::string(what) + " failed: " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
                    ")");
}

// After a kernel launch: catches bad launch configurations at once (asynchronous faults show
// up at the next synchronizing call, which is checked too).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace celer::cuda

#define CELER_CUDA_CHECK(expr) ::celer::cuda::check((expr), #expr)
