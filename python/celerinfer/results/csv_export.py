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
from .schema import COMMON_FIELDS, to_jsonable

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
