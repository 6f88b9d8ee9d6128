// Include first in a file that uses AVX-512 intrinsics, directly or through Eigen's vectorized
// GEMM and math: GCC 12 passes _mm512_undefined_*() values as don't-care operands and its flow
// analysis then reports them as uninitialized (a known false positive). The pragmas stay in
// force for the rest of the including file.
#pragma once
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
