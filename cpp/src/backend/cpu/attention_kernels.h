// The two matrix products of attention over one tile of the KV cache and the online softmax
// between them, written for AVX-512 (attention_avx512.cpp) and for AVX2 (attention_avx2.cpp,
// the same functions with the suffix _avx2, in 8-lane registers), for decoding (the group's
// query heads at one position) and for prefill (one head's rows, a causal triangle):
// register-blocked multiply-adds on keys turned into columns once per tile, with no general
// GEMM's packing and no work on key blocks that a whole block of rows cannot see.
// cache_attention uses them at the avx512 level when head_dim is a multiple of 16, at the
// avx2 level when it is a multiple of 8.
#pragma once
#include <algorithm>
#include <cstdint>

namespace celer::cpu {

// Keys per column block: the layout of transpose_keys_avx512.
constexpr int64_t kAttentionKeyBlock = 16;

// The T keys (rows of D floats) as columns, block by block: kt[(t / 16) * D * 16 + d * 16 +
// t % 16] = k[t * D + d], zeros past T. kt holds D * (T rounded up to 16) floats. D % 16 == 0.
void transpose_keys_avx512(const float* k, int64_t T, int64_t D, float* kt);

// S[i * lds + t] = scale * dot(q_i, k_t) for rows i < R (q_i = q + i * qs) and the keys row i
// can see, t < min(T, i + causal), from the columns kt of transpose_keys_avx512 (causal >= T:
// every row sees every key). Entries a row cannot see may be written or not: the caller masks
// them. D % 16 == 0.
void attention_scores_avx512(const float* q, int64_t qs, int64_t R, const float* kt, int64_t T, int64_t D,
                             int64_t causal, float scale, float* S, int64_t lds);

// One row's step of the online softmax over a tile: s holds its T scores, of which keys
// [0, visible) with valid[t] != 0 count (valid null: all of them). When some count, s becomes
// exp(score - new max) there and 0 everywhere else, *max and *sum are updated and the return
// value is exp(old max - new max), the factor for what earlier tiles summed (0 on the row's
// first tile). When none counts, s becomes 0 and the return value is 1 (nothing changes).
float softmax_tile_row_avx512(float* s, int64_t T, int64_t visible, const uint8_t* valid, float* max, float* sum);

// O[i * ldo + d] += sum_t P[i * ldp + t] * v[t * D + d] for rows i < R, d < D, over the keys
// t < min(T, i + causal); P must be 0 at the keys its row cannot see (it is read up to the
// last key some row of a 4-row block can see). D % 16 == 0.
void attention_values_avx512(const float* P, int64_t ldp, int64_t R, const float* v, int64_t T, int64_t D,
                             int64_t causal, float* O, int64_t ldo);

// The AVX2 versions: the same contracts and layout, D % 8 == 0.
void transpose_keys_avx2(const float* k, int64_t T, int64_t D, float* kt);
void attention_scores_avx2(const float* q, int64_t qs, int64_t R, const float* kt, int64_t T, int64_t D,
                           int64_t causal, float scale, float* S, int64_t lds);
float softmax_tile_row_avx2(float* s, int64_t T, int64_t visible, const uint8_t* valid, float* max, float* sum);
void attention_values_avx2(const float* P, int64_t ldp, int64_t R, const float* v, int64_t T, int64_t D,
                           int64_t causal, float* O, int64_t ldo);

// Keys that rows [i0, i0 + n) can see: those before the last row's limit, at most T.
inline int64_t visible_keys(int64_t i0, int64_t n, int64_t causal, int64_t T) {
  return std::clamp<int64_t>(i0 + n - 1 + causal, 0, T);
}

// One SIMD level's kernels, as cache_attention calls them.
struct AttentionKernels {
  void (*transpose_keys)(const float*, int64_t, int64_t, float*);
  void (*scores)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float, float*, int64_t);
  float (*softmax_tile_row)(float*, int64_t, int64_t, const uint8_t*, float*, float*);
  void (*values)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float*, int64_t);
};

}  // namespace celer::cpu
