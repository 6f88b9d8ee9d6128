#include "backend/cpu/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "backend/cpu/quant.h"
#include "core/config.h"
#include "core/error.h"

namespace celer {

void KVCache::allocate(KVStorage storage, int64_t num_layers, int64_t batch, int64_t max_seq, int64_t kv_heads,
                       int64_t head_dim) {
  storage_ = storage;
  layers_ = num_layers;
  batch_ = batch;
  max_seq_ = max_seq;
  kv_heads_ = kv_heads;
  D_ = head_dim;
  length_ = 0;
  k_ = v_ = k_scale_ = v_scale_ = k_recent_ = v_recent_ = Tensor();
  if (storage == KVStorage::None) return;
  const int64_t slots = layers_ * batch_ * kv_heads_;
  const DType elem = storage == KVStorage::F32 ? DType::F32 : storage == KVStorage::F16 ? DType::F16 : DType::I8;
  check_allocation(uint64_t(slots) * uint64_t(max_seq) * uint64_t(D_) * 2 * dtype_size(elem), "a KV cache");
  k_ = Tensor::zeros(elem, {slots, max_seq, D_});
  v_ = Tensor::zeros(elem, {slots, max_seq, D_});
  if (storage == KVStorage::Int8Token || storage == KVStorage::Int8Channel) v_scale_ = Tensor::zeros(DType::F32, {slots, max_seq});
  if (storage == KVStorage::Int8Token) k_scale_ = Tensor::zeros(DType::F32, {slots, max_seq});
  if (storage == KVStorage::Int8Channel) {
    k_scale_ = Tensor::zeros(DType::F32, {slots, (max_seq + kKiviBlock - 1) / kKiviBlock, D_});
    k_recent_ = Tensor::zeros(DType::F32, {slots, kKiviBlock, D_});
    v_recent_ = Tensor::zeros(DType::F32, {slots, kKiviBlock, D_});
  }
}

void KVCache::clear() { length_ = 0; }

void KVCache::quantize_kivi_block(int64_t s, int64_t block) {
  const int64_t G = kKiviBlock, D = D_, t0 = block * G;
  const float* kr = k_recent_.f32() + s * G * D;
  const float* vr = v_recent_.f32() + s * G * D;
  int8_t* kq = k_.as<int8_t>() + (s * max_seq_ + t0) * D;
  int8_t* vq = v_.as<int8_t>() + (s * max_seq_ + t0) * D;
  float* kscale = k_scale_.f32() + (s * k_scale_.shape[1] + block) * D;
  for (int64_t c = 0; c < D; ++c) kscale[c] = cpu::quantize_int8(kr + c, G, D, kq + c);  // per channel
  for (int64_t t = 0; t < G; ++t) v_scale_.f32()[s * max_seq_ + t0 + t] = cpu::quantize_int8(vr + t * D, D, 1, vq + t * D);
}

void KVCache::write(int64_t layer, int64_t batch, int64_t n, int64_t p0, const float* k, const float* v) {
  if (p0 + n > max_seq_)
    throw ValueError("KV cache overflow: position " + std::to_string(p0 + n) + " > capacity " + std::to_string(max_seq_));
  const int64_t D = D_, row = kv_heads_ * D, G = kKiviBlock;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < kv_heads_; ++h) {
      const int64_t s = slot(layer, b, h);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = p0 + i, dst = (s * max_seq_ + t) * D;
        const float* ks = k + (b * n + i) * row + h * D;
        const float* vs = v + (b * n + i) * row + h * D;
        switch (storage_) {
          case KVStorage::None: break;
          case KVStorage::F32:
            std::memcpy(k_.f32() + dst, ks, size_t(D) * 4);
            std::memcpy(v_.f32() + dst, vs, size_t(D) * 4);
            break;
          case KVStorage::F16:
            cpu::f32_to_f16_row(ks, D, k_.as<uint16_t>() + dst);
            cpu::f32_to_f16_row(vs, D, v_.as<uint16_t>() + dst);
            break;
          case KVStorage::Int8Token:
            k_scale_.f32()[s * max_seq_ + t] = cpu::quantize_int8(ks, D, 1, k_.as<int8_t>() + dst);
            v_scale_.f32()[s * max_seq_ + t] = cpu::quantize_int8(vs, D, 1, v_.as<int8_t>() + dst);
            break;
          case KVStorage::Int8Channel:
            std::memcpy(k_recent_.f32() + (s * G + t % G) * D, ks, size_t(D) * 4);
            std::memcpy(v_recent_.f32() + (s * G + t % G) * D, vs, size_t(D) * 4);
            if (t % G == G - 1) quantize_kivi_block(s, t / G);
            break;
        }
      }
    }
  length_ = std::max(length_, p0 + n);
}

KVCache::Rows KVCache::read(int64_t layer, int64_t b, int64_t head, int64_t t0, int64_t t1, float* k_tmp,
                            float* v_tmp) const {
  const int64_t s = slot(layer, b, head), D = D_, base = s * max_seq_ * D, G = kKiviBlock;
  switch (storage_) {
    case KVStorage::None:
    case KVStorage::F32:
      return {k_.f32() + base + t0 * D, v_.f32() + base + t0 * D};
    case KVStorage::F16:
      cpu::f16_to_f32_row(k_.as<uint16_t>() + base + t0 * D, (t1 - t0) * D, k_tmp);
      cpu::f16_to_f32_row(v_.as<uint16_t>() + base + t0 * D, (t1 - t0) * D, v_tmp);
      break;
    case KVStorage::Int8Token:
      for (int64_t t = t0; t < t1; ++t) {
        cpu::dequantize_int8(k_.as<int8_t>() + base + t * D, k_scale_.f32()[s * max_seq_ + t], D, k_tmp + (t - t0) * D);
        cpu::dequantize_int8(v_.as<int8_t>() + base + t * D, v_scale_.f32()[s * max_seq_ + t], D, v_tmp + (t - t0) * D);
      }
      break;
    case KVStorage::Int8Channel: {
      const int64_t done = length_ / G * G;  // positions below this are in quantized blocks
      for (int64_t t = t0; t < t1; ++t) {
        float* kd = k_tmp + (t - t0) * D;
        float* vd = v_tmp + (t - t0) * D;
        if (t < done) {
          cpu::dequantize_int8(k_.as<int8_t>() + base + t * D, k_scale_.f32() + (s * k_scale_.shape[1] + t / G) * D, D, kd);
          cpu::dequantize_int8(v_.as<int8_t>() + base + t * D, v_scale_.f32()[s * max_seq_ + t], D, vd);
        } else {
          std::memcpy(kd, k_recent_.f32() + (s * G + t % G) * D, size_t(D) * 4);
          std::memcpy(vd, v_recent_.f32() + (s * G + t % G) * D, size_t(D) * 4);
        }
      }
      break;
    }
  }
  return {k_tmp, v_tmp};
}

uint64_t KVCache::bytes_for(int64_t tokens, int64_t rows) const {
  const uint64_t slots = uint64_t(layers_ * rows * kv_heads_), D = uint64_t(D_), T = uint64_t(tokens);
  switch (storage_) {
    case KVStorage::None: return 0;
    case KVStorage::F32: return slots * T * D * 4 * 2;
    case KVStorage::F16: return slots * T * D * 2 * 2;
    case KVStorage::Int8Token: return slots * T * (D + 4) * 2;
    case KVStorage::Int8Channel: {
      const uint64_t G = kKiviBlock, blocks = T / G, recent = T % G;
      return slots * (blocks * (G * D + D * 4) + blocks * G * (D + 4) + recent * D * 4 * 2);
    }
  }
  return 0;
}

uint64_t KVCache::capacity_bytes() const {
  uint64_t total = 0;
  for (const Tensor* t : {&k_, &v_, &k_scale_, &v_scale_, &k_recent_, &v_recent_})
    if (!t->empty()) total += t->nbytes();
  return total;
}

}  // namespace celer
