#!/usr/bin/env bash
# Builds the C++ unit tests (celer_tests) with AddressSanitizer and UndefinedBehaviorSanitizer
# and runs them: any report (out-of-bounds access, use after free, leak, signed overflow,
# misaligned load, ...) stops the run with a non-zero exit.
# Usage: bash scripts/sanitize.sh [build|test] (default: both; .ci/run builds the fuzz targets
# while the tests run, on the core they leave idle).
# Environment: CELER_SANITIZE (default address,undefined), SANITIZE_BUILD (default build/asan),
# CXX (the compiler; default the system's). See docs/guide/troubleshooting.md.
set -euo pipefail
cd "$(dirname "$0")/.."

STEP=${1:-all}
case "$STEP" in all | build | test) ;; *) echo "usage: bash scripts/sanitize.sh [build|test]" >&2; exit 2 ;; esac
SANITIZERS=${CELER_SANITIZE:-address,undefined}
BUILD=${SANITIZE_BUILD:-build/asan}
[ -d .venv/bin ] && export PATH="$PWD/.venv/bin:$PATH"  # cmake and ninja from scripts/setup.sh

echo "== C++ unit tests with -fsanitize=$SANITIZERS ($BUILD)"
if [ "$STEP" != test ]; then
  # -O1 -g1: fast enough to build and run, with file:line in every report. No CUDA: the
  # sanitizers check the host code.
  cmake -S . -B "$BUILD" -G Ninja -DCELER_BUILD_TESTS=ON -DCELER_SANITIZE="$SANITIZERS" -DCELER_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" --target celer_tests >/dev/null
fi
[ "$STEP" != build ] || exit 0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$BUILD" --output-on-failure
