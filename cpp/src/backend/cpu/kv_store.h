// The CPU KV cache's building blocks (kv_cache.h puts them together):
//  - KVStore: one of K or V of every (row, head) of one storage layer, in its storage
//    (core/versions.h): fp32, fp16, int8 (symmetric), int4 / int2 (asymmetric), with scale groups
//    along a token's channels or a channel's tokens, and the float32 residual window.
//  - MergedStore: a MiniCache pair's K or V: per token one direction (the SLERP midpoint of the
//    two layers' unit vectors) and each layer's norm, or, for a retained token, both vectors.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "core/versions.h"

namespace celer::cpu {

class KVStore {
 public:
  // rows: (row, head) slots; capacity: tokens per slot; residual: KIVI's R (0: none).
  KVStore(const KVQuant& quant, int64_t rows, int64_t capacity, int64_t head_dim, int64_t residual);

  // Stores token x (head_dim floats) of `row` at index t (its position, or its slot under
  // eviction). With a residual window, t goes to the window first and the window is quantized
  // when it fills (tokens must then arrive in order).
  void write(int64_t row, int64_t t, const float* x);
  // Tokens [t0, t1) of `row` as float rows into out, `length` tokens written in all.
  void read(int64_t row, int64_t t0, int64_t t1, int64_t length, float* out) const;
  // The float32 rows themselves for an fp32 store (no copy), else null.
  const float* f32_rows(int64_t row, int64_t t0) const;
  // Moves token `from` of `row` to index `to` (eviction's compaction; per-token storage only).
  void move(int64_t row, int64_t from, int64_t to);
  uint64_t capacity_bytes() const;

 private:
  void quantize_token(int64_t row, int64_t t, const float* x);
  void quantize_channel_groups(int64_t row, int64_t t0, const float* window);  // residual tokens t0.. into groups

  KVQuant q_;
  int64_t rows_, capacity_, D_, residual_, bits_, groups_ = 1, group_ = 0, token_bytes_ = 0, group_bytes_ = 0;
  Tensor values_;    // f32 / fp16 bits (rows, capacity, D); quantized: packed bytes
  Tensor scales_, mins_;  // per token: (rows, capacity, groups); per channel: (rows, capacity / group, D)
  Tensor window_;    // residual: (rows, residual, D) float32
};

class MergedStore {
 public:
  MergedStore(KVStorage storage, int64_t rows, int64_t capacity, int64_t head_dim, int64_t longest_step, double angle);

  // The pair's first layer: its new tokens wait here (step positions p0 + i) for the second's.
  void hold_first(int64_t row, int64_t i, const float* x);
  // The second layer's token t (step index i): merged with the held first-layer token.
  void merge(int64_t row, int64_t t, int64_t i, const float* x);
  // Tokens [t0, t1) of `row` as layer `which` (0: first, 1: second) sees them: merged ones
  // rebuilt from the direction and that layer's norm; tokens from merged_upto on (the first
  // layer in the current step) from the held values of step p0.
  void read(int64_t row, int64_t which, int64_t t0, int64_t t1, int64_t merged_upto, int64_t p0, float* out) const;
  int64_t retained() const { return retained_; }  // tokens kept whole, every row
  void clear() { retained_ = 0; }
  uint64_t capacity_bytes() const;

 private:
  void store_vector(int64_t row, int64_t t, const float* x, Tensor& into);
  void load_vector(int64_t row, int64_t t, const Tensor& from, float* out) const;

  KVStorage storage_;
  int64_t rows_, capacity_, D_, longest_step_;
  double angle_;
  Tensor direction_, second_;  // (rows, capacity, D): the direction (or a retained first vector); a retained second
  Tensor norms_;               // (rows, capacity, 2) float32
  Tensor kept_;                // (rows, capacity) uint8: retained whole
  Tensor held_;                // (rows, longest_step, D) float32: the first layer's current step
  std::vector<float> mid_;     // merge's scratch (D): nothing is allocated per token
  int64_t retained_ = 0;
};

}  // namespace celer::cpu
