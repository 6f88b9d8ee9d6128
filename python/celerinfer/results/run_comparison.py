"""Comparing two runs of a results log setting by setting (``celerinfer compare-runs``): is the
change in a metric's samples beyond noise?"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .fields import host_label, measurement_setting, sweep_cell_text
from .stats import TIME_UNITS, SampleComparison, compare_samples, format_p
from .store import read_records


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    first_timestamp: str
    num_records: int


def list_runs(records) -> list[RunInfo]:
    """The runs in ``records``, oldest first (by the earliest timestamp of each run)."""
    runs: dict[str, list] = {}
    for r in records:
        rid = r.get("run_id")
        if isinstance(rid, str):
            entry = runs.setdefault(rid, [str(r.get("timestamp") or ""), 0])
            entry[0] = min(entry[0], str(r.get("timestamp") or ""))
            entry[1] += 1
    infos = [RunInfo(rid, ts, n) for rid, (ts, n) in runs.items()]
    return sorted(infos, key=lambda i: (i.first_timestamp, i.run_id))


def resolve_run_id(runs: list[RunInfo], spec: str) -> str:
    """A run id from "latest", "previous", a full id or a unique prefix; ValueError otherwise."""
    if not runs:
        raise ValueError("no runs in the results log")
    if spec == "latest":
        return runs[-1].run_id
    if spec == "previous":
        if len(runs) < 2:
            raise ValueError("'previous' needs at least two runs in the results log")
        return runs[-2].run_id
    ids = [r.run_id for r in runs]
    if spec in ids:
        return spec
    matches = [i for i in ids if spec and i.startswith(spec)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"no run id starts with {spec!r} (runs: {', '.join(i[:8] for i in ids)})")
    raise ValueError(f"run id prefix {spec!r} is ambiguous: {', '.join(matches)}")


@dataclass(frozen=True)
class PairKey:
    """What pairs the records of two runs: benchmark, version, the params without the seed, the
    machine (host and CPU: records of different machines are never paired), the measurement
    setting (model, weight format, matmul precision, threads: ``fields.measurement_setting``)
    and, in a sweep, the cell's settings (the cells of one run are never pooled)."""

    benchmark: str
    version: str | None
    params: tuple  # sorted (name, value as JSON text) pairs
    host: str | None = None
    cell: str = ""
    setting: tuple = ()  # sorted (name, value) pairs of the measurement setting

    def params_text(self) -> str:
        return " ".join(([self.cell] if self.cell else []) + [f"{k}={v}" for k, v in self.params])

    def setting_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.setting)


def _pair_key(record: dict) -> PairKey:
    params = record.get("params") or {}
    items = tuple(sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in params.items() if k != "seed"))
    setting = tuple((k, str(v)) for k, v in measurement_setting(record).items() if v is not None)
    return PairKey(str(record.get("benchmark")), record.get("version"), items, host_label(record),
                   sweep_cell_text(record), setting)


def metric_samples(record: dict, metric: str) -> tuple[list, str] | None:
    """The raw samples of a statistics object in the record's metrics, in its own unit, and the
    unit; ``metric`` may be dotted (``phases_ms.attention``). None when absent."""
    obj = record.get("metrics")
    for part in metric.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    if not isinstance(obj, dict):
        return None
    unit = obj.get("unit") or ""
    if isinstance(obj.get("samples_ns"), list):
        scale = TIME_UNITS.get(unit, 1)
        if unit not in TIME_UNITS:
            unit = "ns"
        return [v / scale for v in obj["samples_ns"] if v is not None], unit
    if isinstance(obj.get("samples"), list):
        return [v for v in obj["samples"] if v is not None], unit
    return None


@dataclass
class RunComparison:
    """The result of :func:`compare_runs`: one (key, SampleComparison) row per setting in both runs."""

    run_a: str
    run_b: str
    metric: str
    unit: str
    lower_is_better: bool = True  # time-like metric: "slower" / "faster"
    rows: list[tuple[PairKey, SampleComparison]] = field(default_factory=list)
    only_a: list[PairKey] = field(default_factory=list)  # settings with samples in run a only
    only_b: list[PairKey] = field(default_factory=list)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def compare_runs(path, run_a: str = "previous", run_b: str = "latest", metric: str = "total_ms",
                 benchmark: str | None = None) -> RunComparison:
    """Compare the samples of ``metric`` between two runs of a results log, setting by setting.

    Records are paired by (benchmark, version, params without seed, machine, measurement setting,
    sweep cell); records
    of one run sharing a key have their samples pooled. Runs are given as ids, unique prefixes, "latest" or
    "previous" (by the runs' first timestamps). b is compared to a (ratio = median_b / median_a).
    """
    records = read_records(path, benchmark=benchmark)
    runs = list_runs(records)
    id_a, id_b = resolve_run_id(runs, run_a), resolve_run_id(runs, run_b)
    pooled: dict[str, dict] = {id_a: {}, id_b: {}}
    unit = ""
    for r in records:
        rid = r.get("run_id")
        if rid not in pooled:
            continue
        found = metric_samples(r, metric)
        if found is None or not found[0]:
            continue
        samples, unit = found[0], unit or found[1]
        pooled[rid].setdefault(_pair_key(r), []).extend(samples)
    a, b = pooled[id_a], pooled[id_b]
    lower = metric.endswith("_ms") or unit in TIME_UNITS
    report = RunComparison(run_a=id_a, run_b=id_b, metric=metric, unit=unit, lower_is_better=lower)
    for key in a:
        if key in b:
            report.rows.append((key, compare_samples(a[key], b[key], label_a="a", label_b="b",
                                                     lower_is_better=lower)))
        else:
            report.only_a.append(key)
    report.only_b = [k for k in b if k not in a]
    return report


def _direction(ratio: float, lower_is_better: bool) -> str:
    if ratio == 1.0:
        return "same"
    if lower_is_better:
        return "b slower" if ratio > 1.0 else "b faster"
    return "b larger" if ratio > 1.0 else "b smaller"


def format_comparison_report(report: RunComparison) -> str:
    """A readable table of a :class:`RunComparison`."""
    lines = [f"{report.metric}: run a {report.run_a[:12]} vs run b {report.run_b[:12]} "
             f"(ratio = median b / median a; significant: 95% CI excludes 1 and Mann-Whitney p < 0.05)"]
    unit = f" ({report.unit})" if report.unit else ""
    keys = [*(key for key, _ in report.rows), *report.only_a, *report.only_b]
    hosts = len({k.host for k in keys}) > 1
    settings = len({k.setting for k in keys}) > 1
    header = ["benchmark", "version", *(["host"] if hosts else []), *(["setting"] if settings else []), "params",
              f"median a{unit}", f"median b{unit}", "ratio", "95% CI", "p", "n a/b", "verdict"]
    table = [header]
    for key, c in report.rows:
        verdict = (_direction(c.ratio, report.lower_is_better) + ", " if c.significant else "") + c.outcome
        table.append([key.benchmark, str(key.version), *([str(key.host)] if hosts else []),
                      *([key.setting_text()] if settings else []), key.params_text() or "-",
                      f"{c.median_a:.4g}",
                      f"{c.median_b:.4g}", f"{c.ratio:.3f}", f"{c.ratio_ci95[0]:.3f}-{c.ratio_ci95[1]:.3f}",
                      format_p(c.p_value).removeprefix("p=").removeprefix("p"), f"{c.n_a}/{c.n_b}", verdict])
    if len(table) == 1:
        lines.append("no setting has samples of this metric in both runs")
        if hosts and not report.rows and {k.host for k in report.only_a}.isdisjoint(k.host for k in report.only_b):
            lines.append("the runs were measured on different machines: records are paired on the same host and "
                         "CPU only (the device_comparison plot compares machines)")
    else:
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for j, row in enumerate(table):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
    if any(not c.enough_samples for _, c in report.rows):
        lines.append("too few samples: with fewer than 4 samples a side the rank test cannot reach p < 0.05 "
                     "(raise --num-measure-runs, or compare per_token_ms: one sample per decode step)")
    for name, unpaired in (("a", report.only_a), ("b", report.only_b)):
        if unpaired:
            lines.append(f"not paired, only in run {name}: " + "; ".join(
                f"{k.benchmark} {k.version} {k.params_text()}" + (f" [{k.setting_text()}]" if k.setting else "")
                + (f" on {k.host}" if hosts else "") for k in unpaired))
    if report.only_a and report.only_b and not report.rows:
        lines.append("no record of run a has the same benchmark, version, params, model, weight format, matmul "
                     "precision, threads and machine as one of run b: nothing to compare")
    return "\n".join(lines)
