#!/usr/bin/env python
"""Micro-benchmark of the CPU kernels: the linear layer y = x @ W^T per weight format and SIMD
level, on TinyLlama-1.1B-shaped matrices, beside a STREAM triad measured in the same run.

  decode rows (M <= 8): the GEMV kernels; reported as GB/s of weights streamed (and % of triad)
  prefill rows (M > 8): the blocked GEMM; reported as GFLOP/s, at the avx2 and avx512 levels
      as % of the multiply-add peak measured in the same run (the instruction the GEMM uses for that
      format: f32 FMA, AMX tile products or vdpbf16ps for bf16 where the CPU has them; every
      thread, nothing loaded), and as % of a tuned BLAS on the same shape and threads, the
      practical matmul peak: PyTorch's F.linear (MKL/oneDNN) in the arithmetic of the format
      (bf16 for bf16; f32 for f32 and for weight-only int8). Without torch: "-".
      Where the CPU has AMX, f32 and int8 GEMMs run again at matmul precision "high" (bf16x3:
      three bf16 tile products per term), their peak a third of the tiles' and their PyTorch
      reference still f32 (PyTorch has no such path on CPU).

A matrix that fits the last-level cache is read from that cache on repeated runs, so its GB/s
can exceed the triad's: judge decode bandwidth on matrices larger than the LLC (or in a real
decode, `celerinfer bench compare`).

Usage: python benchmarks/micro_kernels.py [--threads 2] [--reps 5] [--rows 1 512]
       [--formats f32 bf16 int8] [--levels avx512 ...] [--shape N K ...] [--no-torch]
       [--precisions highest high] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import celerinfer
from celerinfer import _core
from celerinfer.engine import precision_changes_prefill
from celerinfer.formats import matrix_bytes
from celerinfer.results.stats import best_seconds, summarize

# (name, N, K): the 1B preset's projections and head
SHAPES = [("q_proj/o_proj", 2048, 2048), ("gate/up_proj", 5632, 2048), ("down_proj", 2048, 5632),
          ("lm_head", 32000, 2048)]


def multiply_add_peaks(formats, levels, reps) -> dict:
    """(level, format, precision) -> the GEMM's multiply-add peak in GFLOP/s of the products it
    computes (at the avx2 and avx512 levels; at "high", on AMX, a third of the bf16 tiles' peak)."""
    saved = celerinfer.simd_level()
    out = {}
    try:
        for level in [lv for lv in levels if lv in ("avx2", "avx512")]:
            celerinfer.set_simd_level(level)

            def peak(fmt):
                return summarize(_core.multiply_add_peak_gflops(fmt, reps), unit="GFLOP/s", raw_unit=None)["median"]

            out.update({(level, fmt, "highest"): peak(fmt) for fmt in formats})
            split = [fmt for fmt in formats if precision_changes_prefill(fmt)]  # bf16x3: three tile products
            if split:
                tiles = peak("bf16")
                out.update({(level, fmt, "high"): tiles / 3 for fmt in split})
        return out
    finally:
        celerinfer.set_simd_level(saved)


def torch_gflops(M: int, N: int, K: int, weight_dtype: str, reps: int) -> float | None:
    """GFLOP/s of PyTorch's F.linear on (M, K) x (N, K)^T in the format's arithmetic (best of
    reps after a warm-up, on celerinfer's thread count); None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(celerinfer.get_num_threads())
    dtype = torch.bfloat16 if weight_dtype == "bf16" else torch.float32
    x, w = torch.rand(M, K, dtype=dtype), torch.rand(N, K, dtype=dtype)
    return 2 * M * N * K / best_seconds(lambda: torch.nn.functional.linear(x, w), reps) / 1e9


def measure(shapes, rows, formats, levels, reps, with_torch: bool = True, precisions=("highest", "high")) -> list[dict]:
    out = []
    peaks = multiply_add_peaks(formats, levels, reps)
    blas = {}  # (M, N, K, format) -> PyTorch's GFLOP/s, once per shape whatever the level
    saved = celerinfer.simd_level()
    try:
        for level in levels:
            celerinfer.set_simd_level(level)
            for name, N, K in shapes:
                for fmt in formats:
                    for M, precision in [(M, p) for M in rows for p in precisions]:
                        gemm = M > 8
                        if precision != "highest" and not (gemm and precision_changes_prefill(fmt)):
                            continue  # the same kernel as at "highest"
                        secs = summarize(_core.linear_seconds(M, N, K, reps, fmt, precision), unit="s",
                                         raw_unit="s")["median"]
                        if gemm and with_torch and (M, N, K, fmt) not in blas:
                            blas[(M, N, K, fmt)] = torch_gflops(M, N, K, fmt, reps)
                        out.append({"kernel": "gemm" if gemm else "gemv", "level": level, "matrix": name,
                                    "N": N, "K": K, "M": M, "weight_dtype": fmt, "matmul_precision": precision,
                                    "seconds": secs, "gbps": matrix_bytes(fmt, N, K) / secs / 1e9,
                                    "gflops": 2 * M * N * K / secs / 1e9,
                                    "peak_gflops": peaks.get((level, fmt, precision)),
                                    "torch_gflops": blas.get((M, N, K, fmt))})
    finally:
        celerinfer.set_simd_level(saved)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--rows", type=int, nargs="+", default=[1, 512], help="activation rows M")
    p.add_argument("--formats", nargs="+", default=list(celerinfer.WEIGHT_DTYPES))
    p.add_argument("--levels", nargs="+", default=[celerinfer.simd_level()], help="SIMD levels")
    p.add_argument("--shape", type=int, nargs=2, action="append", metavar=("N", "K"),
                   help="a matrix shape instead of the 1B preset's (repeatable)")
    p.add_argument("--triad-mib", type=int, default=512, help="triad working set (default 512 MiB)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch (BLAS) reference of the GEMM rows")
    p.add_argument("--precisions", nargs="+", choices=celerinfer.MATMUL_PRECISIONS,
                   default=list(celerinfer.MATMUL_PRECISIONS),
                   help="matmul precisions of the GEMM rows (high: only where it differs; default both)")
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        celerinfer.set_num_threads(args.threads)
    shapes = [(f"{n}x{k}", n, k) for n, k in args.shape] if args.shape else SHAPES
    triad = summarize(_core.stream_triad(args.triad_mib * (1 << 20) // 12, args.reps), unit="GB/s",
                      raw_unit=None)["median"]
    rows = measure(shapes, args.rows, args.formats, args.levels, args.reps, with_torch=not args.no_torch,
                   precisions=args.precisions)
    print(f"threads {celerinfer.get_num_threads()}, STREAM triad {triad:.1f} GB/s (same run)\n")
    print("| kernel | simd | matrix | M | weights | ms | GB/s | % triad | GFLOP/s | % peak | % of PyTorch |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|")

    def share(value, of):
        return f"{100 * value / of:.0f}% of {of:.0f}" if of else "-"

    for r in rows:
        weights = r["weight_dtype"] + (f" ({r['matmul_precision']})" if r["matmul_precision"] != "highest" else "")
        print(f"| {r['kernel']} | {r['level']} | {r['matrix']} ({r['N']}x{r['K']}) | {r['M']} | {weights} | "
              f"{r['seconds'] * 1e3:.2f} | {r['gbps']:.1f} | {100 * r['gbps'] / triad:.0f}% | {r['gflops']:.1f} | "
              f"{share(r['gflops'], r['peak_gflops'])} | {share(r['gflops'], r['torch_gflops'])} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"triad_gbps": triad, "threads": celerinfer.get_num_threads(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
