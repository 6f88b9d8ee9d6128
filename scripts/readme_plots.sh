#!/usr/bin/env bash
# Regenerates the results and plots shown in the README (docs/results/, docs/plots/): the
# default benchmark (MiniMind-shaped random model) over every version, then the plots.
set -euo pipefail
cd "$(dirname "$0")/.."
CELERINFER=${CELERINFER:-celerinfer}
$CELERINFER bench all --version v0 v1 v2 v3 v4 v5 v6 --log-file docs/results/results.jsonl --clear-log "$@"
rm -f docs/results/results.jsonl.*.bak
$CELERINFER plot --log-file docs/results/results.jsonl --out-dir docs/plots
