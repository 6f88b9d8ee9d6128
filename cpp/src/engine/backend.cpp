#include "engine/backend.h"

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace celer {

// The one place that knows whether CUDA was built (the only #ifdef of the engine).
#ifdef CELER_WITH_CUDA
bool built_with_cuda() { return true; }
#else
bool built_with_cuda() { return false; }
#endif

std::unique_ptr<Backend> make_backend(const std::string& device) {
  if (device == "cpu") return std::make_unique<cpu::CpuBackend>();
  if (device == "cuda")
    throw ValueError(built_with_cuda() ? "the CUDA engine is not implemented yet: this build has the CUDA op "
                                         "kernels (celerinfer._cuda) but no CUDA backend behind the engine"
                                       : "celerinfer was built without CUDA: rebuild with nvcc on PATH (CELER_CUDA=ON)");
  throw ValueError("unknown device '" + device + "' (expected cpu or cuda)");
}

}  // namespace celer
