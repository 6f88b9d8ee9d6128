#include "backend/cuda/cublas_loader.h"

#include <dlfcn.h>

#include <mutex>

#include "backend/cuda/check.h"

namespace celer::cuda::cublas {
namespace {

std::mutex g_mutex;
Api g_api;
bool g_loaded = false;
std::string g_path;

template <class F>
bool bind(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

// libcublas.so.N needs libcublasLt.so.N; in an nvidia wheel folder the loader may not find it
// by itself (no rpath on some builds), so load the sibling first, globally.
void preload_lt(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return;
  const std::string dir = path.substr(0, slash + 1), file = path.substr(slash + 1);
  const size_t at = file.find("libcublas.so");
  if (at != 0) return;
  dlopen((dir + "libcublasLt" + file.substr(9)).c_str(), RTLD_NOW | RTLD_GLOBAL);  // best effort
}

}  // namespace

const Api& load(const std::vector<std::string>& candidates) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_loaded) return g_api;
  std::vector<std::string> names = candidates;
  for (const char* soname : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) names.emplace_back(soname);
  std::string tried;
  for (const std::string& name : names) {
    preload_lt(name);
    void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* why = dlerror();
      tried += "\n  " + name + ": " + (why ? why : "not found");
      continue;
    }
    Api api;
    const bool ok = bind(lib, "cublasCreate_v2", api.create) && bind(lib, "cublasDestroy_v2", api.destroy) &&
                    bind(lib, "cublasSetStream_v2", api.set_stream) &&
                    bind(lib, "cublasGetVersion_v2", api.get_version) && bind(lib, "cublasGemmEx", api.gemm_ex);
    if (!ok) {
      tried += "\n  " + name + ": loaded, but lacks a cuBLAS entry point (cublasCreate_v2 / cublasGemmEx)";
      dlclose(lib);
      continue;
    }
    bind(lib, "cublasGetStatusString", api.status_string);  // optional (cuBLAS >= 11.4)
    g_api = api;
    g_loaded = true;
    g_path = name;
    return g_api;
  }
  throw CudaError(
      "cuBLAS not found. Install it (pip install nvidia-cublas-cu12, or the CUDA toolkit) or point "
      "CELER_CUBLAS at libcublas.so.*. Tried:" +
      tried);
}

bool loaded() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_loaded;
}

std::string loaded_path() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_path;
}

std::string status_message(Status s) {
  std::string m = "cuBLAS status " + std::to_string(s);
  if (g_api.status_string) m += std::string(" (") + g_api.status_string(s) + ")";
  return m;
}

}  // namespace celer::cuda::cublas
