// How exactly the prefill GEMM multiplies f32 and int8 weights (the names and meanings follow
// torch.set_float32_matmul_precision):
//   Highest  f32 products (the default): each product rounded once, to 2^-24;
//   High     where the CPU has AMX, "bf16x3": each f32 value v (activation, or weight as the
//            engine computes with it) is split into b = bf16(v) and its residual r = bf16(v - b)
//            (|v - b - r| <= 2^-18 |v|), and x w is taken as b_x b_w + b_x r_w + r_x b_w on the
//            bf16 tiles, with f32 sums: each product within ~3 * 2^-18 ~ 1.1e-5 of exact, about
//            2x the f32-FMA GEMM's speed. Without AMX it is Highest (bf16 dot products there
//            are no faster than f32 FMAs three times over).
// Decoding (the GEMV kernels) and the bf16 weight format (already bf16 products) are the same
// at both settings.
#pragma once
#include <string>
#include <vector>

namespace celer {

enum class MatmulPrecision { Highest, High };

std::string matmul_precision_name(MatmulPrecision precision);   // "highest", "high"
const std::vector<MatmulPrecision>& matmul_precisions();          // every setting, Highest first
MatmulPrecision parse_matmul_precision(const std::string& name);  // ValueError on an unknown name

}  // namespace celer
