// llama.cpp's block-quantized formats (GGML types), defined here once: their byte layouts, the
// exact dequantization every backend and the readers hold themselves to, and the reference
// quantization (llama.cpp's own rounding, so a file we write holds what llama.cpp would write).
//
//   Q8_0  32 values: fp16 d, int8 q[32];                    x = q * d
//   Q4_0  32 values: fp16 d, 16 bytes of nibbles;           x = (q - 8) * d
//   Q4_1  32 values: fp16 d, fp16 m, 16 bytes of nibbles;   x = q * d + m
//         (nibbles: byte j holds value j in its low half and value j + 16 in its high half)
//   Q4_K  256 values in 8 groups of 32: fp16 d, fp16 dmin, 12 bytes packing 8 six-bit
//         (scale, min) pairs, 128 bytes of nibbles; x = (d * scale_g) * q - (dmin * min_g)
//   Q6_K  256 values in 16 groups of 16: 128 bytes of low nibbles, 64 bytes of high 2-bit
//         pairs, int8 scales[16], fp16 d;                   x = (d * scale_g) * (q - 32)
// Products are float32, in the order written here (the order llama.cpp's reference uses).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace celer {

struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 &&
              sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210, "GGML block sizes");

// The six-bit (scale, min) pair g (0..7) of a Q4_K block.
void q4_k_scale_min(const uint8_t* scales, int g, uint8_t* scale, uint8_t* min);

// out[0, n) = the first n values the blocks hold (n may end inside the last block), for every
// block type. Throws ValueError for a type that is not a block type.
void dequantize_blocks(DType type, const void* blocks, int64_t n, float* out);

// Quantizes x[0, n) into ceil(n / 32) blocks (the last padded with zeros) with llama.cpp's
// reference rounding. Q8_0, Q4_0 and Q4_1 (ValueError for other types).
void quantize_blocks(DType type, const float* x, int64_t n, void* blocks);

// Whether every fp16 scale (and minimum) of the blocks is finite: a block type's only source of
// NaN or Inf. Returns the first bad block's index, or -1.
int64_t first_nonfinite_block(DType type, const void* blocks, int64_t num_blocks);

}  // namespace celer
