// y (M, N) = x (M, K) @ W (N, K)^T on the GPU through cuBLAS (loaded at run time), the CUDA
// side of backend/cpu/linear.h. fp32 weights: fp32 GEMM without TF32 (cuBLAS's default math
// mode). bf16 weights: x is rounded to bf16 (cublasGemmEx wants A and B of one type), the
// products are summed in fp32 and y stays fp32.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda/cublas_loader.h"
#include "backend/cuda/device_buffer.h"

namespace celer::cuda {

class Gemm {
 public:
  // Loads cuBLAS (see cublas::load) and creates a handle bound to `stream`.
  explicit Gemm(cudaStream_t stream = nullptr, const std::vector<std::string>& cublas_candidates = {});
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  void nt_f32(float* y, const float* x, const float* w, int64_t M, int64_t K, int64_t N, bool accumulate = false);
  // w: bf16 bits (N, K). x_bf16 is scratch of M * K uint16 for the rounded activations.
  void nt_bf16(float* y, const float* x, const uint16_t* w, uint16_t* x_bf16, int64_t M, int64_t K, int64_t N,
               bool accumulate = false);
  int cublas_version() const;

 private:
  void gemm(float* y, const void* x, const void* w, int type, int64_t M, int64_t K, int64_t N, bool accumulate);
  const cublas::Api* api_ = nullptr;
  cublas::Handle handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace celer::cuda
