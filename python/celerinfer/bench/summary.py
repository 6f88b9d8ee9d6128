"""A short human-readable summary of a run's records, printed after `celerinfer bench`."""

from __future__ import annotations


def _fmt_bytes(n) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MiB"


def summarize_records(records: list[dict]) -> str:
    lines = []
    by_bench: dict[str, list[dict]] = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], []).append(r)
    if "latency" in by_bench:
        lines.append("latency (median):  version      T   total ms   TTFT ms   ms/token   tokens/s")
        for r in by_bench["latency"]:
            m, per = r["metrics"], r["metrics"]["per_token_ms"]
            lines.append(f"                   {r['version']:<8}{r['params']['T']:>5}{m['total_ms']['median']:>11.2f}"
                         f"{m['ttft_ms']['median']:>10.2f}{(per or {}).get('median', float('nan')):>11.3f}"
                         f"{m['tokens_per_s']:>11.1f}")
    if "memory" in by_bench:
        lines.append("memory:            version      T   KV cache       engine buffers")
        for r in by_bench["memory"]:
            m = r["metrics"]
            lines.append(f"                   {r['version']:<8}{r['params']['T']:>5}   {_fmt_bytes(m['kv_cache_bytes']):<15}"
                         f"{_fmt_bytes(m['engine_bytes'])}")
    if "phase" in by_bench:
        lines.append("phase (share of total at T*):")
        for r in by_bench["phase"]:
            shares = ", ".join(f"{k} {v:.0%}" for k, v in r["metrics"]["phase_share"].items())
            lines.append(f"                   {r['version']:<8}{shares}")
    if "perplexity" in by_bench:
        lines.append("quality:           version   perplexity   KL vs baseline   top-1 agreement")
        for r in by_bench["perplexity"]:
            m = r["metrics"]
            lines.append(f"                   {r['version']:<10}{m['perplexity']:>10.3f}{m['kl_vs_baseline']:>17.2e}"
                         f"{m['top1_agreement']:>17.1%}")
    if "calibrate" in by_bench:
        m = by_bench["calibrate"][-1]["metrics"]
        lines.append(f"machine:           {m['bandwidth_gbps']['median']:.1f} GB/s memory bandwidth, "
                     f"{m['matmul_gflops']['median']:.1f} GFLOP/s matmul peak (measured)")
    if "roofline" in by_bench:
        lines.append("roofline:          version  phase     AI flop/B   GFLOP/s    GB/s   of ceiling")
        for r in by_bench["roofline"]:
            m = r["metrics"]
            frac = m["fraction_of_bandwidth"] if m["bound"] == "memory" else m["fraction_of_peak_flops"]
            lines.append(f"                   {r['version']:<9}{r['params']['phase']:<10}{m['arithmetic_intensity']:>8.2f}"
                         f"{m['achieved_gflops']:>11.1f}{m['achieved_gbps']:>8.1f}   {frac:.0%} {m['bound']}")
    return "\n".join(lines)
