"""Which records a plot shows and the values it reads from them: run selection (each
benchmark's latest run by default), the newest record per setting, samples and error bars of
statistics objects, speeds and the measured ceilings."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Iterable

import numpy as np

from ..results.fields import finite_number, get, host_label, measurement_setting, median_of
from .style import versions_order


def samples_of(stat, unit_ns: float = 1e6) -> np.ndarray:
    """The raw samples of a statistics object in its unit (samples_ns / unit_ns, or samples)."""
    if not isinstance(stat, dict):
        return np.zeros(0)
    raw = stat.get("samples_ns")
    scale = unit_ns
    if not isinstance(raw, (list, tuple)) or not raw:
        raw, scale = stat.get("samples"), 1.0
    if not isinstance(raw, (list, tuple)) or not raw:
        return np.zeros(0)
    vals = np.array([v for v in (finite_number(x) for x in raw) if v is not None], dtype=np.float64)
    return vals / scale


def error_bars(stat, median: float) -> tuple[float, float] | None:
    """(below, above) error of a median: the ci95 interval, else +-std, else None."""
    if not isinstance(stat, dict):
        return None
    lo, hi = finite_number(stat.get("ci95_low")), finite_number(stat.get("ci95_high"))
    if lo is not None and hi is not None:
        return max(median - lo, 0.0), max(hi - median, 0.0)
    std = finite_number(stat.get("std"))
    if std is not None:
        return abs(std), abs(std)
    return None


def timestamp_of(record) -> float:
    t = record.get("timestamp") if isinstance(record, dict) else None
    if not isinstance(t, str):
        return float("-inf")
    try:
        dt = datetime.fromisoformat(t.strip().replace("Z", "+00:00"))
    except ValueError:
        return float("-inf")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def T_of(record) -> int | None:
    t = finite_number(get(record, "params", "T"))
    return int(t) if t is not None else None


def select_records(records: Iterable[dict], run_id: str | None = None) -> list[dict]:
    """The records to plot. run_id None (or "latest"): per benchmark, the records of its latest run
    (the run whose newest record is newest; on equal timestamps the one later in the list);
    "all": every record; otherwise the run with that id (or unique id prefix): ValueError when no
    record has it. Non-dict entries and records without a benchmark are dropped."""
    recs = [r for r in records if isinstance(r, dict) and isinstance(r.get("benchmark"), str)]
    if run_id is None or run_id == "latest":
        newest: dict[str, dict] = {}
        for index, r in enumerate(recs):
            key = (timestamp_of(r), index)
            runs = newest.setdefault(r["benchmark"], {})
            rid = r.get("run_id")
            if rid not in runs or key > runs[rid]:
                runs[rid] = key
        chosen = {bench: max(runs, key=runs.get) for bench, runs in newest.items()}
        return [r for r in recs if r.get("run_id") == chosen[r["benchmark"]]]
    if run_id == "all":
        return recs
    ids = {r.get("run_id") for r in recs}
    if run_id not in ids:
        matches = sorted(i for i in ids if isinstance(i, str) and i.startswith(str(run_id)))
        if len(matches) != 1:
            known = ", ".join(sorted(str(i)[:12] for i in ids if i is not None)) or "none"
            what = "is ambiguous" if matches else "matches no record"
            raise ValueError(f"run id {run_id!r} {what} (runs in these records: {known})")
        run_id = matches[0]
    return [r for r in recs if r.get("run_id") == run_id]


#: sweep settings the plots show on their own axes or series (versions, T): not facets
_PLOTTED_SETTINGS = ("versions", "T_values", "T_star")
#: a sweep cell's keys that name a measurement setting (fields.SETTING_NAMES) themselves
_CELL_NAMES = {"model": "model", "preset": "model", "weight_dtype": "weights", "matmul_precision": "matmul",
               "threads": "threads"}


def setting_items(record: dict) -> dict:
    """What a record was measured with beside its version and T: in a sweep the cell's settings
    but those the plots draw themselves (versions, T), then the measurement setting (model,
    weight format, matmul precision, threads: ``fields.measurement_setting``) but what the
    cell names already; {name: value as text}, None values left out."""
    cell = get(record, "sweep", "cell")
    cell = cell if isinstance(cell, dict) else {}
    out = {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in cell.items()
           if k not in _PLOTTED_SETTINGS}
    named = {_CELL_NAMES[k] for k in cell if k in _CELL_NAMES}
    out.update({k: str(v) for k, v in measurement_setting(record).items() if v is not None and k not in named})
    return out


def facet_of(record: dict) -> tuple[str | None, str]:
    """(machine, setting) of a record: its host and CPU (``results.fields.host_label``) and every
    item of :func:`setting_items`, e.g. 'weight_dtype=int8 model=tiny matmul=highest threads=2'."""
    return host_label(record), " ".join(f"{k}={v}" for k, v in setting_items(record).items())


def facets(records: Iterable[dict]) -> dict[tuple, list[dict]]:
    """{(machine, setting): its records} in order of first appearance: what make_plots draws
    apart, so that no series mixes machines, models, weight formats, matmul precisions, thread
    counts or a sweep's cells. The setting names only the items (:func:`setting_items`) that
    take two values or more among the records ('' when none does). Records naming no machine
    join the one machine there is; records without a version (calibrate) join every facet of
    their machine."""
    recs = list(records)
    machines = {host_label(r) for r in recs} - {None}
    measured = [r for r in recs if isinstance(r.get("version"), str)]
    items = [setting_items(r) for r in measured]
    values: dict[str, set] = {}
    for it in items:
        for k, v in it.items():
            values.setdefault(k, set()).add(v)
    varying = [k for k, vs in values.items() if len(vs) > 1]
    out: dict[tuple, list[dict]] = {}
    for r, it in zip(measured, items):
        machine = host_label(r)
        if machine is None and len(machines) == 1:
            machine = next(iter(machines))
        out.setdefault((machine, " ".join(f"{k}={it[k]}" for k in varying if k in it)), []).append(r)
    if not out:
        return {(next(iter(machines)) if len(machines) == 1 else None, ""): recs} if recs else {}
    for r in recs:  # calibrate and other unversioned records: every facet of their machine
        if isinstance(r.get("version"), str):
            continue
        machine = host_label(r)
        for (m, _), group in out.items():
            if machine is None or m is None or m == machine:
                group.append(r)
    return out


def records_of(records: Iterable[dict], benchmark: str) -> list[dict]:
    return [r for r in records if r.get("benchmark") == benchmark and isinstance(r.get("version"), str)
            and isinstance(r.get("metrics"), dict)]


def newest_by(records: Iterable[dict], key: Callable[[dict], object]) -> dict:
    """{key(r): the newest record with that key} (records whose key is None are skipped)."""
    out: dict = {}
    best: dict = {}
    for index, r in enumerate(records):
        k = key(r)
        if k is None:
            continue
        rank = (timestamp_of(r), index)
        if k not in best or rank > best[k]:
            best[k], out[k] = rank, r
    return out


def by_version_and_T(records: Iterable[dict], benchmark: str) -> dict[str, dict[int, dict]]:
    """{version: {T: newest record}} of one benchmark."""
    newest = newest_by(records_of(records, benchmark),
                       lambda r: (r["version"], T_of(r)) if T_of(r) is not None else None)
    out: dict[str, dict[int, dict]] = {}
    for (v, T), r in newest.items():
        out.setdefault(v, {})[T] = r
    return {v: dict(sorted(out[v].items())) for v in versions_order(out)}


def compatible(a: dict, b: dict) -> bool:
    """Records measured on the same model with the same prompt length and batch size."""
    for path in (("model", "name"), ("params", "prompt_length"), ("params", "batch_size")):
        x, y = get(a, *path), get(b, *path)
        if x is not None and y is not None and x != y:
            return False
    return True


def tokens_per_s(record) -> float | None:
    m = record["metrics"]
    tps = finite_number(m.get("tokens_per_s"))
    if tps is None:
        total = median_of(m.get("total_ms"))
        T, batch = T_of(record), finite_number(get(record, "params", "batch_size")) or 1
        if total and T:
            tps = batch * T / (total / 1e3)
    return tps if tps and tps > 0 else None


def decode_tokens_per_s(record) -> float | None:
    m = record["metrics"]
    tps = finite_number(m.get("decode_tokens_per_s"))
    if tps is None:
        per = median_of(m.get("per_token_ms"))
        batch = finite_number(get(record, "params", "batch_size")) or 1
        if per:
            tps = batch / (per / 1e3)
    return tps if tps and tps > 0 else None


def measured_peaks(records: list[dict]) -> tuple[float | None, float | None, str]:
    """(GB/s, GFLOP/s, source) from the roofline records' peaks, else the calibrate record (its
    bandwidth ceiling where it has one)."""
    roof = records_of(records, "roofline")
    gbps = [g for g in (finite_number(r["metrics"].get("peak_gbps")) for r in roof) if g]
    gflops = [g for g in (finite_number(r["metrics"].get("peak_gflops")) for r in roof) if g]
    bw = float(np.median(gbps)) if gbps else None
    fl = float(np.median(gflops)) if gflops else None
    source = "measured"
    cal = [r for r in records if r.get("benchmark") == "calibrate" and isinstance(r.get("metrics"), dict)]
    if cal and (bw is None or fl is None):
        newest = max(enumerate(cal), key=lambda ir: (timestamp_of(ir[1]), ir[0]))[1]
        if bw is None:  # the ceiling (best triad or read-only stream), else (older records) the triad
            bw = finite_number(newest["metrics"].get("bandwidth_ceiling_gbps")) or median_of(
                newest["metrics"].get("bandwidth_gbps"))
        if fl is None:
            fl = median_of(newest["metrics"].get("matmul_gflops"))
        source = "measured by calibrate"
    return (bw if bw and bw > 0 else None), (fl if fl and fl > 0 else None), source
