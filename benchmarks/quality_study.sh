#!/usr/bin/env bash
# docs/results/quality.md in one command: SmolLM2's quality through every KV method and weight
# format on the licenses corpus (two 768-token windows, teacher-forced through each cache),
# then the plots. About 12 minutes on 2 cores. Usage: bash benchmarks/quality_study.sh [LOG]
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-results/quality.jsonl}
export PATH="$PWD/.venv/bin:$PATH"
COMMON=(--model smollm2 --corpus licenses --context-length 768 --num-windows 2 --log-file "$LOG")
celerinfer bench perplexity "${COMMON[@]}" --version v1 v2 v3 v4 v5 v6 v7 v8 v9 v10 v11
celerinfer bench perplexity "${COMMON[@]}" --version v1 --quality-weight-dtypes f32 stored bf16 int8 q4_0 q4_1
celerinfer plot --log-file "$LOG" --run-id all
