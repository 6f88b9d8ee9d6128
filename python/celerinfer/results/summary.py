"""A short human-readable summary of a run's records, printed after `celerinfer bench`: one
section per benchmark, a header and a line per record."""

from __future__ import annotations

from .noise import noise_warnings

_INDENT = " " * 19


def _fmt_bytes(n) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MiB"


def _latency_row(r: dict) -> str:
    m, per = r["metrics"], r["metrics"]["per_token_ms"]
    return (f"{r['version']:<8}{r['params']['T']:>5}{m['total_ms']['median']:>11.2f}"
            f"{m['ttft_ms']['median']:>10.2f}{(per or {}).get('median', float('nan')):>11.3f}"
            f"{m['tokens_per_s']:>11.1f}")


def _memory_row(r: dict) -> str:
    m = r["metrics"]
    return (f"{r['version']:<8}{r['params']['T']:>5}   {_fmt_bytes(m['kv_cache_bytes']):<15}"
            f"{_fmt_bytes(m['engine_bytes'])}")


def _phase_row(r: dict) -> str:
    return f"{r['version']:<8}" + ", ".join(f"{k} {v:.0%}" for k, v in r["metrics"]["phase_share"].items())


def _perplexity_row(r: dict) -> str:
    m = r["metrics"]
    return f"{r['version']:<10}{m['perplexity']:>10.3f}{m['kl_vs_baseline']:>17.2e}{m['top1_agreement']:>17.1%}"


def _calibrate_line(r: dict) -> str:
    m = r["metrics"]
    return (f"machine:{' ' * 11}{m['bandwidth_gbps']['median']:.1f} GB/s memory bandwidth, "
            f"{m['matmul_gflops']['median']:.1f} GFLOP/s matmul peak (measured)")


def _roofline_row(r: dict) -> str:
    m = r["metrics"]
    frac = m["fraction_of_bandwidth"] if m["bound"] == "memory" else m["fraction_of_peak_flops"]
    return (f"{r['version']:<9}{r['params']['phase']:<10}{m['arithmetic_intensity']:>8.2f}"
            f"{m['achieved_gflops']:>11.1f}{m['achieved_gbps']:>8.1f}   {frac:.0%} {m['bound']}")


#: (benchmark, header, the line of one record), in print order; no header: one line for the
#: benchmark's newest record (the machine's ceilings)
_SECTIONS = (
    ("latency", "latency (median):  version      T   total ms   TTFT ms   ms/token   tokens/s", _latency_row),
    ("memory", "memory:            version      T   KV cache       engine buffers", _memory_row),
    ("phase", "phase (share of total at T*):", _phase_row),
    ("perplexity", "quality:           version   perplexity   KL vs baseline   top-1 agreement", _perplexity_row),
    ("calibrate", None, _calibrate_line),
    ("roofline", "roofline:          version  phase     AI flop/B   GFLOP/s    GB/s   of ceiling", _roofline_row),
)


def summarize_records(records: list[dict]) -> str:
    by_bench: dict[str, list[dict]] = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], []).append(r)
    lines = []
    for benchmark, header, line in _SECTIONS:
        found = by_bench.get(benchmark)
        if not found:
            continue
        if header is None:
            lines.append(line(found[-1]))
        else:
            lines.append(header)
            lines.extend(_INDENT + line(r) for r in found)
    warnings = noise_warnings(records)
    if warnings:  # the noise guard (results/noise.py): these figures are the machine's load, not ours
        lines.append(f"noise guard: {len(warnings)} figure(s) not trustworthy (the records say so too):")
        lines.extend(_INDENT + w for w in warnings)
    return "\n".join(lines)
