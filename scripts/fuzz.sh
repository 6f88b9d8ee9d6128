#!/usr/bin/env bash
# Builds the libFuzzer targets (cpp/fuzz, with ASan + UBSan), makes their seed corpus and runs
# each for a bounded time. Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# (default 60 s; targets: the C++ ones safetensors gguf seed_json base64 json config_json and the
# atheris (Python) ones results_lines gguf_tokenizer; default: all of them;
# "all": every one). Installs clang (apt) and atheris (pip) when missing. Prints one summary line
# per target (executions, coverage, features, corpus) and exits non-zero when any target crashed,
# leaked, timed out or ran out of memory; the input that did it is kept in build/fuzz/crashes/.
# Environment: FUZZ_JOBS (targets run at once; default: the number of cores),
# FUZZ_BUILD (default build/fuzz), FUZZ_BUILD_ONLY=1 (build the targets, run nothing).
# See docs/guide/troubleshooting.md ("Fuzzing and sanitizer builds").
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
shift || true
[[ $SECONDS_PER_TARGET =~ ^[0-9]+$ ]] ||
  { echo "usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET... | all]" >&2; exit 2; }
CPP_TARGETS=(safetensors gguf seed_json base64 json config_json)
PY_TARGETS=(results_lines gguf_tokenizer)

DEFAULT_TARGETS=("${CPP_TARGETS[@]}" "${PY_TARGETS[@]}")
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${DEFAULT_TARGETS[@]}")
[ "${TARGETS[*]}" != all ] || TARGETS=("${CPP_TARGETS[@]}" "${PY_TARGETS[@]}")
is_python() { [[ " ${PY_TARGETS[*]} " == *" $1 "* ]]; }
for t in "${TARGETS[@]}"; do
  [[ " ${CPP_TARGETS[*]} ${PY_TARGETS[*]} " == *" $t "* ]] ||
    { echo "unknown fuzz target '$t' (known: ${CPP_TARGETS[*]} ${PY_TARGETS[*]})" >&2; exit 2; }
done
BUILD=${FUZZ_BUILD:-build/fuzz}
JOBS=${FUZZ_JOBS:-$(nproc)}
VENV=${VENV:-.venv}

# 1. clang (libFuzzer and the sanitizer runtimes ship with Debian's clang package).
if ! command -v clang++ >/dev/null 2>&1; then
  echo "== installing clang"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q clang >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q clang >/dev/null; }
fi

# 2. celerinfer in the venv (the corpus generator saves its models with it).
if ! "$VENV/bin/python" -c "import celerinfer" >/dev/null 2>&1; then
  bash scripts/setup.sh
fi
export PATH="$PWD/$VENV/bin:$PATH"
PY_OK=1
for t in "${TARGETS[@]}"; do
  if is_python "$t" && ! python -c "import atheris" >/dev/null 2>&1; then
    echo "== installing atheris"
    python -m pip install -q atheris >/dev/null 2>&1 || PY_OK=0
    break
  fi
done

# 3. The targets: -O1, no CUDA, only the fuzz executables.
echo "== building the fuzz targets ($BUILD)"
cmake -S . -B "$BUILD" -G Ninja -DCELER_FUZZ=ON -DCELER_CUDA=OFF -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target celer_fuzz >/dev/null
[ "${FUZZ_BUILD_ONLY:-0}" = 0 ] || exit 0

# 4. The seed corpus (regenerated each run); what the fuzzer finds accumulates in corpus/.
rm -rf "$BUILD/seeds"
python cpp/fuzz/make_corpus.py "$BUILD/seeds"
for t in "${PY_TARGETS[@]}"; do
  [ "$PY_OK" = 0 ] || ! python -c "import atheris" >/dev/null 2>&1 ||
    python "cpp/fuzz/fuzz_$t.py" --make-seeds "$BUILD/seeds/$t" 2>/dev/null
done
mkdir -p "$BUILD/crashes" "$BUILD/logs"

dict_of() {
  case "$1" in
    gguf) echo cpp/fuzz/gguf.dict ;;
    base64) echo "" ;;
    *) echo cpp/fuzz/json.dict ;;
  esac
}

run_one() {
  local t=$1 dict rc=0 exe
  dict=$(dict_of "$t")
  mkdir -p "$BUILD/corpus/$t"
  exe=("$BUILD/cpp/fuzz/fuzz_$t")
  if is_python "$t"; then
    exe=(python "cpp/fuzz/fuzz_$t.py")
    dict=""
  fi
  # Leak checks on; one report stops the run (libFuzzer then writes the input to crashes/).
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "${exe[@]}" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$BUILD/crashes/$t-" ${dict:+-dict="$dict"} \
    "$BUILD/corpus/$t" "$BUILD/seeds/$t" >"$BUILD/logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$BUILD/logs/$t.rc"
}

echo "== fuzzing ${TARGETS[*]}: ${SECONDS_PER_TARGET}s each, $JOBS at a time"
running=0
for t in "${TARGETS[@]}"; do
  if is_python "$t" && [ "$PY_OK" = 0 ]; then
    echo "skipped: atheris could not be installed" >"$BUILD/logs/$t.log"
    echo skipped >"$BUILD/logs/$t.rc"
    continue
  fi
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

# 5. The summary: libFuzzer's last status line and final stats, per target.
failed=0
: >"$BUILD/summary.txt"
for t in "${TARGETS[@]}"; do
  log="$BUILD/logs/$t.log"
  rc=$(cat "$BUILD/logs/$t.rc" 2>/dev/null || echo 1)
  status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$status")
  verdict=ok
  if [ "$rc" = skipped ]; then
    verdict="skipped (atheris could not be installed)"
  elif [ "$rc" != 0 ]; then
    verdict="FAILED (exit $rc; input in $BUILD/crashes/, log $log)"
    failed=1
  fi
  line=$(printf 'fuzz_%-14s execs %9s  cov %5s  ft %6s  corpus %-12s %s' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
    "${corp:-?}" "$verdict")
  echo "$line" | tee -a "$BUILD/summary.txt"
  if [ "$rc" != 0 ] && [ "$rc" != skipped ]; then
    grep -E 'ERROR: |SUMMARY: |runtime error|violated|uncaught|Uncaught|Exception: |Error: |==[0-9]+==' "$log" | head -n 20 >&2 || true
  fi
done
exit "$failed"
