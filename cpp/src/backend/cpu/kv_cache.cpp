#include "backend/cpu/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "backend/cpu/quant.h"
#include "core/config.h"
#include "core/error.h"

namespace celer::cpu {

CpuKVCache::CpuKVCache(const KVLayout& layout) : KVCache(layout) {
  const KVStorage storage = layout.storage;
  if (storage == KVStorage::None) return;
  const int64_t slots = layout.layers * layout.batch * layout.kv_heads, max_seq = layout.max_seq, D = layout.head_dim;
  const DType elem = storage == KVStorage::F32 ? DType::F32 : storage == KVStorage::F16 ? DType::F16 : DType::I8;
  check_allocation(uint64_t(slots) * uint64_t(max_seq) * uint64_t(D) * 2 * dtype_size(elem), "a KV cache");
  k_ = Tensor::zeros(elem, {slots, max_seq, D});
  v_ = Tensor::zeros(elem, {slots, max_seq, D});
  if (storage == KVStorage::Int8Token || storage == KVStorage::Int8Channel) v_scale_ = Tensor::zeros(DType::F32, {slots, max_seq});
  if (storage == KVStorage::Int8Token) k_scale_ = Tensor::zeros(DType::F32, {slots, max_seq});
  if (storage == KVStorage::Int8Channel) {
    k_scale_ = Tensor::zeros(DType::F32, {slots, (max_seq + kKiviBlock - 1) / kKiviBlock, D});
    k_recent_ = Tensor::zeros(DType::F32, {slots, kKiviBlock, D});
    v_recent_ = Tensor::zeros(DType::F32, {slots, kKiviBlock, D});
  }
}

void CpuKVCache::quantize_kivi_block(int64_t s, int64_t block) {
  const int64_t G = kKiviBlock, D = layout_.head_dim, t0 = block * G, max_seq = layout_.max_seq;
  const float* kr = k_recent_.f32() + s * G * D;
  const float* vr = v_recent_.f32() + s * G * D;
  int8_t* kq = k_.as<int8_t>() + (s * max_seq + t0) * D;
  int8_t* vq = v_.as<int8_t>() + (s * max_seq + t0) * D;
  float* kscale = k_scale_.f32() + (s * k_scale_.shape[1] + block) * D;
  for (int64_t c = 0; c < D; ++c) kscale[c] = quantize_int8(kr + c, G, D, kq + c);  // per channel
  for (int64_t t = 0; t < G; ++t) v_scale_.f32()[s * max_seq + t0 + t] = quantize_int8(vr + t * D, D, 1, vq + t * D);
}

void CpuKVCache::write(int64_t layer, int64_t batch, int64_t n, int64_t p0, const float* k, const float* v) {
  const int64_t max_seq = layout_.max_seq, kv_heads = layout_.kv_heads;
  if (p0 + n > max_seq)
    throw ValueError("KV cache overflow: position " + std::to_string(p0 + n) + " > capacity " + std::to_string(max_seq));
  const int64_t D = layout_.head_dim, row = kv_heads * D, G = kKiviBlock;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < kv_heads; ++h) {
      const int64_t s = slot(layer, b, h);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = p0 + i, dst = (s * max_seq + t) * D;
        const float* ks = k + (b * n + i) * row + h * D;
        const float* vs = v + (b * n + i) * row + h * D;
        switch (layout_.storage) {
          case KVStorage::None: break;
          case KVStorage::F32:
            std::memcpy(k_.f32() + dst, ks, size_t(D) * 4);
            std::memcpy(v_.f32() + dst, vs, size_t(D) * 4);
            break;
          case KVStorage::F16:
            f32_to_f16_row(ks, D, k_.as<uint16_t>() + dst);
            f32_to_f16_row(vs, D, v_.as<uint16_t>() + dst);
            break;
          case KVStorage::Int8Token:
            k_scale_.f32()[s * max_seq + t] = quantize_int8(ks, D, 1, k_.as<int8_t>() + dst);
            v_scale_.f32()[s * max_seq + t] = quantize_int8(vs, D, 1, v_.as<int8_t>() + dst);
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

CpuKVCache::Rows CpuKVCache::read(int64_t layer, int64_t b, int64_t head, int64_t t0, int64_t t1, float* k_tmp,
                                  float* v_tmp) const {
  const int64_t max_seq = layout_.max_seq, D = layout_.head_dim;
  const int64_t s = slot(layer, b, head), base = s * max_seq * D, G = kKiviBlock;
  switch (layout_.storage) {
    case KVStorage::None:
    case KVStorage::F32:
      return {k_.f32() + base + t0 * D, v_.f32() + base + t0 * D};
    case KVStorage::F16:
      f16_to_f32_row(k_.as<uint16_t>() + base + t0 * D, (t1 - t0) * D, k_tmp);
      f16_to_f32_row(v_.as<uint16_t>() + base + t0 * D, (t1 - t0) * D, v_tmp);
      break;
    case KVStorage::Int8Token:
      for (int64_t t = t0; t < t1; ++t) {
        dequantize_int8(k_.as<int8_t>() + base + t * D, k_scale_.f32()[s * max_seq + t], D, k_tmp + (t - t0) * D);
        dequantize_int8(v_.as<int8_t>() + base + t * D, v_scale_.f32()[s * max_seq + t], D, v_tmp + (t - t0) * D);
      }
      break;
    case KVStorage::Int8Channel: {
      const int64_t done = length_ / G * G;  // positions below this are in quantized blocks
      for (int64_t t = t0; t < t1; ++t) {
        float* kd = k_tmp + (t - t0) * D;
        float* vd = v_tmp + (t - t0) * D;
        if (t < done) {
          dequantize_int8(k_.as<int8_t>() + base + t * D, k_scale_.f32() + (s * k_scale_.shape[1] + t / G) * D, D, kd);
          dequantize_int8(v_.as<int8_t>() + base + t * D, v_scale_.f32()[s * max_seq + t], D, vd);
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

uint64_t CpuKVCache::capacity_bytes() const {
  uint64_t total = 0;
  for (const Tensor* t : {&k_, &v_, &k_scale_, &v_scale_, &k_recent_, &v_recent_})
    if (!t->empty()) total += t->nbytes();
  return total;
}

}  // namespace celer::cpu
