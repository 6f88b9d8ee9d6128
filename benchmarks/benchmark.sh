#!/usr/bin/env bash
# The seed's one-step run: generate a random model, run the PyTorch reference and the C++
# engine on its inputs, and compare their logits.
# Usage: benchmarks/benchmark.sh [hidden] [layers] [heads] [kvh] [vocab] [seq_len] [batch_size] [seed]
# Environment: DUMP_DIR (default dump_minimind), WARMUP (default 5), CELERINFER (the command).
set -euo pipefail
HIDDEN=${1:-64}; LAYERS=${2:-2}; HEADS=${3:-8}; KVH=${4:-2}; VOCAB=${5:-128}
SEQ_LEN=${6:-5}; BATCH=${7:-2}; SEED=${8:-123}
DUMP_DIR=${DUMP_DIR:-dump_minimind}
WARMUP=${WARMUP:-5}
MAX_POS=$(( SEQ_LEN > 128 ? SEQ_LEN : 128 ))
read -r -a CELERINFER <<< "${CELERINFER:-python -m celerinfer}"
MODEL="$DUMP_DIR/minimind.json"

echo "== 1/4 random model: hidden=$HIDDEN layers=$LAYERS heads=$HEADS kvh=$KVH vocab=$VOCAB seq_len=$SEQ_LEN batch=$BATCH seed=$SEED"
"${CELERINFER[@]}" random-model --hidden "$HIDDEN" --layers "$LAYERS" --heads "$HEADS" --kvh "$KVH" \
  --vocab "$VOCAB" --max-pos "$MAX_POS" --seq-len "$SEQ_LEN" --batch-size "$BATCH" --seed "$SEED" --output "$MODEL"
echo "== 2/4 PyTorch reference forward"
"${CELERINFER[@]}" forward --model "$MODEL" --dump-dir "$DUMP_DIR" --warmup "$WARMUP" --backend torch
echo "== 3/4 C++ forward"
"${CELERINFER[@]}" forward --model "$MODEL" --dump-dir "$DUMP_DIR" --warmup "$WARMUP" --backend cpp
echo "== 4/4 compare"
"${CELERINFER[@]}" compare "$DUMP_DIR/logits_cpp.npy" "$DUMP_DIR/logits_torch.npy"
