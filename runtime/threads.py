"""The threads fusegrad's kernels run on: a pool of its own, not Numba's.

A CPU loop kernel is one single-threaded `nogil` function that runs the chunks it is
given (codegen/cpu.py); `run_chunks` hands all but the first chunk to this module's
pool, runs the first on the calling thread, waits, then runs the epilogue. Compiled
as a Numba parfor instead (`parallel=True`, Numba's pool), every kernel cost about
twice the compile time, plus a single-threaded twin for small inputs, and it had to
live with Numba's threading layers: workqueue aborts when two threads enter it at
once, GNU OpenMP terminates a process forked after it started, and OpenMP's spinning
workers fought OpenBLAS's for the cores. Python threads have none of these limits:
any number of the user's threads may launch kernels at once, and a forked child starts
a pool of its own. One launch at a time hands its chunks to spinning workers (see
"spinning workers" below: a hand-off in ~6 µs, not ~80 µs through futex wake-ups);
launches meanwhile from the user's other threads queue on a ThreadPoolExecutor.

How many chunks a kernel is cut into follows Numba's thread count (`thread_count`),
so `numba.set_num_threads` and NUMBA_NUM_THREADS still set it. The user's own
`parallel=True` code keeps Numba's pool; `choose_threading_layer` still starts that
one for the benchmark's Numba baselines, with OpenMP's workers waiting passively.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numba
import numba.np.ufunc.parallel as _parallel
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

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
    first = chunks[0]
    run_parallel(lambda: function(*args, first, first + 1, False),
                 [(function, (*args, chunk, chunk + 1, False)) for chunk in chunks[1:]])
    function(*args, 0, 0, True)


def run_parallel(first: Callable[[], None], others: list[tuple[Callable, tuple]]) -> None:
    """`first()` on this thread and each `function(*args)` of `others` on the pool; returns
    once all have finished, also after an error (this thread's is raised, else the first
    of the others'). The spinning workers serve one launch at a time, if they are enough;
    a launch that finds them busy (another thread's) queues on the executor instead."""
    if not others:
        first()
        return
    spinning = _spinning_pool()
    if len(others) <= spinning.size and spinning.claim():
        spinning.run(first, others)
        return
    pool = _shared_pool()
    futures = [pool.submit(function, *args) for function, args in others]
    interrupted = None
    try:
        first()
    finally:
        for future in futures:   # also after an error: no chunk may outlive the call
            while True:
                try:
                    future.exception()
                    break
                except KeyboardInterrupt as interrupt:   # raised once the chunks end
                    interrupted = interrupt
    if interrupted is not None:
        raise interrupted
    for future in futures:
        future.result()


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
    # The parent's workers do not exist in the child: fresh pools on first use.
    global _pool, _pool_lock, _spinning, _spinning_lock
    _pool, _pool_lock = None, threading.Lock()
    _spinning, _spinning_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------- spinning workers
#
# Handed over through concurrent.futures, a chunk cost two futex wake-ups (~80 µs on a
# 2-core VM, against 0.4 µs for a small kernel): the worker woken for the task, then the
# caller woken in `future.result()`. Here each worker, after a task, watches for the next
# for a short while in nogil compiled code before it blocks on its Event, and the caller
# watches for the workers' chunks likewise before it blocks on theirs: back-to-back
# launches (a training step's kernels and split products) hand over through memory.
#
# One row of `_SpinningPool.state` (int64, 128 bytes apart so the rows share no cache
# line) per worker holds sequence numbers: POSTED (written by the caller: the task to run),
# FINISHED (written by the worker), and before either side blocks it writes the number
# it waits for (SLEEPING: the worker; WAITING: the caller) and re-reads the other side's.
# The other side writes its number, then reads the sleeper's: sequentially consistent
# atomics make one of them see the other (Dekker), so no wake-up is lost and an Event is
# set only for a side that sleeps. (A plain load in a compiled loop would be hoisted out
# of it by LLVM: the loop would never see the other thread's store.)

_POSTED, _SLEEPING, _FINISHED, _WAITING, _ROW = 0, 1, 2, 3, 16

# How long a side watches before it blocks. Long enough to cover a wake-up: on a 2-core
# EPYC VM a futex wake-up of a thread whose core had gone idle took 0.9-1.6 ms (~80 µs
# on the Xeon VM fusegrad was first tuned on), and with a 0.3 ms watch the two sides
# fell into step: a worker asleep when its block was posted woke too late to find it,
# the caller, having done every block, went to sleep waiting for that worker, and so
# on: a split (4096,256)@(256,16) product took 1.2-2.0 ms a call, back to back, against
# 0.32-0.40 with a 2 ms watch. Measured in loads, calibrated once (`_loads_per_second`):
# no CPU-specific pause instruction or clock, so it compiles anywhere.
SPIN_SECONDS = 2e-3
# How long a worker waits after seeing its task before it takes the GIL: the caller
# holds the GIL from posting until its own chunk starts (a few µs); taking it earlier
# would put the worker to sleep on the GIL, a futex wake-up again. Measured with a
# 2-chunk launch of a trivial kernel (median) on the Xeon VM, in loads of ~0.25 ns:
# 0 loads 40 µs, 2_000 27 µs, 8_000 5.7 µs, 20_000 7 µs.
GRACE_SECONDS = 3e-6


@intrinsic
def _atomic_load(typingctx, array, index):
    if not (isinstance(array, types.Array) and array.dtype == types.int64
            and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature, args)
        return builder.load_atomic(pointer, "seq_cst", 8)
    return types.int64(array, index), codegen


@intrinsic
def _atomic_store(typingctx, array, index, value):
    if not (isinstance(array, types.Array) and array.dtype == types.int64
            and isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature, args)
        stored = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(stored, pointer, "seq_cst", 8)
        return context.get_dummy_value()
    return types.void(array, index, value), codegen


def _element_pointer(context, builder, signature, args):
    array_type, index_type = signature.args[:2]
    array = context.make_array(array_type)(context, builder, args[0])
    index = context.cast(builder, args[1], index_type, types.intp)
    return cgutils.get_item_pointer(context, builder, array_type, array, [index])


@njit(nogil=True, cache=True)
def _watch(state, at, value, loads, grace):
    """Whether state[at] reaches `value` within `loads` loads (the GIL released); once
    it has, `grace` more loads before returning."""
    for _ in range(loads):
        if _atomic_load(state, at) >= value:
            for _ in range(grace):
                _atomic_load(state, at)
            return True
    return False


@njit(cache=True)
def _publish(state, at, value, sleeper_at):
    """state[at] = value (with the GIL held: the other side waits for it, not for the
    GIL), then whether the other side sleeps waiting for it."""
    _atomic_store(state, at, value)
    return _atomic_load(state, sleeper_at) >= value


@njit(nogil=True, cache=True)
def _finish(state, row, number, loads, grace):
    """A worker's end of task `number`: 2 if the caller sleeps waiting for it, else
    whether task number + 1 is posted within `loads` loads (1) or not (0)."""
    _atomic_store(state, row + _FINISHED, number)
    if _atomic_load(state, row + _WAITING) >= number:
        return 2
    return 1 if _watch(state, row + _POSTED, number + 1, loads, grace) else 0


def _compile_here() -> None:
    # Compiled (or loaded from Numba's cache) on the thread that makes the pool, before
    # any worker starts: a worker compiling would hold Numba's compiler lock, and a fork
    # meanwhile would leave that lock taken, for good, in the child.
    scratch = np.zeros(_ROW, np.int64)
    _watch(scratch, 0, 0, 0, 0)
    _publish(scratch, 0, 0, 0)
    _finish(scratch, 0, 0, 0, 0)


def _loads_per_second() -> float:
    """How many loads `_watch` makes in a second on this CPU: the fastest of a few
    short runs (~10 µs each), a run the machine interrupted being slower."""
    scratch = np.zeros(_ROW, np.int64)
    loads, best = 20_000, math.inf
    for _ in range(5):
        start = time.perf_counter()
        _watch(scratch, 0, 1, loads, 0)   # state[0] stays 0: every load is made
        best = min(best, time.perf_counter() - start)
    return loads / max(best, 1e-9)


class _SpinningPool:
    def __init__(self, size: int) -> None:
        self.size = size
        self.state = np.zeros(size * _ROW, np.int64)
        self.numbers = [0] * size              # the last task posted to each worker
        self.tasks: list = [None] * size       # (function, args) posted to each worker
        self.errors: list = [None] * size      # what each one's last task raised
        self.to_worker = [threading.Event() for _ in range(size)]
        self.to_caller = [threading.Event() for _ in range(size)]
        self.owner = threading.Lock()          # one launch at a time owns the workers
        _compile_here()
        rate = _loads_per_second()
        self.spin_loads = max(1, int(SPIN_SECONDS * rate))
        self.grace_loads = int(GRACE_SECONDS * rate)
        for worker in range(size):
            threading.Thread(target=self._serve, args=(worker,), daemon=True,
                             name=f"fusegrad-spin-{worker}").start()

    def claim(self) -> bool:
        return self.owner.acquire(blocking=False)

    def run(self, first: Callable[[], None], others: list[tuple[Callable, tuple]]) -> None:
        state, numbers = self.state, self.numbers
        for worker, task in enumerate(others):
            self.tasks[worker] = task
            numbers[worker] += 1
            row = worker * _ROW
            if _publish(state, row + _POSTED, numbers[worker], row + _SLEEPING):
                self.to_worker[worker].set()
        interrupted = None
        try:
            first()
        finally:   # also after an error: no chunk may outlive the call
            for worker in range(len(others)):
                while True:
                    try:
                        self._wait_finished(worker, numbers[worker])
                        break
                    except KeyboardInterrupt as interrupt:
                        # Ctrl-C while a worker still runs its chunk (one chunk: it
                        # ends): raised once the workers are free for the next launch.
                        interrupted = interrupt
            errors = self.errors[:len(others)]
            self.errors[:len(others)] = [None] * len(others)
            self.owner.release()
        if interrupted is not None:
            raise interrupted
        for error in errors:   # this thread's own error, if any, has been raised instead
            if error is not None:
                raise error

    def _wait_finished(self, worker: int, number: int) -> None:
        row = worker * _ROW
        if _watch(self.state, row + _FINISHED, number, self.spin_loads, 0):
            return
        event = self.to_caller[worker]
        while True:
            event.clear()
            if _publish(self.state, row + _WAITING, number, row + _FINISHED):
                return
            event.wait()

    def _serve(self, worker: int) -> None:
        state, row, number = self.state, worker * _ROW, 1
        spin, grace = self.spin_loads, self.grace_loads
        posted = False
        while True:
            if not posted:
                self._sleep_until_posted(worker, number)
            self.errors[worker] = self._run_task(worker)
            outcome = _finish(state, row, number, spin, grace)
            if outcome == 2:
                self.to_caller[worker].set()
                posted = _watch(state, row + _POSTED, number + 1, spin, grace)
            else:
                posted = outcome == 1
            number += 1

    def _run_task(self, worker: int) -> BaseException | None:
        # In a function of its own, so that nothing of the task outlives it: a worker
        # holding the launch's arrays until the next task would keep runtime.buffers
        # from reusing them (fresh pages, page faults: W4 ran 30% slower so).
        function, args = self.tasks[worker]
        self.tasks[worker] = None
        try:
            function(*args)
        except BaseException as error:   # raised in the caller
            return error
        return None

    def _sleep_until_posted(self, worker: int, number: int) -> None:
        row, event = worker * _ROW, self.to_worker[worker]
        while True:
            event.clear()
            if _publish(self.state, row + _SLEEPING, number, row + _POSTED):
                return
            event.wait()


_spinning: _SpinningPool | None = None
_spinning_lock = threading.Lock()


def _spinning_pool() -> _SpinningPool:
    global _spinning
    pool = _spinning
    if pool is None:
        with _spinning_lock:
            if _spinning is None:
                _spinning = _SpinningPool(max(1, numba.config.NUMBA_NUM_THREADS - 1))
            pool = _spinning
    return pool


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
