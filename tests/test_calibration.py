"""Machine calibration: small measurements return well-formed statistics; the per-host,
per-thread-count cache round-trips and is reused only when both match. No speed is asserted."""

import json
import math
import os
import socket

import pytest

import celerinfer as ci
from celerinfer import _core
from celerinfer.bench import calibration

STAT_FIELDS = {"unit", "n", "median", "mean", "std", "min", "max", "p90", "p99", "ci95_low", "ci95_high", "samples"}


@pytest.fixture(scope="module")
def small_result():
    return calibration.calibrate(threads=1, triad_mib=3, matmul_size=128, reps=3)


def check_stats(stats, unit, n):
    assert set(stats) >= STAT_FIELDS
    assert stats["unit"] == unit and stats["n"] == n and len(stats["samples"]) == n
    for key in ("median", "mean", "min", "max", "p90", "p99", "ci95_low", "ci95_high"):
        assert math.isfinite(stats[key]) and stats[key] > 0, key
    assert all(math.isfinite(v) and v > 0 for v in stats["samples"])
    assert stats["min"] <= stats["median"] <= stats["max"]


def test_small_calibration_is_well_formed(small_result):
    r = small_result
    check_stats(r["bandwidth_gbps"], "GB/s", 3)
    check_stats(r["matmul_gflops"], "GFLOP/s", 3)
    check_stats(r["read_bandwidth_gbps"], "GB/s", 3)
    # the ceiling is the best repetition of the triad or the read-only stream
    assert r["bandwidth_ceiling_gbps"] == max(r["bandwidth_gbps"]["max"], r["read_bandwidth_gbps"]["max"])
    assert r["threads"] == 1
    assert r["matmul_size"] == 128
    n = 3 * (1 << 20) // 12
    assert r["triad_floats"] == n and r["triad_bytes"] == 12 * n
    assert r["hostname"] == socket.gethostname()
    json.dumps(r, allow_nan=False)  # storable as is


def test_calibrate_restores_the_thread_count():
    before = ci.get_num_threads()
    other = 2 if before != 2 else 3
    r = calibration.calibrate(threads=other, triad_mib=1, matmul_size=32, reps=1)
    assert r["threads"] == other
    assert ci.get_num_threads() == before


def test_calibrate_rejects_bad_arguments():
    for kwargs in (dict(triad_mib=0), dict(triad_mib=float("nan")), dict(matmul_size=0), dict(reps=0),
                   dict(threads=0)):
        with pytest.raises(ValueError):
            calibration.calibrate(**{"triad_mib": 1, "matmul_size": 16, "reps": 1, **kwargs})


def test_core_functions_validate_sizes():
    with pytest.raises(ValueError):
        _core.stream_triad(n_floats=0, reps=1)
    with pytest.raises(ValueError):
        _core.stream_triad(n_floats=16, reps=0)
    with pytest.raises(ValueError, match="memory"):
        _core.stream_triad(n_floats=1 << 39, reps=1)
    with pytest.raises(ValueError):
        _core.matmul_gflops(0, 4, 4, 1)
    with pytest.raises(ValueError, match="memory"):
        _core.matmul_gflops(1 << 20, 1 << 20, 16, 1)
    rates = _core.matmul_gflops(3, 5, 7, 2)
    assert len(rates) == 2 and all(math.isfinite(v) and v > 0 for v in rates)


def test_default_triad_size_exceeds_the_last_level_cache():
    mib = calibration.default_triad_mib()
    assert mib >= calibration.MIN_TRIAD_MIB
    llc = calibration.last_level_cache_bytes()
    if llc is not None:
        assert llc > 0
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        assert mib * (1 << 20) >= min(4 * llc, physical // 4)  # 4x the LLC unless memory is short


def test_save_load_round_trip(tmp_path, small_result):
    path = tmp_path / "sub" / "calibration.json"
    assert calibration.load_calibration(path, threads=1) is None  # no file yet
    assert calibration.save_calibration(small_result, path) == path
    loaded = calibration.load_calibration(path, threads=1)
    assert loaded == json.loads(json.dumps(small_result))
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed


def test_not_reused_for_another_host_or_thread_count(tmp_path, small_result):
    path = tmp_path / "calibration.json"
    calibration.save_calibration(small_result, path)
    assert calibration.load_calibration(path, threads=2) is None
    assert calibration.load_calibration(path, threads=1, hostname="some-other-host") is None
    # a result from another host, stored in the same file, is never returned here
    foreign = {**small_result, "hostname": "some-other-host", "threads": 2}
    calibration.save_calibration(foreign, path)
    assert calibration.load_calibration(path, threads=2) is None
    assert calibration.load_calibration(path, threads=2, hostname="some-other-host")["hostname"] == "some-other-host"
    assert calibration.load_calibration(path, threads=1) is not None  # the first entry was kept


def test_latest_calibration_replaces_the_earlier_one(tmp_path, small_result):
    path = tmp_path / "calibration.json"
    calibration.save_calibration(small_result, path)
    newer = {**small_result, "timestamp": "2099-01-01T00:00:00+00:00"}
    calibration.save_calibration(newer, path)
    data = json.loads(path.read_text())
    assert len(data["entries"]) == 1
    assert calibration.load_calibration(path, threads=1)["timestamp"] == newer["timestamp"]


def test_damaged_cache_is_ignored_with_a_warning(tmp_path, small_result):
    path = tmp_path / "calibration.json"
    path.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert calibration.load_calibration(path, threads=1) is None
    with pytest.warns(RuntimeWarning):
        calibration.save_calibration(small_result, path)  # overwrites the damaged file
    assert calibration.load_calibration(path, threads=1) is not None


def test_default_path_honours_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert calibration.default_calibration_path() == tmp_path / "celerinfer" / "calibration.json"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, as the spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert calibration.default_calibration_path() == tmp_path / "home" / ".cache" / "celerinfer" / "calibration.json"


def test_cached_calibration_measures_once(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    first = calibration.cached_calibration(threads=1, path=path, triad_mib=1, matmul_size=16, reps=1)
    calls = []
    monkeypatch.setattr(calibration, "calibrate", lambda **kw: calls.append(kw))
    again = calibration.cached_calibration(threads=1, path=path)
    assert calls == [] and again["timestamp"] == first["timestamp"]


def test_the_read_stream_reads_what_it_is_given():
    """The read-only stream: rates for each repetition, its size checks, and (in C++) the XOR of
    every word compared with the array's, so a loop the compiler dropped cannot report a rate."""
    from celerinfer import _core

    rates = _core.stream_read(n_floats=1 << 18, reps=3)
    assert len(rates) == 3 and all(math.isfinite(v) and v > 0 for v in rates)
    for bad in (0, 1000):
        with pytest.raises(ValueError, match="n_floats"):
            _core.stream_read(n_floats=bad, reps=1)
    with pytest.raises(ValueError, match="reps"):
        _core.stream_read(n_floats=1 << 12, reps=0)
