"""The engine and its thread pool under hostile use: threads resizing the pool under a running
engine, an engine reused after a refused call, two threads on one engine, a pool the system
cannot start, Ctrl-C during a long call. Each was a crash, a hang or a silent wrong result."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import celerinfer


@pytest.fixture(scope="module")
def model():
    return celerinfer.random_model(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=97, max_position_embeddings=1024, seed=3)


@pytest.fixture(autouse=True)
def restore_threads():
    before = celerinfer.get_num_threads()
    yield
    celerinfer.set_num_threads(before)


def test_resizing_the_pool_under_a_running_engine(model):
    """Thread A generates while thread B builds engines with other thread counts and resizes
    the pool: A's call keeps the pool it started with (it used to index per-thread scratch
    sized for the old pool: SIGSEGV), and its tokens are the ones a quiet run gives."""
    ids = celerinfer.random_tokens(1, 8, model.config.vocab_size, 1)
    expected = celerinfer.Engine(model, "v1", threads=1).generate(ids, max_new_tokens=300).tokens
    errors, results = [], []

    def run_a():
        try:
            results.append(celerinfer.Engine(model, "v1").generate(ids, max_new_tokens=300).tokens)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    a = threading.Thread(target=run_a)
    a.start()
    while a.is_alive():
        for n in (4, 1, 3, 2):
            celerinfer.Engine(model, "v1", threads=n)
            celerinfer.set_num_threads(n)
    a.join()
    assert not errors and np.array_equal(results[0], expected)


def test_a_refused_call_leaves_the_engine_as_it_was(model):
    engine = celerinfer.Engine(model, "v1", max_seq_len=64)
    one = engine.generate(celerinfer.random_tokens(1, 4, 97, 2), max_new_tokens=4).tokens
    with pytest.raises(ValueError, match="memory|allocat"):
        engine.generate(celerinfer.random_tokens(10**7, 4, 97, 2), max_new_tokens=4)
    batch = celerinfer.random_tokens(256, 4, 97, 2)
    many = engine.generate(batch, max_new_tokens=4).tokens  # used to run in the 1-row buffers
    fresh = celerinfer.Engine(model, "v1", max_seq_len=64).generate(batch, max_new_tokens=4).tokens
    assert np.array_equal(many, fresh) and np.array_equal(many[:1], one)  # rows do not interact


def test_two_threads_on_one_engine_are_refused(model):
    engine = celerinfer.Engine(model, "v0")
    ids = celerinfer.random_tokens(1, 8, 97, 4)
    started, outcome = threading.Event(), {}

    def long_call():
        started.set()
        outcome["tokens"] = engine.generate(ids, max_new_tokens=400).tokens

    t = threading.Thread(target=long_call)
    t.start()
    started.wait()
    time.sleep(0.05)
    with pytest.raises(ValueError, match="another thread"):
        for _ in range(200):  # until the long call is surely running
            engine.generate(ids, max_new_tokens=1)
            time.sleep(0.01)
    t.join()
    assert outcome["tokens"].shape == (1, 408)


def _run(code: str, timeout: float = 60, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_a_pool_the_system_cannot_start_is_an_error_not_a_hang():
    out = _run("""
        import resource, celerinfer
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
        try:
            celerinfer.set_num_threads(1024)
            print("started", celerinfer.get_num_threads())
        except ValueError as exc:
            print("refused:", exc)
        print("still", celerinfer.get_num_threads())
    """)
    assert out.returncode == 0, out.stderr
    assert "refused: cannot start 1024 threads" in out.stdout or "started 1024" in out.stdout
    assert "still" in out.stdout


@pytest.mark.parametrize("value", ["4096", "abc", "-2", "0", "3.5"])
def test_bad_thread_count_in_the_environment_is_a_clear_error(value):
    out = _run("import celerinfer; celerinfer.Engine(celerinfer.random_model(), 'v1')",
               env={"CELER_NUM_THREADS": value})
    assert out.returncode != 0 and "CELER_NUM_THREADS must be an integer in [1, 1024]" in out.stderr


def test_ctrl_c_stops_a_long_generate_promptly():
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time, celerinfer
        m = celerinfer.random_model(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                    vocab_size=512, max_position_embeddings=4096)
        e = celerinfer.Engine(m, "v0")
        print("ready", flush=True)
        start = time.perf_counter()
        try:
            e.generate(celerinfer.random_tokens(1, 8, 512, 0), max_new_tokens=4000)
            print("finished", flush=True)
        except KeyboardInterrupt:
            print(f"interrupted after {time.perf_counter() - start:.2f}s", flush=True)
    """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    sent = time.perf_counter()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert "interrupted after" in out, (out, err)
    assert time.perf_counter() - sent < 5  # a v0 run of 4000 tokens takes minutes


@pytest.mark.parametrize("kwargs, message", [
    ({"max_seq_len": -3}, "max_seq_len must be"),
])
def test_out_of_range_engine_settings_are_refused(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        celerinfer.Engine(model, "v1", **kwargs)


@pytest.mark.parametrize("round_", range(3))
def test_engines_in_several_threads_with_changing_sizes(model, round_):
    """Four threads, each with engines of its own (other versions, batch sizes and lengths,
    rebuilt between calls), while the main thread resizes the pool: every call gives the tokens
    a quiet single-threaded run gives (repeated: a race shows as a rare wrong token or crash)."""
    jobs = [(version, batch, length) for version in ("v1", "v2", "v6", "v9")
            for batch, length in ((1, 24), (3, 40), (2, 70))]
    expected = {}
    for version, batch, length in jobs:
        ids = celerinfer.random_tokens(batch, 6, model.config.vocab_size, seed=batch + length)
        expected[(version, batch, length)] = (ids, celerinfer.Engine(model, version, threads=1).generate(
            ids, max_new_tokens=length).tokens)
    errors, done = [], []

    def worker(mine):
        try:
            for key in mine:
                ids, want = expected[key]
                engine = celerinfer.Engine(model, key[0], max_seq_len=6 + key[2])
                for _ in range(2):  # the same engine twice: its buffers are reused
                    got = engine.generate(ids, max_new_tokens=key[2]).tokens
                    if not np.array_equal(got, want):
                        errors.append(f"{key}: tokens differ")
            done.append(1)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(jobs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for n in (2, 1, 3):
            celerinfer.set_num_threads(n)
            time.sleep(0.001)
    for t in threads:
        t.join()
    assert errors == [] and len(done) == 4
