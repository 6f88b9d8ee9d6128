#!/usr/bin/env bash
# One command from a fresh clone to the main job: set everything up, then run the default
# benchmark on an embedded random model (no downloads): generate the model, run the C++ and
# PyTorch forward passes, and check that their logits match.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
bash benchmarks/benchmark.sh "$@"
