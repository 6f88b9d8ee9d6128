// cuBLAS, loaded at run time with dlopen: the build needs no cuBLAS headers or library (the
// build machines have none), and a machine without cuBLAS still imports celerinfer._cuda; the
// GEMM then fails with an error naming every place that was tried.
// The few entry points and enum values used are declared here from the cuBLAS documentation.
#pragma once
#include <cuda_runtime.h>

#include <string>
#include <vector>

namespace celer::cuda::cublas {

using Handle = void*;  // cublasHandle_t is an opaque pointer
using Status = int;    // cublasStatus_t
constexpr Status kSuccess = 0;
// cublasOperation_t
constexpr int kOpN = 0;
constexpr int kOpT = 1;
// cublasComputeType_t
constexpr int kCompute32F = 68;
// cublasGemmAlgo_t
constexpr int kGemmDefault = -1;

struct Api {
  Status (*create)(Handle*) = nullptr;                   // cublasCreate_v2
  Status (*destroy)(Handle) = nullptr;                   // cublasDestroy_v2
  Status (*set_stream)(Handle, cudaStream_t) = nullptr;  // cublasSetStream_v2
  Status (*get_version)(Handle, int*) = nullptr;         // cublasGetVersion_v2
  // cublasGemmEx: C = alpha op(A) op(B) + beta C, column-major; data types are cudaDataType_t
  // (library_types.h), compute type cublasComputeType_t, algo cublasGemmAlgo_t.
  Status (*gemm_ex)(Handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* A, int a_type,
                    int lda, const void* B, int b_type, int ldb, const void* beta, void* C, int c_type, int ldc,
                    int compute_type, int algo) = nullptr;
  const char* (*status_string)(Status) = nullptr;  // cublasGetStatusString (optional)
};

// Loads cuBLAS once per process: the candidates first (paths or sonames, in order), then
// libcublas.so.13, .so.12, .so from the loader's search path. Returns the API or throws
// CudaError listing what was tried and why each failed. Later calls return the loaded API
// (the candidates are then ignored).
const Api& load(const std::vector<std::string>& candidates = {});
bool loaded();
std::string loaded_path();  // "" before a successful load

// "CUBLAS status N (<string when the library provides it>)"
std::string status_message(Status s);

}  // namespace celer::cuda::cublas
