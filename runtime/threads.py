"""The thread pool fusegrad's kernels run on.

Numba's default OpenMP layer spins its idle threads; so does OpenBLAS, which
matmul-heavy graphs call between kernels. On a machine with few cores the two pools
then steal each other's cores and a parallel region that needs microseconds waits
for a scheduler tick (measured on the 2-core CI machine: 8 ms per launch, W3 9x
slower). The workqueue layer sleeps instead of spinning and shows none of this, so
fusegrad asks for it, unless the user has chosen a layer or Numba already started
one. Workqueue must not be entered by two threads at once: launches take a lock.
"""
from __future__ import annotations

import os
import threading

import numba
import numba.np.ufunc.parallel as _parallel

launch_lock = threading.Lock()


def choose_threading_layer() -> None:
    user_chose = os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER != "default"
    if not user_chose and not _parallel._is_initialized:
        numba.config.THREADING_LAYER = "workqueue"


def threading_layer() -> str:
    """The layer in use, or the one that will be used."""
    if _parallel._is_initialized:
        return numba.threading_layer()
    return numba.config.THREADING_LAYER
