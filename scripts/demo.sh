#!/usr/bin/env bash
# One command from a fresh clone to the main job: set everything up, check the C++ engine
# against the PyTorch reference on an embedded random model, run the default benchmark suite
# (latency, memory, phase, perplexity/KL, roofline on a MiniMind-shaped random model; no
# downloads), and draw the plots. Results: results/results.jsonl, plots: results/plots/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== parity: C++ engine vs PyTorch reference"
bash benchmarks/benchmark.sh
echo "== benchmark suite (default config; see celerinfer bench --help)"
celerinfer bench all "$@"
celerinfer plot
