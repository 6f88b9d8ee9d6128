#!/usr/bin/env python3
"""Decode speed while other processes hold cores: does the thread pool degrade gracefully or
collapse? Each setup (a build's PYTHONPATH folder and environment, e.g. CELER_POOL_WAIT=spin)
is measured quiet and beside 1..N busy processes (pure spinning loops), in alternating
processes, round after round, so that drift hits every setup alike.

    python benchmarks/pool_under_load.py --setup old=/tmp/ab/old --setup new=/tmp/ab/new \\
        --setup new-spin=/tmp/ab/new,CELER_POOL_WAIT=spin --model smollm2 --hogs 0 1 2

Prints per setup and load the median decode tokens/s and its share of the same setup's quiet
speed. A pool that only loses the CPU time the busy processes take keeps about half its speed
with one hog per core; one that waits a scheduler time slice for a descheduled worker in
every parallel section keeps a few percent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import json, sys
import celerinfer
model_name, threads, prompt, gen, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = celerinfer.load(model_name)
engine = celerinfer.Engine(model, "v1", threads=threads, max_seq_len=prompt + gen)
ids = celerinfer.random_tokens(1, prompt, model.config.vocab_size, 7)
engine.generate(ids, max_new_tokens=gen)
decode = [engine.generate(ids, max_new_tokens=gen).timings["decode_tokens_per_s"] for _ in range(reps)]
print(json.dumps({"decode_tok_s": sorted(decode)[len(decode) // 2]}))
"""

HOG = "while True: pass"


def parse_setup(text: str) -> tuple[str, str, dict]:
    name, _, rest = text.partition("=")
    path, *env = rest.split(",")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"--setup NAME=PYTHONPATH[,VAR=VALUE...], got {text!r}")
    return name, path, dict(e.split("=", 1) for e in env)


def measure(setup, args, hogs: int) -> float:
    name, path, env = setup
    busy = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
    try:
        time.sleep(0.3 if hogs else 0.0)  # the busy processes running before the measurement
        out = subprocess.run([sys.executable, "-c", WORKER, args.model, str(args.threads), str(args.prompt_length),
                              str(args.gen_len), str(args.reps)], env={**os.environ, "PYTHONPATH": path, **env},
                             check=True, capture_output=True, text=True, timeout=900)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])["decode_tok_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setup", action="append", type=parse_setup, required=True,
                   help="NAME=PYTHONPATH[,VAR=VALUE...] (repeat; a build folder holding a `celerinfer` package)")
    p.add_argument("--model", default="smollm2", help="a model name or file (default smollm2)")
    p.add_argument("--hogs", type=int, nargs="+", default=[0, 1, 2], help="busy processes beside it (default 0 1 2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=3, help="timed generations per process (median kept)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-length", type=int, default=32)
    p.add_argument("--gen-len", type=int, default=32)
    args = p.parse_args(argv)
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    print(f"CPU {cpu}, {os.cpu_count()} CPUs; model {args.model}, {args.threads} threads, decode {args.gen_len} tokens")
    speeds: dict[tuple[str, int], list[float]] = {}
    for r in range(args.rounds):
        order = args.setup if r % 2 == 0 else args.setup[::-1]
        for hogs in args.hogs:
            for setup in order:
                v = measure(setup, args, hogs)
                speeds.setdefault((setup[0], hogs), []).append(v)
                print(f"round {r + 1} hogs {hogs} {setup[0]:>10}: {v:8.2f} tok/s", flush=True)
    print(f"\n{'setup':>10} {'hogs':>4} {'decode tok/s':>13} {'of quiet':>9}   (samples)")
    for name, _, _ in args.setup:
        quiet = statistics.median(speeds.get((name, 0), [float("nan")]))
        for hogs in args.hogs:
            values = speeds[(name, hogs)]
            med = statistics.median(values)
            print(f"{name:>10} {hogs:>4} {med:13.2f} {med / quiet:9.2f}   ({', '.join(f'{x:.1f}' for x in values)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
