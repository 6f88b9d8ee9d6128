// The two matrix products of one decode step's attention over a tile of the KV cache, for the
// group of query heads that share a KV head, written for AVX-512 (attention_avx512.cpp): with
// a handful of query rows, a general GEMM spends more time packing the tile than multiplying.
// cache_attention uses them at the avx512 level when head_dim is a multiple of 16.
#pragma once
#include <cstdint>

namespace celer::cpu {

// Keys per block of attention_scores: kt_scratch holds D * kAttentionKeyBlock floats.
constexpr int64_t kAttentionKeyBlock = 16;

// S[g * lds + t] = scale * dot(q_g, k_t) for g < G and t < T, with q_g = q + g * D and
// k_t = k + t * D (f32 rows). D % 16 == 0.
void attention_scores_avx512(const float* q, int64_t G, const float* k, int64_t T, int64_t D, float scale, float* S,
                             int64_t lds, float* kt_scratch);

// O[g * ldo + d] += sum_t P[g * ldp + t] * v[t * D + d] for g < G, d < D. D % 16 == 0.
void attention_values_avx512(const float* P, int64_t ldp, int64_t G, const float* v, int64_t T, int64_t D, float* O,
                             int64_t ldo);

}  // namespace celer::cpu
