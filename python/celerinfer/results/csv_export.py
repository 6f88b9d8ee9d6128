"""CSV views of records: one row per record, nested fields as dotted columns
(``metrics.total_ms.median``). :func:`export_csv` is the results log's view; the pieces
(:func:`flatten`, :func:`columns_of`, :func:`csv_text`) also make the run mode's
``inference_metrics.csv``."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..io.atomic import atomic_file
from .fields import weight_format
from .schema import COMMON_FIELDS, to_jsonable
from .stats import TIME_UNITS

#: keys holding raw samples, left out of the results log's CSV view
SAMPLE_KEYS = frozenset({"samples_ns", "samples"})


def flatten(record: dict, prefix: str = "", *, depth: int | None = None, drop_samples: bool = True) -> dict:
    """Nested dicts as dotted keys (``metrics.total_ms.median``), `depth` levels down (None: all
    the way; a dict further down stays a value); raw sample lists left out (drop_samples)."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if drop_samples and key in SAMPLE_KEYS and isinstance(value, list):
            continue
        if isinstance(value, dict) and (depth is None or depth > 0):
            flat.update(flatten(value, name + ".", depth=None if depth is None else depth - 1,
                                drop_samples=drop_samples))
        else:
            flat[name] = value
    return flat


def columns_of(rows: list[dict], first=()) -> list[str]:
    """Every column of the rows, `first` ones first, then the others in order of first appearance."""
    seen = dict.fromkeys(first)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def csv_text(rows: list[dict], columns: list[str], cell, lineterminator: str = "\r\n") -> str:
    """The rows as CSV text: a header of `columns`, then one line per row, each value through `cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=lineterminator)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def _column_rank(column: str) -> int:
    head = column.split(".", 1)[0]
    return COMMON_FIELDS.index(head) if head in COMMON_FIELDS else len(COMMON_FIELDS)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, list):
        return json.dumps(value, allow_nan=False)
    return str(value)


def export_csv(records, path) -> Path:
    """Write records as CSV, one row per record (see :func:`flatten`; other lists as JSON text);
    the columns are the union over the records, the common fields first in schema order, then
    the others in order of first appearance. Written atomically (temporary file + rename)."""
    rows = [flatten(to_jsonable(r)) for r in records]
    columns = sorted(columns_of(rows), key=_column_rank)  # stable: first-seen order within a rank
    text = csv_text(rows, columns, _cell)
    with atomic_file(path, newline="") as f:
        f.write(text)
    return path


#: the columns of the samples view, in order (then any params.* of the records)
SAMPLE_COLUMNS = ("record_id", "run_id", "timestamp", "hostname", "cpu_model", "threads", "model", "weight_dtype",
                  "benchmark", "version", "metric", "unit", "index", "value")


def _samples_in(metrics, prefix=""):
    """(dotted metric name, unit, values in the unit) of every statistics object with raw samples."""
    if not isinstance(metrics, dict):
        return
    for key, value in metrics.items():
        if not isinstance(value, dict):
            continue
        name = f"{prefix}{key}"
        unit = value.get("unit") if isinstance(value.get("unit"), str) else ""
        if isinstance(value.get("samples_ns"), list):
            scale = TIME_UNITS.get(unit, 1)
            yield name, unit if unit in TIME_UNITS else "ns", [v / scale if v is not None else None
                                                               for v in value["samples_ns"]]
        elif isinstance(value.get("samples"), list):
            yield name, unit, value["samples"]
        else:
            yield from _samples_in(value, name + ".")


def sample_rows(records) -> list[dict]:
    """One row per raw sample of every statistics object of every record (the samples that
    :func:`export_csv` leaves out), with what identifies the measurement."""
    rows = []
    for r in records:
        if not isinstance(r, dict):
            continue
        head = {"record_id": r.get("record_id"), "run_id": r.get("run_id"), "timestamp": r.get("timestamp"),
                "hostname": r.get("hostname"), "cpu_model": r.get("cpu_model"), "threads": r.get("threads"),
                "model": (r.get("model") or {}).get("name") if isinstance(r.get("model"), dict) else None,
                "weight_dtype": weight_format(r), "benchmark": r.get("benchmark"), "version": r.get("version")}
        params = flatten(r["params"], "params.") if isinstance(r.get("params"), dict) else {}
        for metric, unit, values in _samples_in(r.get("metrics")):
            for i, v in enumerate(values):
                rows.append({**head, "metric": metric, "unit": unit, "index": i, "value": v, **params})
    return rows


def export_samples_csv(records, path) -> tuple[Path, int]:
    """Write :func:`sample_rows` as CSV (atomically); returns the path and the row count."""
    rows = [to_jsonable(row) for row in sample_rows(records)]
    text = csv_text(rows, columns_of(rows, first=SAMPLE_COLUMNS), _cell)
    with atomic_file(path, newline="") as f:
        f.write(text)
    return path, len(rows)
