"""atheris fuzz target: the results log reader (python/celerinfer/results/store.py).

`read_records` must take any bytes: a damaged line is skipped with a ResultsWarning, never an
exception. Any exception escaping it is a finding. Not part of the pytest run (scripts/fuzz.sh
runs it; docs/guide/troubleshooting.md#fuzzing-and-sanitizer-builds).

Usage: python cpp/fuzz/fuzz_results_lines.py [libFuzzer flags] [CORPUS_DIR...]
       python cpp/fuzz/fuzz_results_lines.py --make-seeds DIR
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["celerinfer.results"]):
    from celerinfer.results import store

_FD, _PATH = tempfile.mkstemp(prefix="celer_fuzz_results_", suffix=".jsonl", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def test_one_input(data: bytes) -> None:
    os.ftruncate(_FD, 0)
    os.pwrite(_FD, data, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", store.ResultsWarning)
        records = store.read_records(_PATH)
        store.read_records(_PATH, benchmark="latency", run_id="r1")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise AssertionError("read_records returned something other than a list of dicts")


def make_seeds(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    good = {"schema_version": 1, "benchmark": "latency", "run_id": "r1", "version": "v1", "T": 16,
            "metrics": {"ttft_s": 0.01, "tokens_per_s": [1.5, 2.5]}, "env": {"cpu": "x", "threads": 2}}
    lines = [json.dumps(good), json.dumps({**good, "benchmark": "memory", "run_id": "r2"})]
    seeds = {
        "good": "\n".join(lines) + "\n",
        "damaged": lines[0][: len(lines[0]) // 2] + "\n" + lines[1] + "\n",
        "blank-and-junk": "\n\n  \nnot json\n[1, 2]\n\"s\"\n{}\n",
        "nested": "[" * 50 + "]" * 50 + "\n" + '{"a":' * 30 + "1" + "}" * 30 + "\n",
        "deeply-nested": "[" * 3000 + "\n" + '{"a":' * 3000 + "\n",
        "nan": '{"schema_version": 1, "x": NaN, "y": Infinity}\n',
        "unicode": '{"schema_version": 1, "s": "\\ud800 \\u00e9"}\n',
        "bad-utf8": b'{"schema_version": 1, "s": "\xff\xfe"}\n',
    }
    for name, text in seeds.items():
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())


if __name__ == "__main__":
    from atheris_main import main  # beside this file: python puts the script's folder on sys.path

    main(make_seeds, test_one_input)
