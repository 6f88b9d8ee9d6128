"""numpy's BLAS held to one thread while a benchmark runs.

OpenBLAS (numpy's BLAS) keeps its worker threads spinning for a while after each call; a
spinning thread holds a core the engine's own pool needs, and on a 2-core machine the engine's
worker then waits for a CPU (the noise guard measured it waiting half of a short run's time,
with no other process busy). A benchmark's own numpy work is bookkeeping, not the measured
computation: one BLAS thread costs it nothing.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread():
    """A context manager: numpy's BLAS (OpenBLAS, MKL, BLIS) on one thread inside it."""
    return threadpool_limits(limits=1, user_api="blas")
