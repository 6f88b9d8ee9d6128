#!/usr/bin/env python3
"""Two builds of celerinfer side by side: prefill and decode speed of the same model file at
each weight format, measured in alternating processes (A, B, A, B, ...) so that the machine's
drift hits both alike. For "did this change move the speed?" questions (a refactor, a kernel).

    python benchmarks/ab_builds.py --a /path/old/python --b /path/new/python --preset 1b

--a / --b are folders put first on PYTHONPATH: each holds a `celerinfer` package with its
compiled `_core` (a source tree's python/ folder with the extension copied in, or a
site-packages folder). The model is a deterministic random model of the preset, written once
as safetensors (--model-file) by build B and memory-mapped by every process.
Prints, per format, the median of each build and B / A; ratios within a few percent are noise
on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# Runs inside each measuring process: loads the file, times `reps` generations after one
# warm-up, prints one JSON line. Uses only the API every build has.
WORKER = r"""
import json, sys, time
import celerinfer
path, fmt, threads, prompt, gen, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
model = celerinfer.load(path)
engine = celerinfer.Engine(model, "v1", threads=threads, weight_dtype=fmt, max_seq_len=prompt + gen)
ids = celerinfer.random_tokens(1, prompt, model.config.vocab_size, 7)
engine.generate(ids, max_new_tokens=gen)
prefill, decode = [], []
for _ in range(reps):
    g = engine.generate(ids, max_new_tokens=gen)
    prefill.append(prompt / (g.timings["ttft_ms"] / 1e3))
    decode.append(g.timings["decode_tokens_per_s"])
print(json.dumps({"prefill_tok_s": max(prefill), "decode_tok_s": max(decode), "file": celerinfer.__file__}))
"""


def measure(pythonpath: str, args, fmt: str) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run([sys.executable, "-c", WORKER, str(args.model_file), fmt, str(args.threads),
                          str(args.prompt_length), str(args.gen_len), str(args.reps)],
                         env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", required=True, help="PYTHONPATH folder of build A (the baseline)")
    p.add_argument("--b", required=True, help="PYTHONPATH folder of build B (the change)")
    p.add_argument("--preset", default="1b", help="bench preset whose model shape to use (default 1b)")
    p.add_argument("--model-file", type=Path, default=Path("results/ab_model.safetensors"))
    p.add_argument("--formats", nargs="+", default=["f32", "bf16", "int8"])
    p.add_argument("--rounds", type=int, default=3, help="A/B pairs per format (default 3)")
    p.add_argument("--reps", type=int, default=2, help="timed generations per process (best kept)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-length", type=int, default=128)
    p.add_argument("--gen-len", type=int, default=32)
    args = p.parse_args(argv)

    if not args.model_file.exists():
        args.model_file.parent.mkdir(parents=True, exist_ok=True)
        make = ("import sys, celerinfer; from celerinfer.bench import PRESETS; "
                "celerinfer.random_model(celerinfer.ModelConfig(**PRESETS[sys.argv[1]]['model']), seed=0)"
                ".save(sys.argv[2])")
        subprocess.run([sys.executable, "-c", make, args.preset, str(args.model_file)],
                       env={**os.environ, "PYTHONPATH": args.b}, check=True)
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for fmt in args.formats:
            for name, path in (("A", args.a), ("B", args.b)) if r % 2 == 0 else (("B", args.b), ("A", args.a)):
                result = measure(path, args, fmt)
                runs.setdefault((name, fmt), []).append(result)
                print(f"round {r + 1} {fmt:5} {name}: prefill {result['prefill_tok_s']:8.1f} tok/s, "
                      f"decode {result['decode_tok_s']:7.2f} tok/s", flush=True)
    print(f"\n{'format':6} {'metric':8} {'A median':>10} {'B median':>10} {'B / A':>7}   (samples A | B)")
    for fmt in args.formats:
        for metric in ("prefill_tok_s", "decode_tok_s"):
            a = [x[metric] for x in runs[("A", fmt)]]
            b = [x[metric] for x in runs[("B", fmt)]]
            ma, mb = statistics.median(a), statistics.median(b)
            print(f"{fmt:6} {metric.split('_')[0]:8} {ma:10.2f} {mb:10.2f} {mb / ma:7.3f}   "
                  f"({', '.join(f'{x:.1f}' for x in a)} | {', '.join(f'{x:.1f}' for x in b)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
