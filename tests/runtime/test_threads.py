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


# ------------------------------------------------ issue 12: the spinning workers' hand-off

SPINNING_POOL = textwrap.dedent("""
    import json, os, threading, time
    import numpy as np
    from numba import njit
    from fusegrad.runtime import threads

    checks = {}

    def logged(log, first, last, finish):
        log.append(("epilogue",) if finish else (first, threading.current_thread().name))

    log = []
    threads.run_chunks(logged, (log,), range(4))
    chunks = sorted(log[:-1])
    checks["each_chunk_once"] = [c[0] for c in chunks] == [0, 1, 2, 3] and log[-1] == ("epilogue",)
    checks["first_here_others_on_pool"] = (
        chunks[0][1] == threading.current_thread().name
        and all(name.startswith("fusegrad-spin-") for _, name in chunks[1:])
        and len({name for _, name in chunks[1:]}) == 3)

    def failing(log, first, last, finish):
        if first == 2:
            raise ValueError("chunk 2 failed")
        log.append(first)
    log = []
    try:
        threads.run_chunks(failing, (log,), range(4))
        checks["error_raised"] = False
    except ValueError as error:
        checks["error_raised"] = str(error) == "chunk 2 failed"
    checks["others_finished_no_epilogue"] = sorted(log) == [0, 1, 3]
    log = []
    try:
        threads.run_chunks(failing, (log,), range(3, -1, -1))   # chunk 2 on a worker
    except ValueError:
        pass
    log = []
    try:
        threads.run_chunks(failing, (log,), range(2, 5))        # chunk 2 on this thread
        checks["own_error_raised"] = False
    except ValueError:
        checks["own_error_raised"] = sorted(log) == [3, 4]
    log = []
    threads.run_chunks(logged, (log,), range(4))
    checks["spinning_after_errors"] = all(
        name.startswith("fusegrad-spin-") for _, name in sorted(log[:-1])[1:])

    # Ctrl-C while this thread waits for a worker's chunk: raised once the chunk has
    # ended, and the workers serve the next launch (not left claimed).
    import signal
    def slow(log, first, last, finish):
        if first == 1:
            time.sleep(0.5)
            log.append("worker's chunk ended")
    log = []
    main = threading.main_thread().ident
    threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT)).start()
    try:
        threads.run_chunks(slow, (log,), range(2))
        checks["interrupt_waits_for_the_chunk"] = False
    except KeyboardInterrupt:
        checks["interrupt_waits_for_the_chunk"] = log == ["worker's chunk ended"]
    log = []
    threads.run_chunks(logged, (log,), range(4))
    checks["spinning_after_interrupt"] = all(
        name.startswith("fusegrad-spin-") for _, name in sorted(log[:-1])[1:])

    @njit(nogil=True)
    def add(a, first, last, finish):
        if finish:
            a[-1] += 1.0
        for i in range(first, last):
            a[i] += 1.0

    def launches(a, times, pause=0.0):
        for _ in range(times):
            threads.run_chunks(add, (a,), range(a.size - 1))
            if pause:
                time.sleep(pause)
        return bool((a == times).all())

    checks["after_sleeps"] = launches(np.zeros(5), 5, pause=0.01)  # workers blocked
    checks["thousand"] = launches(np.zeros(4), 1000)

    results = []
    users = [threading.Thread(target=lambda: results.append(launches(np.zeros(4), 300)))
             for _ in range(4)]
    for user in users:
        user.start()
    for user in users:
        user.join()
    checks["concurrent"] = results == [True] * 4

    child = os.fork()
    if child == 0:
        os._exit(0 if launches(np.zeros(4), 200) and launches(np.zeros(4), 3, 0.01) else 1)
    _, status = os.waitpid(child, 0)
    checks["forked_child"] = os.waitstatus_to_exitcode(status) == 0
    checks["parent_after_fork"] = launches(np.zeros(4), 10)
    print(json.dumps(checks))
""")


@pytest.fixture(scope="module")
def spinning_checks() -> dict:
    # A fresh interpreter with 4 threads (3 workers); its timeout fails a hang.
    environ = dict(os.environ, NUMBA_NUM_THREADS="4")
    done = subprocess.run([sys.executable, "-c", SPINNING_POOL], env=environ,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("check", [
    "each_chunk_once", "first_here_others_on_pool", "error_raised",
    "others_finished_no_epilogue", "own_error_raised", "spinning_after_errors",
    "interrupt_waits_for_the_chunk", "spinning_after_interrupt",
    "after_sleeps", "thousand", "concurrent",
    pytest.param("forked_child", marks=pytest.mark.skipif(not hasattr(os, "fork"),
                                                          reason="needs fork")),
    "parent_after_fork"])
def test_spinning_pool(spinning_checks, check):
    assert spinning_checks[check]
