#!/usr/bin/env bash
# One command from a fresh clone to the full test suite: set everything up, build and run the
# C++ unit tests (ctest), then the Python tests (pytest). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== C++ unit tests"
cmake -S . -B build/ctest -G Ninja -DCELER_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/ctest -j "$(nproc)" >/dev/null
ctest --test-dir build/ctest --output-on-failure

echo "== Python tests"
python -m pytest "$@"
