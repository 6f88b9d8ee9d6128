#include "backend/cuda/gemm.h"

#include <library_types.h>

#include <limits>

#include "backend/cuda/ops.h"

namespace celer::cuda {
namespace {

void check_status(cublas::Status s, const char* what) {
  if (s != cublas::kSuccess) throw CudaError(std::string(what) + " failed: " + cublas::status_message(s));
}

int as_int(int64_t v, const char* what) {
  if (v > std::numeric_limits<int>::max()) throw CudaError(std::string("gemm: ") + what + " exceeds INT_MAX");
  return int(v);
}

}  // namespace

Gemm::Gemm(cudaStream_t stream, const std::vector<std::string>& candidates) : stream_(stream) {
  api_ = &cublas::load(candidates);
  check_status(api_->create(&handle_), "cublasCreate_v2");
  const cublas::Status s = api_->set_stream(handle_, stream_);
  if (s != cublas::kSuccess) {
    api_->destroy(handle_);
    check_status(s, "cublasSetStream_v2");
  }
}

Gemm::~Gemm() {
  if (handle_) api_->destroy(handle_);
}

int Gemm::cublas_version() const {
  int v = 0;
  check_status(api_->get_version(handle_, &v), "cublasGetVersion_v2");
  return v;
}

// Row-major y = x W^T is column-major y^T = W x^T: W (N, K) row-major is the column-major
// K x N matrix W^T, so op(A) = T with lda = K; x (M, K) row-major is column-major x^T (K x M),
// op(B) = N with ldb = K; y^T is N x M column-major with ldc = N.
void Gemm::gemm(float* y, const void* x, const void* w, int type, int64_t M, int64_t K, int64_t N, bool accumulate) {
  if (M == 0 || N == 0) return;
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check_status(api_->gemm_ex(handle_, cublas::kOpT, cublas::kOpN, as_int(N, "N"), as_int(M, "M"), as_int(K, "K"),
                             &alpha, w, type, int(K), x, type, int(K), &beta, y, CUDA_R_32F, int(N),
                             cublas::kCompute32F, cublas::kGemmDefault),
               "cublasGemmEx");
}

void Gemm::nt_f32(float* y, const float* x, const float* w, int64_t M, int64_t K, int64_t N, bool accumulate) {
  gemm(y, x, w, CUDA_R_32F, M, K, N, accumulate);
}

void Gemm::nt_bf16(float* y, const float* x, const uint16_t* w, uint16_t* x_bf16, int64_t M, int64_t K, int64_t N,
                   bool accumulate) {
  f32_to_bf16(x_bf16, x, M * K, stream_);
  gemm(y, x_bf16, w, CUDA_R_16BF, M, K, N, accumulate);
}

}  // namespace celer::cuda
