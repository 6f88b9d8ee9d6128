"""Properties of the C++ engine that are not parity: determinism across thread counts,
batch independence, releasing the GIL, the seed's intermediate-size rule."""

import threading

import numpy as np
import pytest

import celerinfer
from celerinfer import ModelConfig
from conftest import max_rel_err


@pytest.fixture(scope="module")
def model():
    config = ModelConfig(hidden_size=96, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                         vocab_size=301, max_position_embeddings=64)
    return celerinfer.random_model(config, seed=4)


@pytest.fixture
def restore_threads():
    before = celerinfer.get_num_threads()
    yield
    celerinfer.set_num_threads(before)


def test_results_do_not_depend_on_the_thread_count(model, rng, restore_threads):
    ids = rng.integers(0, 301, size=(3, 37))
    results = []
    for threads in (1, 2, 3):
        celerinfer.set_num_threads(threads)
        assert celerinfer.get_num_threads() == threads
        results.append(model.forward(ids))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_each_row_of_a_batch_is_independent(model, rng):
    ids = rng.integers(0, 301, size=(4, 19))
    batch = model.forward(ids)
    for b in range(4):
        assert max_rel_err(batch[b], model.forward(ids[b : b + 1])[0]) < 1e-5


def test_a_one_dimensional_sequence_is_a_batch_of_one(model, rng):
    ids = rng.integers(0, 301, size=11)
    np.testing.assert_array_equal(model.forward(ids), model.forward(ids[None, :]))


def test_forward_releases_the_gil(restore_threads):
    """While the C++ forward runs in one thread, Python code in another keeps running."""
    celerinfer.set_num_threads(1)
    big = celerinfer.random_model(ModelConfig(hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                                              vocab_size=2048, max_position_embeddings=256), seed=0)
    ids = np.zeros((4, 256), dtype=np.int64)
    started, done = threading.Event(), threading.Event()

    def work():
        started.set()
        big.forward(ids)
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    ticks = 0
    while not done.is_set():
        ticks += 1
    worker.join()
    # Holding the GIL for the whole forward would leave this loop a handful of iterations
    # at the start and the end; released, it spins the whole time.
    assert ticks > 10_000


@pytest.mark.parametrize("hidden, expected", [(64, 256), (100, 448), (1024, 4096), (72, 320)])
def test_intermediate_size_seed_rule(hidden, expected):
    config = ModelConfig(hidden_size=hidden, num_attention_heads=hidden // 8 if hidden % 16 == 0 else 2)
    assert config.intermediate_size == expected
