"""The results store: records, NaN-free JSONL appends (also concurrent and killed), damaged-line
handling, the CSV view, clear_log and comparing runs."""

import csv
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from datetime import datetime, timedelta, timezone
from importlib.metadata import version as dist_version
from pathlib import Path

import numpy as np
import pytest

from celerinfer import results
from celerinfer.results import (COMMON_FIELDS, SCHEMA_VERSION, ResultsWarning, append_record, append_records,
                                clear_log, compare_runs, environment, export_csv, format_comparison_report,
                                make_record, new_run_id, read_records)
from celerinfer.results import schema
from celerinfer.results.stats import summarize

HEX32 = re.compile(r"[0-9a-f]{32}")


def _record(run_id=None, benchmark="latency", version="v1", metrics=None, **params):
    params = {"prompt_length": 8, "batch_size": 1, "T": 16, "seed": 0, **params}
    model = {"name": "tiny", "config": {"hidden_size": 64, "num_hidden_layers": 2}, "num_parameters": 1234,
             "weight_bytes": 4936, "seed": 0}
    flags = {"description": "fp32 cache", "use_cache": True, "kv_dtype": "float32", "kv_quant": None,
             "cross_layer_sharing": False, "kivi_block": 0}
    metrics = metrics if metrics is not None else {"total_ms": summarize([1_000_000, 2_000_000, 3_000_000])}
    return make_record(benchmark, version, flags, model, params, metrics, run_id or new_run_id(), threads=2)


def _lines(path):
    return Path(path).read_bytes().split(b"\n")


def _read_no_warning(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = read_records(path, **kw)
    assert caught == [], [str(w.message) for w in caught]
    return recs


# ------------------------------------------------------------------------------------------ records


def test_environment_fields():
    env = environment()
    assert list(env) == list(results.ENVIRONMENT_FIELDS)
    assert isinstance(env["hostname"], str) and env["hostname"]
    assert env["package_version"] == dist_version("celerinfer")
    assert env["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["numpy_version"] == np.__version__
    try:
        assert env["torch_version"] == dist_version("torch")
    except Exception:  # torch not installed
        assert env["torch_version"] is None
    assert env["cpu_count"] == os.cpu_count()
    assert env["cpu_model"] is None or (isinstance(env["cpu_model"], str) and env["cpu_model"])
    assert (env["device"], env["gpu_name"], env["dtype"]) == ("cpu", None, "float32")
    source = Path(results.__file__).resolve().parent
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "__init__.py"], cwd=source,
                             capture_output=True).returncode == 0
    if tracked:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True)
        assert env["git_commit"] == head.stdout.strip() and re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])
    else:
        assert env["git_commit"] is None
    # cached per process, but every caller gets its own dict
    env["hostname"] = "changed"
    assert environment()["hostname"] != "changed"


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert schema._git_commit(tmp_path) is None
    assert schema._git_commit(tmp_path / "does-not-exist") is None


def test_make_record_has_every_common_field():
    run_id = new_run_id()
    assert HEX32.fullmatch(run_id)
    before = datetime.now(timezone.utc)
    rec = _record(run_id)
    after = datetime.now(timezone.utc)
    assert list(rec) == list(COMMON_FIELDS)
    assert rec["schema_version"] == SCHEMA_VERSION == 1
    assert HEX32.fullmatch(rec["record_id"]) and rec["record_id"] != run_id
    assert rec["run_id"] == run_id
    stamp = datetime.fromisoformat(rec["timestamp"])
    assert stamp.utcoffset() == timedelta(0) and before <= stamp <= after
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", rec["timestamp"])
    for key, value in environment().items():
        assert rec[key] == value
    assert rec["threads"] == 2 and rec["benchmark"] == "latency" and rec["version"] == "v1"
    assert rec["model"]["config"]["hidden_size"] == 64 and rec["version_flags"]["kv_dtype"] == "float32"
    assert rec["params"]["T"] == 16 and rec["metrics"]["total_ms"]["median"] == pytest.approx(2.0)
    assert rec["status"] == "ok"
    assert _record(run_id)["record_id"] != rec["record_id"]


def test_make_record_extras_and_validation():
    rid = new_run_id()
    rec = make_record("calibrate", None, None, None, {"threads": 2}, {}, rid, None, status="interrupted",
                      device="cuda", gpu_name="H200", note="x")
    assert rec["version"] is None and rec["threads"] is None and rec["status"] == "interrupted"
    assert (rec["device"], rec["gpu_name"], rec["note"]) == ("cuda", "H200", "x")
    assert list(rec)[:len(COMMON_FIELDS)] == list(COMMON_FIELDS)
    assert environment()["device"] == "cpu"  # the override did not leak into the cache
    with pytest.raises(ValueError, match="status"):
        make_record("latency", "v1", {}, {}, {}, {}, rid, 1, status="done")
    with pytest.raises(ValueError, match="record_id"):
        make_record("latency", "v1", {}, {}, {}, {}, rid, 1, record_id="abc")
    with pytest.raises(ValueError, match="benchmark"):
        make_record("", "v1", {}, {}, {}, {}, rid, 1)
    with pytest.raises(ValueError, match="params"):
        make_record("latency", "v1", {}, {}, [1], {}, rid, 1)


# ------------------------------------------------------------------------------------------ JSONL


def test_nan_inf_and_numpy_become_plain_json(tmp_path):
    path = tmp_path / "deep" / "dir" / "results.jsonl"
    metrics = {
        "loss": float("nan"),
        "kl": np.float32("inf"),
        "nested": {"a": [1.0, float("-inf"), {"b": np.float64("nan")}], "t": (np.int16(3), np.bool_(True))},
        "array": np.array([[1.5, np.nan], [np.inf, 2.0]], dtype=np.float32),
        "count": np.int64(2**40),
        "ratio": np.float32(0.5),
        "ok": np.bool_(False),
        "path": Path("/x/y"),
        7: "int key",
    }
    rec = _record(metrics=metrics)
    append_record(path, rec)
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert "NaN" not in text and "Infinity" not in text
    parsed = json.loads(text.splitlines()[0], parse_constant=lambda c: pytest.fail(f"bare {c} in the file"))
    m = parsed["metrics"]
    assert m["loss"] is None and m["kl"] is None
    assert m["nested"] == {"a": [1.0, None, {"b": None}], "t": [3, True]}
    assert m["array"] == [[1.5, None], [None, 2.0]]
    assert m["count"] == 2**40 and m["ratio"] == 0.5 and m["ok"] is False and m["path"] == "/x/y"
    assert m["7"] == "int key"
    assert parsed["record_id"] == rec["record_id"]
    assert _read_no_warning(path) == [parsed]


def test_unstorable_record_writes_nothing(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, _record())
    before = path.read_bytes()
    with pytest.raises(TypeError, match="object"):
        append_records(path, [_record(), _record(metrics={"x": object()})])
    assert path.read_bytes() == before


def test_append_read_filter_and_missing_file(tmp_path):
    path = tmp_path / "r.jsonl"
    assert read_records(path) == []
    run_a, run_b = new_run_id(), new_run_id()
    recs = [_record(run_a, T=t) for t in (1, 2, 3)] + [_record(run_b, benchmark="memory", T=9)]
    append_records(path, recs[:2])
    append_record(path, recs[2])
    append_records(path, recs[3:])
    append_records(path, [])  # no-op
    assert len(_lines(path)) == 5 and _lines(path)[-1] == b""
    got = _read_no_warning(path)
    assert [r["record_id"] for r in got] == [r["record_id"] for r in recs]
    assert [r["params"]["T"] for r in _read_no_warning(path, run_id=run_a)] == [1, 2, 3]
    assert [r["params"]["T"] for r in _read_no_warning(path, benchmark="memory")] == [9]
    assert _read_no_warning(path, benchmark="memory", run_id=run_a) == []


def test_damaged_lines_are_skipped_with_one_warning(tmp_path):
    path = tmp_path / "r.jsonl"
    good = [_record(T=t) for t in range(3)]
    append_records(path, good[:2])
    with open(path, "ab") as f:
        f.write(b"{not json at all\n")          # line 3
        f.write(b"[1, 2, 3]\n")                 # line 4: not an object
        f.write(b'{"benchmark": "latency"}\n')  # line 5: no schema_version
        f.write(b"\n")                          # blank: ignored, not damage
        f.write(b"\xff\xfe garbage\n")           # line 7: not UTF-8
        f.write(b"[" * 100_000 + b"\n")         # line 8: nested past the decoder's recursion
        f.write(json.dumps(good[2]).encode()[:57])  # a writer died mid-line (no newline)
    append_record(path, good[2])  # goes on a line of its own after the fragment
    lines = _lines(path)
    assert lines[-1] == b"" and json.loads(lines[-2])["record_id"] == good[2]["record_id"]
    assert lines[-3] == json.dumps(good[2]).encode()[:57]
    with pytest.warns(ResultsWarning) as caught:
        got = read_records(path)
    assert len(caught) == 1
    assert re.search(r"skipped 6 damaged lines \(first at line 3\)", str(caught[0].message))
    assert str(path) in str(caught[0].message)
    assert [r["record_id"] for r in got] == [r["record_id"] for r in good]
    # filtering does not hide the damage report
    with pytest.warns(ResultsWarning, match="skipped 6 damaged lines"):
        assert read_records(path, benchmark="memory") == []


def test_append_after_truncated_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"schema_version": 1, "record_id": "trunc')
    rec = _record()
    append_record(path, rec)
    assert path.read_bytes().split(b"\n")[1:] == [json.dumps(rec, separators=(",", ":")).encode(), b""]
    with pytest.warns(ResultsWarning, match=r"skipped 1 damaged line \(first at line 1\)") as caught:
        assert [r["record_id"] for r in read_records(path)] == [rec["record_id"]]
    assert len(caught) == 1


def _writer(path, worker, count, start):
    run_id = f"worker{worker}"
    start.wait()
    for i in range(count):
        big = i % 7 == 0
        metrics = {"i": i, "blob": ("%d-" % worker) * (7000 if big else 3)}  # ~20 KB > PIPE_BUF
        rec = make_record("latency", "v1", None, None, {"T": i}, metrics, run_id, 1, worker=worker, i=i)
        rec["record_id"] = f"{worker}-{i}"
        if i % 50 == 49:
            append_records(path, [rec, dict(rec, record_id=f"{worker}-{i}-batch")])
        else:
            append_record(path, rec)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "shared.jsonl"
    workers, count = 4, 300
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(path), w, count, start)) for w in range(workers)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    lines = _lines(path)
    assert lines[-1] == b""
    parsed = [json.loads(line) for line in lines[:-1]]  # every line is one whole record
    ids = [r["record_id"] for r in parsed]
    expected = {f"{w}-{i}" for w in range(workers) for i in range(count)}
    expected |= {f"{w}-{i}-batch" for w in range(workers) for i in range(49, count, 50)}
    assert len(ids) == len(expected) and set(ids) == expected
    for w in range(workers):  # each writer's records in its own order, big ones intact
        mine = [r for r in parsed if r["worker"] == w and not r["record_id"].endswith("batch")]
        assert [r["i"] for r in mine] == list(range(count))
        assert all(len(r["metrics"]["blob"]) == len(f"{w}-") * (7000 if r["i"] % 7 == 0 else 3) for r in mine)
    assert len(_read_no_warning(path)) == len(expected)


_KILL_CHILD = r"""
import sys
from celerinfer.results import append_record, make_record
path = sys.argv[1]
for i in range(10**6):
    rec = make_record("latency", "v1", None, None, {"T": i}, {"blob": "y" * (150_000 + 997 * (i % 50))},
                      "killed", 1, i=i)
    append_record(path, rec)
"""


def test_killed_writer_leaves_a_readable_file(tmp_path):
    path = tmp_path / "r.jsonl"
    first = _record()
    append_record(path, first)
    child = subprocess.Popen([sys.executable, "-c", _KILL_CHILD, str(path)])
    try:
        deadline = time.monotonic() + 60
        while path.read_bytes().count(b"\n") < 6:
            assert child.poll() is None, "the writer died by itself"
            assert time.monotonic() < deadline, "the writer wrote nothing"
            time.sleep(0.01)
        time.sleep(0.013)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    data = path.read_bytes()
    complete, _, fragment = data.rpartition(b"\n")
    parsed = [json.loads(line) for line in complete.split(b"\n")]  # every complete line parses
    assert parsed[0]["record_id"] == first["record_id"]
    assert [r["i"] for r in parsed[1:]] == list(range(len(parsed) - 1))
    last = _record()
    append_record(path, last)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = read_records(path)
    assert len(caught) == (1 if fragment else 0)
    assert all(issubclass(w.category, ResultsWarning) for w in caught)
    assert [r["record_id"] for r in got] == [r["record_id"] for r in parsed] + [last["record_id"]]


_STALL_CHILD = r"""
import os, sys, time
from celerinfer import results
path, marker = sys.argv[1], sys.argv[2]
real_write = os.write
def half_write(fd, data):  # the kill lands after half a line reached the file, with the lock held
    if len(data) > 1000:
        real_write(fd, bytes(data[: len(data) // 2]))
        open(marker, "w").close()
        time.sleep(600)
    return real_write(fd, data)
os.write = half_write
results.append_record(path, results.make_record("latency", "v1", None, None, {}, {"blob": "z" * 5000}, "dead", 1))
"""


def test_writer_killed_mid_line_while_holding_the_lock(tmp_path):
    path, marker = tmp_path / "r.jsonl", tmp_path / "half-written"
    before = [_record(), _record()]
    append_records(path, before)
    child = subprocess.Popen([sys.executable, "-c", _STALL_CHILD, str(path), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the writer never got half way"
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not path.read_bytes().endswith(b"\n")  # the fragment is there
    after = _record()
    append_record(path, after)  # the dead writer's lock is gone: this does not block
    lines = _lines(path)
    assert len(lines) == 5 and lines[2].startswith(b'{"schema_version":1') and b'"dead"' in lines[2]
    with pytest.warns(ResultsWarning, match=r"skipped 1 damaged line \(first at line 3\)") as caught:
        got = read_records(path)
    assert len(caught) == 1
    assert [r["record_id"] for r in got] == [r["record_id"] for r in before + [after]]


def test_clear_log_keeps_a_backup(tmp_path):
    path = tmp_path / "results.jsonl"
    assert clear_log(path) is None
    append_records(path, [_record(), _record()])
    content = path.read_bytes()
    backup = clear_log(path)
    assert backup is not None and backup.parent == tmp_path
    assert re.fullmatch(r"results\.jsonl\.\d{8}T\d{6}\.\d{6}Z(-\d+)?\.bak", backup.name)
    assert backup.read_bytes() == content and not path.exists()
    assert read_records(path) == [] and len(_read_no_warning(backup)) == 2
    append_record(path, _record())
    second = clear_log(path)
    assert second != backup and backup.read_bytes() == content
    assert len(_read_no_warning(second)) == 1


# ------------------------------------------------------------------------------------------ CSV


def test_export_csv_flattens_and_round_trips(tmp_path):
    run_id = new_run_id()
    a = _record(run_id, T=16)
    b = _record(run_id, version="v2", T=32, metrics={"total_ms": summarize([5_000_000, 7_000_000]),
                                                        "tokens_per_s": float("nan"), "kv_cache_bytes": 4096},
                extra_param=[1, 2])
    out = export_csv([a, b], tmp_path / "views" / "results.csv")
    assert out == tmp_path / "views" / "results.csv"
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.csv"]  # no temporary left behind
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames
        rows = list(reader)
    assert columns[:4] == ["schema_version", "record_id", "run_id", "timestamp"]
    assert columns.index("model.config.hidden_size") < columns.index("benchmark") < columns.index("params.T")
    assert columns.index("params.T") < columns.index("metrics.total_ms.median") < columns.index("status")
    assert not any("samples" in c for c in columns)
    assert len(columns) == len(set(columns))
    assert [r["record_id"] for r in rows] == [a["record_id"], b["record_id"]]
    assert [r["version"] for r in rows] == ["v1", "v2"]
    assert [int(r["params.T"]) for r in rows] == [16, 32]
    assert [int(r["model.config.hidden_size"]) for r in rows] == [64, 64]
    assert [float(r["metrics.total_ms.median"]) for r in rows] == [a["metrics"]["total_ms"]["median"], 6.0]
    assert float(rows[1]["metrics.total_ms.std"]) == pytest.approx(b["metrics"]["total_ms"]["std"], rel=1e-15)
    assert rows[0]["metrics.kv_cache_bytes"] == "" and rows[1]["metrics.kv_cache_bytes"] == "4096"  # union
    assert rows[1]["metrics.tokens_per_s"] == ""  # NaN: empty
    assert rows[0]["version_flags.kv_quant"] == ""  # None: empty
    assert json.loads(rows[1]["params.extra_param"]) == [1, 2]
    # rewritten as a whole next time
    export_csv([b], out)
    with open(out, newline="") as f:
        assert [r["record_id"] for r in csv.DictReader(f)] == [b["record_id"]]


# ------------------------------------------------------------------------------------------ compare


def _write_run(path, run_id, stamp, rng, slow_setting=None, versions=("v0", "v1"), lengths=(16, 32), seed=0):
    recs = []
    for v in versions:
        for t in lengths:
            base = 1e6 * (10 + t / 8 + (5 if v == "v0" else 0))
            factor = 1.3 if (v, t) == slow_setting else 1.0
            samples = np.rint(base * factor * (1 + rng.normal(0, 0.01, 20))).astype(np.int64)
            rec = _record(run_id, version=v, T=t, seed=seed,
                          metrics={"total_ms": summarize(samples), "phases_ms": {"mlp": summarize(samples // 2)}})
            rec["timestamp"] = stamp
            recs.append(rec)
    append_records(path, recs)


def test_compare_runs(tmp_path, rng):
    path = tmp_path / "r.jsonl"
    run_a, run_b = "aaaa" + new_run_id()[4:], "bbbb" + new_run_id()[4:]
    _write_run(path, run_a, "2026-01-01T00:00:00.000000+00:00", rng)
    _write_run(path, run_b, "2026-01-02T00:00:00.000000+00:00", rng, slow_setting=("v1", 32),
               lengths=(16, 32, 64), seed=5)  # another seed still pairs
    report = compare_runs(path, "previous", "latest")
    assert (report.run_a, report.run_b, report.metric, report.unit) == (run_a, run_b, "total_ms", "ms")
    rows = {(k.benchmark, k.version, dict(k.params)["T"]): c for k, c in report.rows}
    assert set(rows) == {("latency", v, "16") for v in ("v0", "v1")} | {("latency", v, "32") for v in ("v0", "v1")}
    slow = rows[("latency", "v1", "32")]
    assert slow.significant and 1.25 < slow.ratio < 1.35 and slow.ratio_ci95[0] > 1
    assert slow.median_a == pytest.approx(14.0, rel=0.02)  # in the metric's unit (ms)
    for key, c in rows.items():
        if key != ("latency", "v1", "32"):
            assert not c.significant and abs(c.ratio - 1) < 0.02, key
    assert sorted(dict(k.params)["T"] for k in report.only_b) == ["64", "64"] and report.only_a == []
    # ids by prefix and explicit order give the same pairing; b vs a flips the ratio
    flipped = compare_runs(path, "bbbb", "aaaa")
    assert flipped.run_a == run_b
    flip = {(k.version, dict(k.params)["T"]): c for k, c in flipped.rows}[("v1", "32")]
    assert flip.ratio == pytest.approx(1 / slow.ratio) and flip.significant
    # a nested metric
    mlp = compare_runs(path, run_a, run_b, metric="phases_ms.mlp")
    assert len(mlp.rows) == 4 and sum(c.significant for _, c in mlp.rows) == 1
    text = format_comparison_report(report)
    assert run_a[:12] in text and run_b[:12] in text and "total_ms" in text
    assert text.count("within noise") == 3 and text.count("b slower, beyond noise") == 1
    assert "only in run b" in text and "T=64" in text and "seed" not in text
    with pytest.raises(ValueError, match="no run id starts with"):
        compare_runs(path, "cccc", "latest")
    append_record(path, _record("aaab" + new_run_id()[4:]))
    with pytest.raises(ValueError, match="ambiguous"):
        compare_runs(path, "aaa", "latest")
    with pytest.raises(ValueError, match="no runs"):
        compare_runs(tmp_path / "none.jsonl")


def test_export_csv_samples_writes_every_raw_sample(tmp_path):
    from celerinfer.results.csv_export import export_samples_csv

    metrics = {"total_ms": summarize([1_000_000, 2_500_000, 3_000_000]),
               "phases_ms": {"mlp": summarize([400_000, 500_000])}, "tokens_per_s": 12.5}
    records = [_record(metrics=metrics, T=16), _record(metrics={"gbps": summarize([1.5, 2.5], unit="GB/s", raw_unit=None)})]
    path, n = export_samples_csv(records, tmp_path / "s.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert n == len(rows) == 3 + 2 + 2
    total = [float(r["value"]) for r in rows if r["metric"] == "total_ms"]
    assert total == [1.0, 2.5, 3.0] and {r["unit"] for r in rows if r["metric"] == "total_ms"} == {"ms"}
    assert [float(r["value"]) for r in rows if r["metric"] == "phases_ms.mlp"] == [0.4, 0.5]
    assert [(r["metric"], r["unit"], r["value"]) for r in rows[-2:]] == [("gbps", "GB/s", "1.5"), ("gbps", "GB/s", "2.5")]
    assert rows[0]["record_id"] == records[0]["record_id"] and rows[0]["params.T"] == "16"
    # the CLI writes the same rows beside the log
    log = tmp_path / "r.jsonl"
    append_records(log, records)
    proc = subprocess.run([sys.executable, "-m", "celerinfer", "export-csv", "--log-file", str(log), "--samples"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "wrote 7 samples of 2 records" in proc.stdout, proc.stderr
    assert (tmp_path / "r.samples.csv").read_text() == path.read_text()
