"""The BLAS threads of fusegrad's own matrix products (host steps).

NumPy's matmul runs on OpenBLAS's thread pool, fusegrad's kernels on Numba's. On a
machine with few cores the two pools take each other's cores: a small product split
across threads waits for a core that a Numba worker or another process holds, and
OpenBLAS's idle workers spin after each call. Measured on a 2-core machine: a
(1024,32)@(32,32) float32 product takes ~80 us on one thread and ~180 us on two, with
spikes to 1.3-1.6 ms after Numba's pool has run a kernel; on a busy machine a
(4096,256)@(256,16) one takes 0.38 ms on one thread and 3-16 ms on two.

So a product smaller than `SERIAL_MAX_WORK` multiply-adds (about a millisecond on
one core, where two threads gain at most half of that) runs on one BLAS thread. Only
fusegrad's own calls, and only for their duration: the count the user's process had
(or set with threadpoolctl) is put back after each, so the user's NumPy code keeps its
threads. threadpoolctl finds the BLAS library NumPy loaded; without it, or without a
BLAS it knows, products run as NumPy would run them.
"""
from __future__ import annotations

import threading

import numpy as np

# Multiply-adds (m*n*k, times the batch) below which a product runs on one thread.
SERIAL_MAX_WORK = 1 << 25

_lock = threading.Lock()
_controllers: list | None = None   # threadpoolctl's controllers of NumPy's BLAS, once found
_inside = 0                        # fusegrad products running with the limit held
_saved: list[int] = []             # per controller, its thread count before the first of them


def matmul_work(a: np.ndarray, b: np.ndarray) -> int:
    """Multiply-adds of a @ b (NumPy's broadcasting of batch dimensions included)."""
    rows = a.shape[-2] if a.ndim > 1 else 1
    columns = b.shape[-1] if b.ndim > 1 else 1
    return max(a.size * columns, b.size * rows)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul, on one BLAS thread when the product is too small to share."""
    if matmul_work(a, b) >= SERIAL_MAX_WORK or not _blas_controllers():
        return np.matmul(a, b)
    _limit()
    try:
        return np.matmul(a, b)
    finally:
        _restore()


def _blas_controllers() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded (none: nothing to limit)."""
    global _controllers
    if _controllers is None:
        _controllers = _find_controllers()
    return _controllers


def _find_controllers() -> list:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    try:
        found = ThreadpoolController().select(user_api="blas").lib_controllers
        return [_setters(c) for c in found]
    except Exception:   # an unusual library layout: run products as NumPy would
        return []


class _Threads:
    """Get and set one BLAS library's thread count."""

    def __init__(self, get, set_) -> None:
        self.get_num_threads, self.set_num_threads = get, set_


def _setters(controller) -> _Threads:
    # OpenBLAS on its own pthreads pool: its C functions directly. threadpoolctl's
    # set_num_threads lets only the first Python thread that calls it change the
    # count, after that the others' calls do nothing; through it, fusegrad running
    # first in some thread would take the user's `threadpool_limits` away.
    if controller.internal_api == "openblas" and controller.threading_layer != "openmp":
        get = controller._get_symbol("openblas_get_num_threads")
        set_ = controller._get_symbol("openblas_set_num_threads")
        if get is not None and set_ is not None:
            return _Threads(get, set_)
    return _Threads(controller.get_num_threads, controller.set_num_threads)


def _limit() -> None:
    # Nested or concurrent products (Python threads running fusegrad at once) share one
    # limit: the first saves the user's counts, the last puts them back.
    global _inside
    with _lock:
        if _inside == 0:
            _saved[:] = [c.get_num_threads() or 1 for c in _controllers]
            for c, count in zip(_controllers, _saved):
                if count > 1:
                    c.set_num_threads(1)
        _inside += 1


def _restore() -> None:
    global _inside
    with _lock:
        _inside -= 1
        if _inside == 0:
            for c, count in zip(_controllers, _saved):
                if count > 1:
                    c.set_num_threads(count)


def thread_counts() -> list[int]:
    """The thread count of each BLAS library fusegrad limits (for tests)."""
    return [c.get_num_threads() for c in _blas_controllers()]
