#include "core/matmul_precision.h"

#include "core/error.h"

namespace celer {

std::string matmul_precision_name(MatmulPrecision precision) {
  return precision == MatmulPrecision::High ? "high" : "highest";
}

const std::vector<MatmulPrecision>& matmul_precisions() {
  static const std::vector<MatmulPrecision> all{MatmulPrecision::Highest, MatmulPrecision::High};
  return all;
}

MatmulPrecision parse_matmul_precision(const std::string& name) {
  for (MatmulPrecision p : matmul_precisions())
    if (matmul_precision_name(p) == name) return p;
  throw ValueError("unknown matmul precision '" + name + "' (expected highest or high)");
}

}  // namespace celer
