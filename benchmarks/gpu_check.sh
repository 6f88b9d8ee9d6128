#!/usr/bin/env bash
# The one command a GPU session runs: build celerinfer with the CUDA backend (CELER_CUDA=ON,
# fails without nvcc), print what the machine offers, and run the CUDA op tests against numpy.
# Usage: bash benchmarks/gpu_check.sh   (from anywhere; PYTHON picks the interpreter)
# Needs: nvcc, Eigen headers (system, or EIGEN3_INCLUDE_DIR=/path/to/eigen3), pybind11,
# scikit-build-core, numpy, pytest; cuBLAS at run time (nvidia-cublas wheel or the toolkit).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

echo "== nvidia-smi"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "(nvidia-smi not available)"
echo "== nvcc"
nvcc --version | tail -2

echo "== build (CELER_CUDA=ON)"
start=$(date +%s)
CELER_CUDA=ON "$PYTHON" -m pip install -q --no-build-isolation --no-deps -e .
echo "build: $(( $(date +%s) - start )) s"

echo "== status"
"$PYTHON" - <<'PY'
import json
import celerinfer
from celerinfer.cuda import cublas_candidates, load_cublas
st = celerinfer.cuda_status()
print(json.dumps(st, indent=2))
try:
    print("cuBLAS:", load_cublas())
except RuntimeError as e:
    print("cuBLAS:", e)
print("cuBLAS candidates:", cublas_candidates())
PY

echo "== tests/test_cuda.py"
CELER_EXPECT_CUDA_BUILD=1 "$PYTHON" -m pytest -q -rs tests/test_cuda.py "$@"
