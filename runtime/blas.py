"""The BLAS threads of fusegrad's own matrix products (host steps).

NumPy's matmul runs on OpenBLAS's thread pool, fusegrad's kernels on fusegrad's own
(runtime.threads). On a machine with few cores the two pools take each other's cores.
OpenBLAS's idle workers busy-wait after each product (about 0.1 s of a whole core
after each call, measured on a 2-core Xeon VM), and the kernel after the product
shares that core with them: W3's bias-and-tanh kernel (4096x256) took 1.2-1.4 ms
right after a product on OpenBLAS's two threads, 0.65-0.69 ms long after one. When
another process holds a core, a product on OpenBLAS's threads can take 8 ms instead
of 1.5, and W3 swung from 9 to 100+ ms. A small product split across threads also
waits for a core that a kernel's chunk or another process holds: a (1024,32)@(32,32)
float32 product takes ~80 us on one thread and ~180 us on two, with spikes to
1.3-1.6 ms after a kernel has run.

So while fusegrad runs a product, BLAS is held to one thread, and fusegrad splits a
large product itself across the threads its kernels run on (as many as Numba's thread
count): each thread takes blocks of the output's batch elements, rows or columns and
computes them with one-threaded BLAS into one output array. OpenBLAS's workers never
wake, and the kernel after a product has every core (W3's tanh kernel: 0.83-0.94 ms
after a split product). A product of less than `2 * SPLIT_MIN_WORK` multiply-adds is
not split. With one thread (`numba.set_num_threads(1)`), or a product that cannot be
cut into blocks of whole 64-row (64-column) panels, a product from `SERIAL_MAX_WORK`
multiply-adds up runs as NumPy runs it, on BLAS's own threads; a smaller one on one
BLAS thread. The split costs something: two one-threaded products side by side ran
6-10% slower than OpenBLAS's two threads on W3's (4096,256)@(256,256) (1.65-1.9 ms
against 1.5-1.65), so on a quiet machine W3 gains about what its products lose; on a
busy one a split product takes at most about its one-thread time.

Only fusegrad's own calls, and only for their duration: the count the user's process
had (or set with threadpoolctl) is put back after each, so the user's NumPy code keeps
its threads. threadpoolctl finds the BLAS library NumPy loaded; without it, or without
a BLAS it knows, products run as NumPy would run them.

A long contraction into a small output (x.T @ dy, a weight's gradient: k at least twice
the rows and the columns) is cut along k instead: each thread sums its share of the k
products into a partial output, reading its share of both operands once (a block of
rows would read all of dy), and the parts are added in block order. On one core, half
of W3's (256,4096)@(4096,256) took 1.78-1.82 ms cut along k, 2.03-2.13 as 128 rows.

Results: a block is BLAS's product of those rows (columns, batch elements), each
output element one dot product of k terms as in NumPy's. For float32 and float64
products of whole 64-row panels, the split result was bit for bit NumPy's in every
case measured; the block edges are put on multiples of 64 for that. A product cut
along k adds its parts in another order than NumPy's one-threaded BLAS (W3's weight
gradients differ from NumPy's in the last bits), the same whichever thread runs a part.
For other shapes BLAS itself does not keep its bits: OpenBLAS's product changes in the
last bits with its own thread count for many shapes (float64 (4097,255)@(255,257),
float32 (300,4096)@(4096,1)), and a split product may differ the same way. Both are
sums of the same k products in some order: they differ by at most 2 k eps |a| @ |b|
elementwise (tests/runtime/test_blas.py checks this bound).
"""
from __future__ import annotations

import itertools
import threading

import numpy as np

from fusegrad.runtime import buffers
from fusegrad.runtime.threads import run_parallel, thread_count

# Multiply-adds (m*n*k, times the batch) below which a product fusegrad cannot split
# runs on one thread (about a millisecond on one core, where two threads gain at most
# half of that and their workers spin afterwards).
SERIAL_MAX_WORK = 1 << 25
# Multiply-adds each thread's block of a split product has at least (about 0.1 ms on
# one core). A block handed to the pool waits for its thread (~6 us with the pool's
# spinning workers; ~73 us through futex wake-ups before them, when this was 2^24), and
# two one-threaded products side by side run 6-10% slower than each alone. W3's three
# thin products of 2^24 (N or K = 16) now split in two: 0.39-0.46 ms each in W3's run,
# against 0.47-0.79 on one thread.
SPLIT_MIN_WORK = 1 << 23
# Block edges fall on multiples of this many rows (columns): whole panels of OpenBLAS's
# kernels, so that a block's elements are computed as in the whole product.
PANEL = 64
# Blocks per thread, where each keeps MIN_BLOCK rows (columns): a thread the machine
# runs late holds up the product for one block, not for its share. But each block
# packs the whole other operand for BLAS's kernel again: on one core, a 128-row half
# of (256,4096)@(4096,256) float32 took 1.93 ms against 3.2 for the whole.
BLOCKS_PER_THREAD = 2
MIN_BLOCK = 512
# The dtypes BLAS multiplies (others run NumPy's own loops: nothing to split).
_BLAS_TYPES = frozenset(np.dtype(t) for t in "fdFD")

_lock = threading.Lock()
_controllers: list | None = None   # threadpoolctl's controllers of NumPy's BLAS, once found
_inside = 0                        # fusegrad products running with the limit held
_saved: list[int] = []             # per controller, its thread count before the first of them


def matmul_work(a: np.ndarray, b: np.ndarray) -> int:
    """Multiply-adds of a @ b (NumPy's broadcasting of batch dimensions included)."""
    rows = a.shape[-2] if a.ndim > 1 else 1
    columns = b.shape[-1] if b.ndim > 1 else 1
    return max(a.size * columns, b.size * rows)


def matmul(a: np.ndarray, b: np.ndarray, threads: int = 1) -> np.ndarray:
    """np.matmul of two arrays, with BLAS on one thread and the product split across
    `threads` of fusegrad's own where that pays (see the module's docstring)."""
    work = matmul_work(a, b)
    if not _blas_controllers():
        return np.matmul(a, b)
    threads = min(threads, work // SPLIT_MIN_WORK)
    blocks = None
    if threads >= 2:
        count = min(threads * BLOCKS_PER_THREAD, work // SPLIT_MIN_WORK)
        blocks = _blocks(a, b, threads, count)
    if blocks is None and work >= SERIAL_MAX_WORK:
        return np.matmul(a, b)
    _limit()
    try:
        if blocks is None:
            return np.matmul(a, b)
        return _split_product(a, b, threads, *blocks)
    finally:
        _restore()


# Multiply-adds up to which OpenBLAS runs a product on one thread of its own accord
# (m*n*k <= 65536 * GEMM_MULTITHREAD_THRESHOLD, 4 by default): `host_matmul` gives
# those to NumPy directly, without the thread-count switch.
BLAS_SERIAL_WORK = 1 << 18


def host_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul for graphs the host runs by their NumPy meaning (eager ops, eager
    backwards on the interpreter): `matmul` on fusegrad's threads, as compiled graphs
    run theirs; a small product as it is. Eager W3 (value and gradients of the 4096-row
    MLP) on the 2-core VM: 9.0-9.5 ms a step once its backward is compiled, 14.1 when
    the eager forward's products left OpenBLAS's workers spinning beside the compiled
    kernels; 11.7 against 10.6-11.0 on the interpreter (split products are a little
    slower than OpenBLAS's two threads); on a busy machine 16-18 ms, against 20-128."""
    if a.ndim == 2 and b.ndim == 2:
        if a.shape[0] * a.shape[1] * b.shape[1] <= BLAS_SERIAL_WORK:
            return np.matmul(a, b)
    elif a.size * b.size <= BLAS_SERIAL_WORK:   # at least the multiply-adds
        return np.matmul(a, b)
    return matmul(a, b, thread_count())


# What graphs the host runs by their NumPy meaning (eager ops and eager backwards)
# compute in place of a primitive's `impl`, by name (ir.interpreter's `impls`): their
# matrix products run as compiled graphs' do.
HOST_IMPLS = {"matmul": host_matmul}


def _blocks(a: np.ndarray, b: np.ndarray, threads: int, count: int):
    """How to cut a @ b into blocks of the output for `threads` threads, `count` at
    most: (output shape, the axis of the output cut, the edges, a's axis, b's axis),
    the operand axes None where that operand is not cut; None to run it whole."""
    if a.ndim == 0 or b.ndim == 0 or a.dtype != b.dtype or a.dtype not in _BLAS_TYPES:
        return None
    a_batch = a.shape[:-2] if a.ndim > 1 else ()
    b_batch = b.shape[:-2] if b.ndim > 1 else ()
    try:
        batch = np.broadcast_shapes(a_batch, b_batch)
    except ValueError:   # np.matmul says what is wrong
        return None
    if a.shape[-1] != (b.shape[-2] if b.ndim > 1 else b.shape[0]):
        return None
    rows = a.shape[-2] if a.ndim > 1 else 0
    columns = b.shape[-1] if b.ndim > 1 else 0
    shape = batch + tuple(n for n in (rows, columns) if n)
    batches = batch[0] if batch else 0
    if batches >= threads and batches % threads == 0:   # whole products, evenly
        cut = _edges(batches, threads, 1)
        return shape, 0, cut, _batch_axis(a_batch, batch), _batch_axis(b_batch, batch)
    depth = a.shape[-1]
    if not batch and a.ndim == b.ndim == 2 and depth >= max(2 * rows, 2 * columns, 2 * PANEL):
        # A long contraction into a small output (a weight's gradient, x.T @ dy): each
        # thread sums its share of the k products into a partial output, reading its
        # share of both operands once; a block of rows would read all of b.
        cut = _edges(depth, min(threads, depth // PANEL), PANEL)
        return shape, None, cut, 1, 0
    # A block of rows packs all of b for BLAS's kernel, a block of columns all of a:
    # cut the dimension whose blocks repack the smaller operand.
    if rows >= 2 * PANEL and (rows > columns or columns < 2 * PANEL):
        cut = _edges(rows, _block_count(rows, threads, count), PANEL)
        return shape, len(batch), cut, a.ndim - 2, None
    if columns >= 2 * PANEL:
        cut = _edges(columns, _block_count(columns, threads, count), PANEL)
        return shape, len(shape) - 1, cut, None, b.ndim - 1
    if batches >= 2:
        cut = _edges(batches, min(threads, batches), 1)
        return shape, 0, cut, _batch_axis(a_batch, batch), _batch_axis(b_batch, batch)
    return None


def _block_count(size: int, threads: int, count: int) -> int:
    """Blocks of `size` rows (columns): one per thread, and more, up to `count`, while
    each keeps `MIN_BLOCK` of them (every block repacks the other operand)."""
    return max(min(threads, size // PANEL), min(count, size // MIN_BLOCK))


def _batch_axis(own: tuple, batch: tuple) -> int | None:
    """0 where an operand has the output's first batch axis itself, None where it is
    broadcast along it (missing, or of length 1)."""
    return 0 if len(own) == len(batch) and own[0] == batch[0] else None


def _edges(size: int, count: int, unit: int) -> list[int]:
    """0 = e_0 < e_1 < ... < e_n = size, n <= count, the inner edges multiples of
    `unit`, every block at least `unit` long, the blocks as even as that allows."""
    inner = {round(size * i / count / unit) * unit for i in range(1, count)}
    return [0, *sorted(e for e in inner if 0 < e <= size - unit), size]


def _split_product(a, b, threads, shape, axis, edges, a_axis, b_axis) -> np.ndarray:
    """The product in blocks of the output along `axis`, or, with `axis` None, in blocks
    of the contraction summed into partial outputs that are added up in block order."""
    out = buffers.empty(shape, np.result_type(a, b))
    blocks = list(zip(edges, edges[1:]))
    partials = [out] if axis is not None else [out, *(np.empty_like(out) for _ in blocks[1:])]
    taken = itertools.count()   # next() on it is atomic: each block is taken once
    errors = np.geterr()        # the caller's, for the blocks the pool's threads run too

    def take_blocks() -> None:
        for index in iter(taken.__next__, None):
            if index >= len(blocks):
                return
            cut = slice(*blocks[index])
            into = _cut(out, axis, cut) if axis is not None else partials[index]
            np.matmul(_cut(a, a_axis, cut), _cut(b, b_axis, cut), out=into)

    def on_pool() -> None:
        with np.errstate(**errors):
            take_blocks()

    # Each thread takes blocks until none is left, this one too; a helper the machine
    # starts late finds none and returns at once. The helpers run on threads.py's
    # spinning workers (watching for work a while after the last launch): no futex
    # wake-up per product when products and kernels follow one another closely.
    helpers = min(threads, len(blocks)) - 1
    run_parallel(take_blocks, [(on_pool, ())] * helpers)
    for partial in partials[1:]:
        out += partial
    return out


def _cut(array: np.ndarray, axis: int | None, cut: slice) -> np.ndarray:
    if axis is None:
        return array
    return array[(slice(None),) * axis + (cut,)]


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
