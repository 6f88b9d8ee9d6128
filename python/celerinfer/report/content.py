"""What a report says, independent of how it is drawn (HTML, PDF, the terminal): the machines
and their measured ceilings, what was compared, one table per benchmark, the speedups with
their confidence, and the noise guard's warnings. Built from records alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..plots.selection import by_version_and_T, decode_tokens_per_s, facets, select_records, timestamp_of
from ..results.fields import finite_number, get, host_label, median_of, weight_format
from ..results.noise import noise_warnings
from ..results.speedup import speedup


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class ReportContent:
    title: str
    machines: list[dict]            # {label, cpu, threads, simd, bandwidth_gbps, ceiling_gbps, matmul_gflops}
    compared: list[str]             # sentences: what was measured and against what
    tables: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)


def _distinct(values) -> list:
    out = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


def _f(x, spec: str) -> str:
    x = finite_number(x)
    return "-" if x is None else format(x, spec)


def _machines(records: list[dict]) -> list[dict]:
    out: dict[str, dict] = {}
    for r in records:
        label = host_label(r) or "unknown machine"
        m = out.setdefault(label, {"label": label, "cpu": r.get("cpu_model"), "cpus": r.get("cpu_count"),
                                   "threads": set(), "simd": set(), "bandwidth_gbps": None, "ceiling_gbps": None,
                                   "read_gbps": None, "matmul_gflops": None, "_calibrated": float("-inf")})
        if r.get("threads") is not None:
            m["threads"].add(r["threads"])
        if r.get("simd_level"):
            m["simd"].add(r["simd_level"])
        metrics = r.get("metrics") if isinstance(r.get("metrics"), dict) else {}
        if r.get("benchmark") == "calibrate" and timestamp_of(r) >= m["_calibrated"]:
            m["_calibrated"] = timestamp_of(r)
            m["bandwidth_gbps"] = median_of(metrics.get("bandwidth_gbps"))
            m["read_gbps"] = median_of(metrics.get("read_bandwidth_gbps"))
            m["ceiling_gbps"] = finite_number(metrics.get("bandwidth_ceiling_gbps"))
            m["matmul_gflops"] = median_of(metrics.get("matmul_gflops"))
        elif r.get("benchmark") == "compare" and m["ceiling_gbps"] is None:
            m["bandwidth_gbps"] = finite_number(metrics.get("bandwidth_gbps")) or m["bandwidth_gbps"]
            m["ceiling_gbps"] = finite_number(metrics.get("bandwidth_ceiling_gbps"))
    for m in out.values():
        m["threads"] = sorted(m["threads"])
        m["simd"] = sorted(m["simd"])
        m.pop("_calibrated")
    return list(out.values())


def _compared(records: list[dict]) -> list[str]:
    lines = []
    benchmarks = _distinct(r.get("benchmark") for r in records)
    models = _distinct(get(r, "model", "name") for r in records)
    formats = _distinct(weight_format(r) for r in records)
    versions = _distinct(r.get("version") for r in records)
    lines.append(f"benchmarks: {', '.join(map(str, benchmarks))}")
    if models:
        lines.append(f"models: {', '.join(map(str, models))}")
    if formats:
        lines.append(f"weight formats: {', '.join(map(str, formats))}")
    precisions = _distinct(get(r, "model", "matmul_precision") for r in records)
    if precisions:
        lines.append(f"matmul precision: {', '.join(map(str, precisions))}")
    if versions:
        lines.append(f"KV-cache versions: {', '.join(map(str, versions))}")
    backends = _distinct(get(r, "params", "backend") for r in records)
    if backends:
        lines.append(f"backends (bench compare, round-robin, same threads, same file): {', '.join(backends)}")
    lines.append("speedups are ratios of medians, with a bootstrap 95% CI; 'too few samples' where the rank "
                 "test cannot reach p < 0.05 at the sample sizes")
    return lines


def _latency_table(records: list[dict]) -> Table | None:
    data = by_version_and_T(records, "latency")
    if not data:
        return None
    rows = []
    for version, by_T in data.items():
        for T, r in by_T.items():
            m = r["metrics"]
            per = m.get("per_token_ms") or {}
            rows.append([version, str(T), weight_format(r) or "-", str(r.get("threads") or "-"),
                         _f(median_of(m.get("total_ms")), ".2f"), _f(median_of(m.get("ttft_ms")), ".2f"),
                         _f(median_of(per), ".3f"), f"{_f(per.get('ci95_low'), '.3f')}-{_f(per.get('ci95_high'), '.3f')}",
                         _f(decode_tokens_per_s(r), ".1f"), str(get(r, "noise", "verdict") or "-")])
    return Table("Latency (medians)", ["version", "T", "weights", "threads", "total ms", "TTFT ms", "ms/token",
                                       "ms/token 95% CI", "decode tok/s", "noise guard"], rows)


def _speedup_table(records: list[dict], baseline: str = "v0") -> Table | None:
    data = by_version_and_T(records, "latency")
    if baseline not in data:
        return None
    rows = []
    for version, by_T in data.items():
        if version == baseline:
            continue
        for T, r in by_T.items():
            base = data[baseline].get(T)
            a, b = get(base, "metrics", "total_ms", "samples_ns"), get(r, "metrics", "total_ms", "samples_ns")
            if not a or not b:
                continue
            s = speedup(a, b, higher_is_better=False)
            rows.append([version, str(T), f"{s.ratio:.2f}x", f"{s.ci95[0]:.2f}-{s.ci95[1]:.2f}",
                         f"{s.n_baseline}/{s.n_candidate}", s.outcome])
    if not rows:
        return None
    return Table(f"Speedup over {baseline} (total time, ratio of medians)",
                 ["version", "T", "speedup", "95% CI", "n (base/version)", "confidence"], rows)


def _memory_table(records: list[dict]) -> Table | None:
    data = by_version_and_T(records, "memory")
    rows = []
    for version, by_T in data.items():
        T = max(by_T)
        m = by_T[T]["metrics"]
        rows.append([version, str(T), _f((finite_number(m.get("kv_cache_bytes")) or 0) / 2**20, ".3f"),
                     _f(m.get("kv_bytes_per_token"), ".0f"), _f((finite_number(m.get("engine_bytes")) or 0) / 2**20, ".2f"),
                     _f((finite_number(m.get("packed_weight_bytes")) or 0) / 2**20, ".1f")])
    return Table("Memory (the largest T)", ["version", "T", "KV cache MiB", "KV bytes/token", "engine buffers MiB",
                                            "packed weights MiB"], rows) if rows else None


def _quality_table(records: list[dict]) -> Table | None:
    recs = [r for r in records if r.get("benchmark") == "perplexity" and isinstance(r.get("metrics"), dict)]
    rows = [[str(r.get("version")), weight_format(r) or "-", _f(r["metrics"].get("perplexity"), ".3f"),
             _f(r["metrics"].get("kl_vs_baseline"), ".2e"),
             _f((finite_number(r["metrics"].get("top1_agreement")) or 0) * 100, ".1f")] for r in recs]
    return Table("Quality (teacher-forced next-token)", ["version", "weights", "perplexity", "KL vs baseline",
                                                         "top-1 agreement %"], rows) if rows else None


def _compare_table(records: list[dict]) -> Table | None:
    recs = [r for r in records if r.get("benchmark") == "compare" and isinstance(r.get("metrics"), dict)]
    rows = []
    for r in recs:
        m = r["metrics"]
        vs = m.get("vs_llama_cpp") or {}

        def ratio(key):
            ci = vs.get(f"{key}_ci95")
            return "-" if vs.get(key) is None else f"{vs[key]:.2f}x" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "")
        rows.append([str(get(r, "params", "label")), _f(median_of(m.get("pp_tokens_per_s")), ".1f"),
                     _f(median_of(m.get("tg_tokens_per_s")), ".2f"), ratio("pp"), ratio("tg"),
                     _f((finite_number(m.get("ceiling_fraction")) or 0) * 100, ".0f")])
    return Table("Backends on the same file", ["setup", "prefill tok/s", "decode tok/s", "prefill vs llama.cpp",
                                              "decode vs llama.cpp", "% of bandwidth ceiling"], rows) if rows else None


def _run_mode_table(records: list[dict]) -> Table | None:
    runs = [r["run"] for r in records if r.get("benchmark") == "run" and isinstance(r.get("run"), dict)]
    if not runs:
        return None
    from ..plots.inference_metrics import comparison_summary

    rows = [[str(run.get("run_name")), str(run.get("version")), "yes" if run.get("optimized") else "no",
             _f(run.get("tokens_per_second"), ".1f"), _f(run.get("time_per_token"), ".2f"),
             _f(run.get("memory_used_mb"), ".2f")] for run in runs]
    summary = comparison_summary(runs, "all")
    note = ""
    if summary["speedup"] is not None:
        low, high = summary["speedup_ci95"]
        note = f"speedup {summary['speedup']:.2f}x (95% CI {low:.2f}-{high:.2f}): median optimized tokens/s / median non-optimized"
    return Table("Run mode (celerinfer run --benchmark)", ["run", "version", "optimized", "tokens/s", "ms/token",
                                                            "memory MB"], rows, note)


def report_content(records: list[dict], run_id: str | None = "all", title: str | None = None) -> ReportContent:
    """The report of `records` (run_id: as for the plots; default every run given)."""
    recs = select_records(records, run_id)
    if not recs:
        raise ValueError("no records to report")
    runs = _distinct(r.get("run_id") for r in recs)
    content = ReportContent(title=title or f"celerinfer report: {len(runs)} run(s), {len(recs)} records",
                            machines=_machines(recs), compared=_compared(recs), warnings=noise_warnings(recs),
                            runs=[str(r) for r in runs], records=recs)
    # the per-setting tables once per facet (model, weight format, matmul precision, threads,
    # machine, sweep cell), so that no row mixes settings; the others over every record
    groups = facets([r for r in recs if r.get("benchmark") in ("latency", "memory")])
    several = len(groups) > 1
    for (machine, setting), group in groups.items():
        for make in (_latency_table, _speedup_table, _memory_table):
            table = make(group)
            if table is not None:
                label = " ".join(x for x in (setting, f"on {machine}" if several and machine else "") if x)
                if several and label:
                    table.title += f": {label}"
                content.tables.append(table)
    for make in (_quality_table, _compare_table, _run_mode_table):
        table = make(recs)
        if table is not None:
            content.tables.append(table)
    return content


__all__ = ["ReportContent", "Table", "report_content"]
