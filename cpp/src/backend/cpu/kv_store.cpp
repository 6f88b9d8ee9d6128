#include "backend/cpu/kv_store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <utility>

#include "backend/cpu/quant.h"
#include "core/config.h"
#include "core/error.h"

namespace celer::cpu {

namespace {

// bits-wide value i of a packed run: little-endian within each byte.
inline void put_bits(uint8_t* packed, int64_t i, int bits, uint32_t q) {
  const int64_t bit = i * bits;
  packed[bit / 8] = uint8_t(packed[bit / 8] & ~(((1u << bits) - 1) << (bit % 8))) | uint8_t(q << (bit % 8));
}
inline uint32_t get_bits(const uint8_t* packed, int64_t i, int bits) {
  const int64_t bit = i * bits;
  return (packed[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
}

// Asymmetric quantization of n values x[i * stride] to `bits` (KIVI's): min, scale =
// (max - min) / (2^bits - 1), q = round_half_even((x - min) / scale) in [0, 2^bits - 1]; a
// constant group has scale 0 and q 0. Writes the values at packed indices first.. first + n;
// returns {scale, min}.
std::pair<float, float> quantize_asymmetric(const float* x, int64_t n, int64_t stride, int bits, uint8_t* packed,
                                            int64_t first) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) lo = std::min(lo, x[i * stride]), hi = std::max(hi, x[i * stride]);
  const float levels = float((1 << bits) - 1), scale = (hi - lo) / levels;
  for (int64_t i = 0; i < n; ++i) {
    const float v = scale > 0.0f ? std::nearbyint((x[i * stride] - lo) / scale) : 0.0f;
    put_bits(packed, first + i, bits, uint32_t(std::min(levels, std::max(0.0f, v))));
  }
  return {scale, lo};
}

inline float dequantize_asymmetric(const uint8_t* packed, int64_t i, int bits, float scale, float min) {
  return float(get_bits(packed, i, bits)) * scale + min;
}

}  // namespace

KVStore::KVStore(const KVQuant& quant, int64_t rows, int64_t capacity, int64_t head_dim, int64_t residual)
    : q_(quant), rows_(rows), capacity_(capacity), D_(head_dim), residual_(quant.quantized() ? residual : 0),
      bits_(kv_storage_bits(quant.storage)) {
  const uint64_t n = uint64_t(rows) * uint64_t(capacity);
  if (!q_.quantized()) {
    const DType elem = q_.storage == KVStorage::F32 ? DType::F32 : DType::F16;
    check_allocation(n * uint64_t(D_) * dtype_size(elem), "a KV cache");
    values_ = Tensor::zeros(elem, {rows, capacity, D_});
    return;
  }
  if (q_.along == QuantAlong::Token) {
    group_ = q_.group == 0 ? D_ : std::min(q_.group, D_);
    groups_ = D_ / group_;
    token_bytes_ = (D_ * bits_ + 7) / 8;
    check_allocation(n * uint64_t(token_bytes_ + 8 * groups_), "a KV cache");
    values_ = Tensor::zeros(DType::U8, {rows, capacity, token_bytes_});
    scales_ = Tensor::zeros(DType::F32, {rows, capacity, groups_});
    if (q_.asymmetric()) mins_ = Tensor::zeros(DType::F32, {rows, capacity, groups_});
  } else {
    group_ = q_.group;
    group_bytes_ = (group_ * bits_ + 7) / 8;
    const int64_t blocks = (capacity + group_ - 1) / group_;
    check_allocation(uint64_t(rows) * uint64_t(blocks) * uint64_t(D_) * uint64_t(group_bytes_ + 8), "a KV cache");
    values_ = Tensor::zeros(DType::U8, {rows, blocks, D_, group_bytes_});
    scales_ = Tensor::zeros(DType::F32, {rows, blocks, D_});
    if (q_.asymmetric()) mins_ = Tensor::zeros(DType::F32, {rows, blocks, D_});
  }
  if (residual_ > 0) window_ = Tensor::zeros(DType::F32, {rows, residual_, D_});
}

void KVStore::quantize_token(int64_t row, int64_t t, const float* x) {
  const int64_t at = row * capacity_ + t;
  uint8_t* packed = values_.as<uint8_t>() + at * token_bytes_;
  float* scale = scales_.f32() + at * groups_;
  for (int64_t g = 0; g < groups_; ++g) {
    const float* xg = x + g * group_;
    if (!q_.asymmetric()) {
      scale[g] = quantize_int8(xg, group_, 1, reinterpret_cast<int8_t*>(packed) + g * group_);
    } else {
      std::tie(scale[g], mins_.f32()[at * groups_ + g]) =
          quantize_asymmetric(xg, group_, 1, int(bits_), packed, g * group_);
    }
  }
}

void KVStore::quantize_channel_groups(int64_t row, int64_t t0, const float* window) {
  for (int64_t g0 = 0; g0 < residual_; g0 += group_) {
    const int64_t block = (t0 + g0) / group_, at = row * ((capacity_ + group_ - 1) / group_) + block;
    const float* xs = window + g0 * D_;
    for (int64_t c = 0; c < D_; ++c) {  // channel c over the group's tokens: stride D
      uint8_t* packed = values_.as<uint8_t>() + (at * D_ + c) * group_bytes_;
      if (!q_.asymmetric())
        scales_.f32()[at * D_ + c] = quantize_int8(xs + c, group_, D_, reinterpret_cast<int8_t*>(packed), 1);
      else
        std::tie(scales_.f32()[at * D_ + c], mins_.f32()[at * D_ + c]) =
            quantize_asymmetric(xs + c, group_, D_, int(bits_), packed, 0);
    }
  }
}

void KVStore::write(int64_t row, int64_t t, const float* x) {
  const int64_t at = row * capacity_ + t;
  switch (q_.storage) {
    case KVStorage::F32: return void(std::memcpy(values_.f32() + at * D_, x, size_t(D_) * 4));
    case KVStorage::F16: return f32_to_f16_row(x, D_, values_.as<uint16_t>() + at * D_);
    default: break;
  }
  if (residual_ == 0) return quantize_token(row, t, x);  // per token, at once
  float* window = window_.f32() + row * residual_ * D_;
  std::memcpy(window + (t % residual_) * D_, x, size_t(D_) * 4);
  if (t % residual_ != residual_ - 1) return;
  const int64_t t0 = t + 1 - residual_;  // the window is full: its tokens go into the quantized store
  if (q_.along == QuantAlong::Channel) return quantize_channel_groups(row, t0, window);
  for (int64_t i = 0; i < residual_; ++i) quantize_token(row, t0 + i, window + i * D_);
}

void KVStore::read(int64_t row, int64_t t0, int64_t t1, int64_t length, float* out) const {
  const int64_t at0 = row * capacity_;
  if (q_.storage == KVStorage::F32) return void(std::memcpy(out, values_.f32() + (at0 + t0) * D_, size_t((t1 - t0) * D_) * 4));
  if (q_.storage == KVStorage::F16) return f16_to_f32_row(values_.as<uint16_t>() + (at0 + t0) * D_, (t1 - t0) * D_, out);
  const int64_t done = residual_ > 0 ? length - length % residual_ : length;  // quantized below this
  const int64_t blocks = (capacity_ + group_ - 1) / std::max<int64_t>(group_, 1);
  for (int64_t t = t0; t < t1; ++t, out += D_) {
    if (t >= done) {
      std::memcpy(out, window_.f32() + (row * residual_ + t % residual_) * D_, size_t(D_) * 4);
      continue;
    }
    if (q_.along == QuantAlong::Token) {
      const uint8_t* packed = values_.as<uint8_t>() + (at0 + t) * token_bytes_;
      const float* scale = scales_.f32() + (at0 + t) * groups_;
      if (!q_.asymmetric()) {
        for (int64_t g = 0; g < groups_; ++g)
          dequantize_int8(reinterpret_cast<const int8_t*>(packed) + g * group_, scale[g], group_, out + g * group_);
      } else {
        const float* mins = mins_.f32() + (at0 + t) * groups_;
        for (int64_t c = 0; c < D_; ++c)
          out[c] = dequantize_asymmetric(packed, c, int(bits_), scale[c / group_], mins[c / group_]);
      }
    } else {
      const int64_t at = row * blocks + t / group_, i = t % group_;
      for (int64_t c = 0; c < D_; ++c) {
        const uint8_t* packed = values_.as<uint8_t>() + (at * D_ + c) * group_bytes_;
        const float scale = scales_.f32()[at * D_ + c];
        out[c] = q_.asymmetric() ? dequantize_asymmetric(packed, i, int(bits_), scale, mins_.f32()[at * D_ + c])
                                 : float(reinterpret_cast<const int8_t*>(packed)[i]) * scale;
      }
    }
  }
}

const float* KVStore::f32_rows(int64_t row, int64_t t0) const {
  return q_.storage == KVStorage::F32 ? values_.f32() + (row * capacity_ + t0) * D_ : nullptr;
}

void KVStore::move(int64_t row, int64_t from, int64_t to) {
  const int64_t a = row * capacity_ + from, b = row * capacity_ + to;
  const size_t width = q_.quantized() ? size_t(token_bytes_) : size_t(D_) * dtype_size(values_.dtype);
  std::memmove(values_.as<uint8_t>() + size_t(b) * width, values_.as<uint8_t>() + size_t(a) * width, width);
  if (!q_.quantized()) return;
  std::memmove(scales_.f32() + b * groups_, scales_.f32() + a * groups_, size_t(groups_) * 4);
  if (q_.asymmetric()) std::memmove(mins_.f32() + b * groups_, mins_.f32() + a * groups_, size_t(groups_) * 4);
}

uint64_t KVStore::capacity_bytes() const {
  uint64_t total = 0;
  for (const Tensor* t : {&values_, &scales_, &mins_, &window_})
    if (!t->empty()) total += t->nbytes();
  return total;
}

MergedStore::MergedStore(KVStorage storage, int64_t rows, int64_t capacity, int64_t head_dim, int64_t longest_step,
                         double angle)
    : storage_(storage), rows_(rows), capacity_(capacity), D_(head_dim), longest_step_(longest_step), angle_(angle) {
  const DType elem = storage == KVStorage::F32 ? DType::F32 : DType::F16;
  check_allocation(uint64_t(rows) * uint64_t(capacity) * uint64_t(D_) * 2 * dtype_size(elem), "a merged KV cache");
  direction_ = Tensor::zeros(elem, {rows, capacity, D_});
  second_ = Tensor::zeros(elem, {rows, capacity, D_});
  norms_ = Tensor::zeros(DType::F32, {rows, capacity, 2});
  kept_ = Tensor::zeros(DType::U8, {rows, capacity});
  held_ = Tensor::zeros(DType::F32, {rows, std::max<int64_t>(1, longest_step), D_});
  mid_.resize(size_t(D_));
}

void MergedStore::store_vector(int64_t row, int64_t t, const float* x, Tensor& into) {
  const int64_t at = (row * capacity_ + t) * D_;
  if (storage_ == KVStorage::F32) std::memcpy(into.f32() + at, x, size_t(D_) * 4);
  else f32_to_f16_row(x, D_, into.as<uint16_t>() + at);
}

void MergedStore::load_vector(int64_t row, int64_t t, const Tensor& from, float* out) const {
  const int64_t at = (row * capacity_ + t) * D_;
  if (storage_ == KVStorage::F32) std::memcpy(out, from.f32() + at, size_t(D_) * 4);
  else f16_to_f32_row(from.as<uint16_t>() + at, D_, out);
}

void MergedStore::hold_first(int64_t row, int64_t i, const float* x) {
  std::memcpy(held_.f32() + (row * longest_step_ + i) * D_, x, size_t(D_) * 4);
}

void MergedStore::merge(int64_t row, int64_t t, int64_t i, const float* b) {
  const float* a = held_.f32() + (row * longest_step_ + i) * D_;
  double na = 0, nb = 0, dot = 0;
  for (int64_t c = 0; c < D_; ++c) na += double(a[c]) * a[c], nb += double(b[c]) * b[c], dot += double(a[c]) * b[c];
  na = std::sqrt(na), nb = std::sqrt(nb);
  const double cosine = na > 0 && nb > 0 ? std::clamp(dot / (na * nb), -1.0, 1.0) : -1.0;
  uint8_t& kept = kept_.as<uint8_t>()[row * capacity_ + t];
  float* norms = norms_.f32() + (row * capacity_ + t) * 2;
  norms[0] = float(na), norms[1] = float(nb);
  if (std::acos(cosine) > angle_) {  // too far apart to share a direction: both kept whole
    kept = 1;
    ++retained_;
    store_vector(row, t, a, direction_);
    store_vector(row, t, b, second_);
    return;
  }
  kept = 0;
  // SLERP at t = 1/2 of two unit vectors is their normalized sum.
  float* mid = mid_.data();
  double nm = 0;
  for (int64_t c = 0; c < D_; ++c) {
    mid[c] = float(a[c] / na + b[c] / nb);
    nm += double(mid[c]) * mid[c];
  }
  nm = std::sqrt(nm);
  for (int64_t c = 0; c < D_; ++c) mid[c] = float(mid[c] / nm);
  store_vector(row, t, mid, direction_);
}

void MergedStore::read(int64_t row, int64_t which, int64_t t0, int64_t t1, int64_t merged_upto, int64_t p0,
                       float* out) const {
  for (int64_t t = t0; t < t1; ++t, out += D_) {
    if (t >= merged_upto) {  // the first layer's own tokens of this step, not merged yet
      std::memcpy(out, held_.f32() + (row * longest_step_ + (t - p0)) * D_, size_t(D_) * 4);
      continue;
    }
    const bool kept = kept_.as<uint8_t>()[row * capacity_ + t] != 0;
    if (kept) {
      load_vector(row, t, which == 0 ? direction_ : second_, out);
      continue;
    }
    load_vector(row, t, direction_, out);
    const float norm = norms_.f32()[(row * capacity_ + t) * 2 + which];
    for (int64_t c = 0; c < D_; ++c) out[c] *= norm;
  }
}

uint64_t MergedStore::capacity_bytes() const {
  return direction_.nbytes() + second_.nbytes() + norms_.nbytes() + kept_.nbytes() + held_.nbytes();
}

}  // namespace celer::cpu
