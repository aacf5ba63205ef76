"""The threads fusegrad's kernels run on: a pool of its own, not Numba's.

A CPU loop kernel is one single-threaded `nogil` function that runs the chunks it is
given (codegen/cpu.py); `run_chunks` hands all but the first chunk to this module's
pool, runs the first on the calling thread, waits, then runs the epilogue. Compiled
as a Numba parfor instead (`parallel=True`, Numba's pool), every kernel cost about
twice the compile time, plus a single-threaded twin for small inputs, and it had to
live with Numba's threading layers: workqueue aborts when two threads enter it at
once, GNU OpenMP terminates a process forked after it started, and OpenMP's spinning
workers fought OpenBLAS's for the cores. Python threads have none of these limits:
any number of the user's threads may launch kernels at once (their chunks queue in
the one pool), and a forked child starts a pool of its own.

How many chunks a kernel is cut into follows Numba's thread count (`thread_count`),
so `numba.set_num_threads` and NUMBA_NUM_THREADS still set it. The user's own
`parallel=True` code keeps Numba's pool; `choose_threading_layer` still starts that
one for the benchmark's Numba baselines, with OpenMP's workers waiting passively.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numba
import numba.np.ufunc.parallel as _parallel

_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def thread_count() -> int:
    """Threads a kernel may use: Numba's setting, read without starting Numba's pool
    (which fusegrad's kernels do not use) unless something else has started it."""
    if _parallel._is_initialized:
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS


def run_chunks(function: Callable, args: tuple, chunks: range) -> None:
    """`function(*args, first, last, finish)` for each of `chunks`, the first on this
    thread and the others on the pool, then the epilogue once they have all finished."""
    pool = _shared_pool()
    others = [pool.submit(function, *args, chunk, chunk + 1, False) for chunk in chunks[1:]]
    try:
        function(*args, chunks[0], chunks[0] + 1, False)
    finally:
        for future in others:   # also after an error: no chunk may outlive the call
            future.result()
    function(*args, 0, 0, True)


def shared_pool() -> ThreadPoolExecutor:
    """The pool the chunks of kernels run on (runtime.blas runs a split product's
    blocks on it too): Numba's thread count less one workers, made on first use."""
    return _shared_pool()


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                # Numba caps its thread count at NUMBA_NUM_THREADS: with the calling
                # thread, this many workers serve any count a kernel is given.
                workers = max(1, numba.config.NUMBA_NUM_THREADS - 1)
                _pool = ThreadPoolExecutor(workers, thread_name_prefix="fusegrad")
            pool = _pool
    return pool


def _after_fork_in_child() -> None:
    # The parent's workers do not exist in the child: a fresh pool on first use.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------- Numba's own pool

def choose_threading_layer() -> None:
    """Start Numba's thread pool, with OpenMP's workers waiting passively, unless the
    user has chosen otherwise or it has started already (the benchmark does this
    before its hand-written parallel Numba baselines run)."""
    if _parallel._is_initialized:
        return
    chosen = [name for name in _WAIT_VARIABLES if name in os.environ]
    with _environment({} if chosen else {"OMP_WAIT_POLICY": "PASSIVE"}):
        _parallel._launch_threads()


@contextlib.contextmanager
def _environment(settings: dict[str, str]):
    # Only while the layer loads: the user's other processes and libraries keep the
    # environment they had.
    os.environ.update(settings)
    try:
        yield
    finally:
        for name in settings:
            os.environ.pop(name, None)


def threading_layer() -> str:
    """Numba's layer in use, or the one that will be used."""
    if _parallel._is_initialized:
        return numba.threading_layer()
    return numba.config.THREADING_LAYER
