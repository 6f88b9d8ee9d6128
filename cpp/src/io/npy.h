// NumPy .npy files (format 1.0/2.0/3.0), no pickle: float32/float64/int32/int64/int8/uint8/bool,
// C order, little endian.
#pragma once
#include <string>

#include "tensor.h"

namespace celer {

void save_npy(const std::string& path, const Tensor& tensor);  // atomic
Tensor load_npy(const std::string& path);                      // throws FormatError / IOError

}  // namespace celer
