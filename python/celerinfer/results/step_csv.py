"""Seed 004's per-step CSV: one row per generated token of every run-mode run, the seed's
columns first (:data:`STEP_CSV_COLUMNS`), then ours. A view of the run records' step tables
(``run.steps``, bench/seed_run.py), written beside the run mode's other views
(``inference_steps.csv``).

Column meanings on this engine: ``enqueue_latency_ms`` is the engine's own time for the step
(the CPU engine runs synchronously: the step is done when it returns); ``total_latency_ms``
the time between consecutive tokens at the caller (sampling, streaming and Python included);
``tokens_per_sec``, ``memory_throughput_gb_s`` (the bytes the step reads: weights, KV cache,
activations, by the roofline model) and ``param_throughput_gb_s`` (the weights' packed bytes)
are over ``total_latency_ms``. ``size`` is the parameter count, ``quantize`` the weight
format, ``seed`` the sampling seed, ``uuid`` the record's id.
"""

from __future__ import annotations

from .csv_export import columns_of, csv_text
from .fields import finite_number, get

STEP_CSV_COLUMNS = ("step", "enqueue_latency_ms", "total_latency_ms", "tokens_per_sec", "memory_throughput_gb_s",
                    "param_throughput_gb_s", "generated_text", "platform", "release", "device", "username",
                    "hostname", "size", "quantize", "seed", "uuid")


def size_label(num_parameters) -> str | None:
    """'135M', '1.1B' (None when unknown)."""
    n = finite_number(num_parameters)
    if not n:
        return None
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def _per_second(amount, ms):
    amount, ms = finite_number(amount), finite_number(ms)
    return amount / (ms / 1e3) if amount is not None and ms else None


def step_rows(records: list[dict]) -> list[dict]:
    """The CSV's rows: every step of every run record that has a step table, in store order."""
    rows = []
    for record in records:
        run = record.get("run")
        steps = run.get("steps") if isinstance(run, dict) else None
        if not isinstance(steps, list):
            continue
        for step in steps:
            if not isinstance(step, dict):
                continue
            wall = finite_number(step.get("wall_ms"))
            weight_rate, read_rate = _per_second(step.get("weight_bytes"), wall), _per_second(step.get("bytes_read"), wall)
            rows.append({
                "step": step.get("step"), "enqueue_latency_ms": step.get("engine_ms"), "total_latency_ms": wall,
                "tokens_per_sec": 1e3 / wall if wall else None,
                "memory_throughput_gb_s": read_rate / 1e9 if read_rate is not None else None,
                "param_throughput_gb_s": weight_rate / 1e9 if weight_rate is not None else None,
                "generated_text": step.get("token_text"), "platform": run.get("platform"),
                "release": run.get("release"), "device": run.get("device"), "username": run.get("username"),
                "hostname": record.get("hostname"), "size": size_label(get(record, "model", "num_parameters")),
                "quantize": run.get("weight_dtype") or get(record, "model", "weight_dtype"),
                "seed": get(run, "sampling", "seed"), "uuid": record.get("record_id"),
                "run_name": run.get("run_name"), "version": run.get("version"), "optimized": run.get("optimized"),
                "token_id": step.get("token_id"), "cpu_model": record.get("cpu_model"), "threads": record.get("threads"),
                "model": run.get("model")})
    return rows


def steps_csv_text(records: list[dict], cell) -> str:
    """The per-step CSV of the records (`cell` writes one value)."""
    rows = step_rows(records)
    return csv_text(rows, columns_of(rows, first=STEP_CSV_COLUMNS), cell, lineterminator="\n")
