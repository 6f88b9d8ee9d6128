"""Benchmark results: records in an append-only JSONL store, their statistics, views and
comparisons. Never imports the engine: results can be read, compared and exported anywhere.

The package: :mod:`.schema` (the record's common fields, the environment, JSON lines),
:mod:`.store` (append / read / clear a JSONL log, safely under concurrent writers),
:mod:`.stats` (statistics objects, comparing two sets of samples), :mod:`.csv_export` (the CSV
view), :mod:`.run_comparison` (``compare-runs``), :mod:`.summary` (the summary ``bench``
prints), :mod:`.fields` (reading fields of incomplete or old records) and
:mod:`.inference_metrics` (the run mode's folder: its records and the views the seed defines).
The names below are the everyday API (``from celerinfer import results``).
"""

from .csv_export import export_csv, flatten
from .run_comparison import (PairKey, RunComparison, RunInfo, compare_runs, format_comparison_report, list_runs,
                             metric_samples, resolve_run_id)
from .schema import (COMMON_FIELDS, ENVIRONMENT_FIELDS, SCHEMA_VERSION, STATUSES, environment, make_record,
                     new_run_id, record_line, to_jsonable, utc_timestamp)
from .store import ResultsWarning, append_record, append_records, clear_log, read_records

__all__ = ["COMMON_FIELDS", "ENVIRONMENT_FIELDS", "PairKey", "ResultsWarning", "RunComparison", "RunInfo",
           "SCHEMA_VERSION", "STATUSES", "append_record", "append_records", "clear_log", "compare_runs",
           "environment", "export_csv", "flatten", "format_comparison_report", "list_runs", "make_record",
           "metric_samples", "new_run_id", "read_records", "record_line", "resolve_run_id", "to_jsonable",
           "utc_timestamp"]
