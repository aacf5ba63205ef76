"""fusegrad's threaded kernels run on a pool of their own (runtime/threads.py),
beside the user's own `parallel=True` code on Numba's: neither may abort the other,
whatever the threads, forks and Numba threading layer.

Each case runs in a fresh interpreter: Numba's threading layer is chosen once per
process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

COMMON = textwrap.dedent("""
    import json, os, sys, threading
    import numpy as np
    import numba
    from numba import njit, prange
    import fusegrad as fg

    @fg.compile_grad
    def loss(x):
        return (fg.tanh(x) * x).sum()

    x = np.linspace(-1, 1, 1 << 18)  # above PARALLEL_MIN_SIZE: the threaded kernel
    expected = float((np.tanh(x) * x).sum())

    def fusegrad_right(times):
        return all(abs(loss(x)[0] - expected) <= 1e-9 * abs(expected) for _ in range(times))
""")

USERS_PARALLEL_CODE_IN_A_THREAD = COMMON + textwrap.dedent("""
    @njit(parallel=True)
    def users_sum(a):
        s = 0.0
        for i in prange(a.shape[0]):
            s += 2.0 * a[i]
        return s

    a = np.ones(1 << 16)
    fusegrad_right(1)  # fusegrad's first, as when this aborted (fusegrad used Numba's pool)
    users_sum(a)
    results = []
    user = threading.Thread(target=lambda: results.append(
        all(users_sum(a) == 2.0 * a.size for _ in range(100))))
    user.start()
    mine = fusegrad_right(100)
    user.join()
    print(json.dumps({"user": results == [True], "fusegrad": mine,
                      "layer": numba.threading_layer(),
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY")}))
""")

FUSEGRAD_IN_TWO_THREADS = COMMON + textwrap.dedent("""
    fusegrad_right(1)
    results = []
    other = threading.Thread(target=lambda: results.append(fusegrad_right(100)))
    other.start()
    mine = fusegrad_right(100)
    other.join()
    print(json.dumps({"user": results == [True], "fusegrad": mine,
                      "numba_pool": numba.np.ufunc.parallel._is_initialized}))
""")

FORK_AFTER_THREADED_KERNEL = COMMON + textwrap.dedent("""
    fusegrad_right(1)
    child = os.fork()
    if child == 0:  # the parent's pool threads do not exist here
        os._exit(0 if fusegrad_right(3) else 1)
    _, status = os.waitpid(child, 0)
    print(json.dumps({"user": True, "fusegrad": os.waitstatus_to_exitcode(status) == 0}))
""")


def run(program: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("NUMBA_THREADING_LAYER", "OMP_", "GOMP_"))}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", program], env=environ, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["user"] and result["fusegrad"]
    return result


def test_users_parallel_numba_in_another_thread():
    result = run(USERS_PARALLEL_CODE_IN_A_THREAD)
    assert result["layer"] != "workqueue"  # the layer that aborts on concurrent entry
    # OpenMP was asked to wait passively only while it loaded; the environment the user's
    # other libraries and child processes see is left as it was.
    assert result["wait_policy"] is None


def test_the_users_wait_policy_is_kept():
    assert run(USERS_PARALLEL_CODE_IN_A_THREAD, OMP_WAIT_POLICY="ACTIVE")["wait_policy"] == "ACTIVE"


def test_fusegrad_from_two_threads():
    result = run(FUSEGRAD_IN_TWO_THREADS, NUMBA_THREADING_LAYER="workqueue")
    # Numba's pool (whose workqueue layer aborted on concurrent entry) is never started.
    assert not result["numba_pool"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_runs_kernels():
    run(FORK_AFTER_THREADED_KERNEL)
