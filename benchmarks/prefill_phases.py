#!/usr/bin/env python
"""Prefill's GEMM-bound phase against the matmul peak measured in the same run.

For each weight format (and, where it changes prefill, matmul precision "high") the engine
prefills a random prompt on a preset's random model; the engine's own phase timers split the
time, and the roofline model (celerinfer.bench.roofline) counts each phase's FLOPs:
  mlp        post-attention norm, gate/up GEMM, SwiGLU, down GEMM: GEMM-bound;
  attention  input norm, QKV GEMM, RoPE, the attention itself, o_proj GEMM.
The matmul peak is a tuned BLAS on the MLP's largest GEMM (prompt x intermediate x hidden),
same threads, best of reps: PyTorch's F.linear (MKL / oneDNN) and numpy's matmul (OpenBLAS), in
float32, or for bf16 weights PyTorch's bf16 F.linear (bf16 products, as the bf16 format
computes). The engine and the BLAS alternate, so load from other tenants hits both alike.

Usage: python benchmarks/prefill_phases.py [--preset 1b] [--prompt-length 512] [--threads 2]
       [--reps 3] [--formats f32 bf16 int8] [--precisions highest high] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

#: the engine's phases (celerinfer.engine.PHASES) -> the roofline ops they time
PHASE_OPS = {"attention": ("qkv", "attention", "o_proj"), "mlp": ("mlp",)}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="1b", help="a bench preset's model shape (default 1b)")
    p.add_argument("--prompt-length", type=int, default=512)
    p.add_argument("--threads", type=int, default=None, help="engine and BLAS threads (default: the engine's)")
    p.add_argument("--reps", type=int, default=3, help="timed prefills per setup, after a warm-up")
    p.add_argument("--formats", nargs="+", default=["f32", "bf16", "int8"])
    p.add_argument("--precisions", nargs="+", default=["highest", "high"],
                   help="matmul precisions (high: only where it changes prefill)")
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    for name in ("prompt_length", "reps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def blas_gflops(M: int, N: int, K: int, bf16: bool, reps: int) -> dict:
    """{library: GFLOP/s} of y = x @ w^T, (M, K) x (N, K), for the libraries installed."""
    import numpy as np

    from celerinfer.results.stats import best_seconds

    out = {}
    flops = 2 * M * N * K
    rng = np.random.default_rng(0)
    x, w = rng.random((M, K), dtype=np.float32), rng.random((N, K), dtype=np.float32)
    try:
        import torch

        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        if bf16:
            tx, tw = tx.bfloat16(), tw.bfloat16()
        out["torch"] = flops / best_seconds(lambda: torch.nn.functional.linear(tx, tw), reps) / 1e9
    except ImportError:
        pass
    if not bf16:  # numpy has no bf16 matmul
        wt = np.ascontiguousarray(w.T)
        out["numpy"] = flops / best_seconds(lambda: x @ wt, reps) / 1e9
    return out


def measure(args) -> tuple[list[dict], dict]:
    import numpy as np

    import celerinfer
    from celerinfer.bench import PRESETS, roofline
    from celerinfer.engine import PHASES, precision_changes_prefill

    model = celerinfer.random_model(celerinfer.ModelConfig(**{**PRESETS[args.preset]["model"],
                                                              "max_position_embeddings": args.prompt_length + 1}))
    c = model.config
    ids = celerinfer.random_tokens(1, args.prompt_length, c.vocab_size, seed=1)
    cost = roofline.prefill_cost(c, "v1", 1, args.prompt_length)
    phase_flops = {phase: sum(cost.by_op[op]["flops"] for op in ops) for phase, ops in PHASE_OPS.items()}
    rows = []
    for fmt in args.formats:
        engine = celerinfer.Engine(model, "v1", max_seq_len=args.prompt_length + 1, weight_dtype=fmt)
        for precision in args.precisions:
            if precision != "highest" and not precision_changes_prefill(fmt):
                continue  # the same computation as at "highest"
            engine.matmul_precision = precision
            engine.generate(ids, 1)  # warm-up
            times, peaks = [], []
            for _ in range(args.reps):  # engine and BLAS alternate
                times.append(engine.generate(ids, 1).step_table[0, : len(PHASES)] / 1e9)
                peaks.append(blas_gflops(args.prompt_length, c.intermediate_size, c.hidden_size, fmt == "bf16", 1))
            seconds = dict(zip(PHASES, np.median(np.array(times), axis=0).tolist()))
            peak = {lib: max(p[lib] for p in peaks) for lib in peaks[0]}
            row = {"weight_dtype": fmt, "matmul_precision": precision, "prefill_gemm": engine.prefill_gemm,
                   "phase_seconds": seconds, "blas_gflops": peak, "peak_gflops": max(peak.values(), default=None)}
            for phase, flops in phase_flops.items():
                row[f"{phase}_gflops"] = flops / seconds[phase] / 1e9
            rows.append(row)
    info = {"preset": args.preset, "prompt_length": args.prompt_length, "threads": celerinfer.get_num_threads(),
            "gemm_shape": [args.prompt_length, c.intermediate_size, c.hidden_size], "phase_flops": phase_flops}
    return rows, info


def main(argv=None) -> int:
    args = parse(argv)
    if args.threads:  # before numpy loads OpenBLAS, which reads it once
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import celerinfer

    if args.threads:
        celerinfer.set_num_threads(args.threads)
    try:
        import torch

        torch.set_num_threads(celerinfer.get_num_threads())
    except ImportError:
        pass
    rows, info = measure(args)
    M, N, K = info["gemm_shape"]
    print(f"preset {info['preset']}, prompt {M}, {info['threads']} threads; matmul peak: the best BLAS on "
          f"{M}x{K} @ ({N}x{K})^T in the same run\n")
    print("| weights | matmul precision | prefill GEMM | mlp ms | mlp GFLOP/s | attention ms | attention GFLOP/s | "
          "matmul peak GFLOP/s | mlp % of peak |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        libs = ", ".join(f"{lib} {v:.0f}" for lib, v in r["blas_gflops"].items()) or "-"
        share = f"{100 * r['mlp_gflops'] / r['peak_gflops']:.0f}%" if r["peak_gflops"] else "-"
        print(f"| {r['weight_dtype']} | {r['matmul_precision']} | {r['prefill_gemm']} | "
              f"{r['phase_seconds']['mlp'] * 1e3:.0f} | {r['mlp_gflops']:.0f} | "
              f"{r['phase_seconds']['attention'] * 1e3:.0f} | {r['attention_gflops']:.0f} | {libs} | {share} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
