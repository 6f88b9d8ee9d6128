"""Reading the fields of records that may be incomplete, hand-made or old: nested lookups,
finite numbers, the median of a statistics object, and the names that changed.

Renamed fields, read under both names (old logs stay readable):

* ``weight_bytes`` (in ``model`` and in the memory benchmark's ``metrics``) is now
  ``f32_weight_bytes``: it always meant the fp32 size, 4 x num_parameters, which is not what
  an engine with bf16 or int8 weights reads (that is ``packed_weight_bytes``).
"""

from __future__ import annotations

import math
import numbers


def get(d, *keys):
    """d[k1][k2]...; None when any level is missing or not a dict."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def finite_number(x) -> float | None:
    """A finite float, or None (null, NaN, infinities, strings, booleans)."""
    if x is None or isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def median_of(x) -> float | None:
    """The median of a statistics object, or the number itself."""
    return finite_number(x.get("median")) if isinstance(x, dict) else finite_number(x)


def f32_weight_bytes(record: dict) -> float | None:
    """The fp32 size of the model's weights a record states: in its metrics (memory records),
    else in its model; ``weight_bytes`` in records written before the rename. None: absent."""
    for where in (record.get("metrics"), record.get("model")):
        for name in ("f32_weight_bytes", "weight_bytes"):
            value = finite_number(get(where, name))
            if value:
                return value
    return None


def host_label(record: dict) -> str | None:
    """The machine a record was measured on: 'hostname (CPU model)', and the GPU on another
    device than the CPU; None when the record names neither (hand-made, old)."""
    host, cpu = record.get("hostname"), record.get("cpu_model")
    if host is None and cpu is None:
        return None
    text = " ".join(str(x) for x in (host, f"({cpu})" if cpu else None) if x)
    device = record.get("device")
    if device not in (None, "cpu"):
        text += f" {device}" + (f" {record['gpu_name']}" if record.get("gpu_name") else "")
    return text


def sweep_cell_text(record: dict) -> str:
    """A sweep cell's settings as text, 'versions=v1 weight_dtype=int8' (its ``sweep.label``;
    '' for a record outside a sweep)."""
    label = get(record, "sweep", "label")
    return label if isinstance(label, str) else ""


def weight_format(record: dict) -> str | None:
    """The format a record's linear layers computed in: its own (``params.weight_dtype``: the
    benchmarks that measure several formats in one run), else the run's weight_dtype, for
    "stored" with the file's commonest matrix format, as 'stored (q4_1)'; None when unstated."""
    own = get(record, "params", "weight_dtype")
    if isinstance(own, str):
        return own
    requested = get(record, "model", "weight_dtype")
    formats = get(record, "model", "matrix_formats")
    if requested == "stored" and isinstance(formats, dict) and formats:
        counts = {k: v for k, v in formats.items() if finite_number(v)}
        return f"stored ({max(counts, key=counts.get)})" if counts else "stored"
    return requested if isinstance(requested, str) else None


#: what a measurement was made with, beside its version and T: never mixed in one series
SETTING_NAMES = ("model", "weights", "matmul", "threads")


def measurement_setting(record: dict) -> dict:
    """{model, weights, matmul, threads} of a record (None where unstated): records that differ
    in any of them are never drawn as one series nor paired as one setting. The weights are
    None for records that carry their own format (perplexity, compare): their plots draw the
    formats as series of one figure."""
    own = isinstance(get(record, "params", "weight_dtype"), str)
    return {"model": get(record, "model", "name"), "weights": None if own else weight_format(record),
            "matmul": get(record, "model", "matmul_precision"), "threads": record.get("threads")}
