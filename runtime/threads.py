"""The thread pool fusegrad's kernels run on: Numba's, shared with the user's own
`parallel=True` code, so fusegrad leaves the choice of layer to Numba and the user.

Numba's default picks tbb if it is installed, else OpenMP, else workqueue. Workqueue
aborts the process when two threads enter it at once ("Concurrent access has been
detected"), so forcing it, as fusegrad used to, killed programs whose own parallel
Numba code ran in another thread. OpenMP is thread-safe, but by default its idle
workers spin; so does OpenBLAS, which matmul-heavy graphs call between kernels, and
on a machine with few cores the two pools then stole each other's cores (measured on
a 2-core machine: 8 ms per launch, W3 9x slower). OMP_WAIT_POLICY=PASSIVE makes
OpenMP's workers sleep instead; libgomp reads it once, when Numba loads it, so
fusegrad sets it just for that moment, unless the user has set it (or GOMP_SPINCOUNT).

Two costs remain, each handled here:
- workqueue (the user's choice, or the only layer there is) must not be entered by two
  threads at once: fusegrad's threaded launches then take `launch_lock`;
- GNU OpenMP cannot run in a process forked after it started (Numba terminates such a
  child): there, fusegrad runs its kernels' single-threaded variants instead.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numba
import numba.np.ufunc.parallel as _parallel

launch_lock = threading.Lock()
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def choose_threading_layer() -> None:
    """Start Numba's thread pool, with OpenMP's workers waiting passively, unless the
    user has chosen otherwise or it has started already."""
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
    """The layer in use, or the one that will be used."""
    if _parallel._is_initialized:
        return numba.threading_layer()
    return numba.config.THREADING_LAYER


def needs_launch_lock() -> bool:
    """Whether fusegrad's threaded launches must be serialized (workqueue)."""
    return threading_layer() == "workqueue"


# True in a child forked after the pool started on GNU OpenMP, where entering the pool
# would terminate the child: fusegrad's launchers read it on every threaded call.
forked_from_gnu_openmp = False


def _after_fork_in_child() -> None:
    global forked_from_gnu_openmp
    if _parallel._is_initialized and numba.threading_layer() == "omp":
        from numba.np.ufunc import omppool
        forked_from_gnu_openmp = omppool.openmp_vendor == "GNU"


os.register_at_fork(after_in_child=_after_fork_in_child)
