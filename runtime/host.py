"""What the host computes for graphs it runs by their NumPy meaning: eager ops, and
eager backwards on ir's interpreter (`host_impl` is the `impls` those evaluators take).

Each primitive's `impl` is its NumPy meaning, run on one thread. Some nodes run
faster another way, giving the same arrays:

- a matrix product: `blas.host_matmul`, split across fusegrad's threads with BLAS on
  one, as compiled graphs run theirs;
- a sum of every element of a large float32 or float64 array: its two halves on two
  threads, where NumPy's pairwise sum splits it (`_split_whole_sum`);
- an elementwise node, or a reduction that keeps the first axis (a row sum, a row
  max), over a large array: cut along the output's first axis into one block per
  thread, each block computed into its rows of one result on fusegrad's threads
  (NumPy's loops release the GIL). A ufunc, or an impl taking `out` (relu, where,
  sigmoid), writes its rows itself; another impl's block is copied into them. On the
  2-core VM, eager W3's `z + b1` and `tanh` (4096x256 float32) took 0.37 and 0.39 ms
  on one thread, 0.24-0.31 and 0.19-0.27 split; PyTorch's threaded ops 0.15 and 0.16.

A block of rows keeps every operand's strides, so NumPy runs the same loops over it
as over the whole, only shorter: bit for bit the same result (tests/runtime/
test_host.py checks every elementwise and reduction primitive, and strided and
broadcast operands).
"""
from __future__ import annotations

import inspect
from functools import cache, partial
from typing import Callable

import numpy as np

from fusegrad.ir.graph import Node
from fusegrad.ir.primitive import ELEMENTWISE, REDUCTION
from fusegrad.runtime.blas import host_matmul
from fusegrad.runtime.threads import run_parallel, thread_count

# Elements (of the output or the largest input) from which a node is split. A split
# call costs about 30 us more than the blocks' own time on the 2-core VM (the pool's
# thread takes the GIL to start its block while this one wants it back): an add or a
# tanh of 2^17 float32 took 27 and 35 us whole, 31 and 41 split; of 2^18, 109 and 85
# whole, 46 and 59 split; of 2^20, 486 and 381 whole, 353 and 295 split.
PARALLEL_MIN_ELEMENTS = 1 << 18
# Block edges fall on multiples of this many elements (of a 64-byte line of float64,
# two of float32) where the rows allow it.
ALIGN_ELEMENTS = 16


def host_impl(node: Node) -> Callable | None:
    """The function computing `node` on the host where it is not its primitive's
    `impl` (ir.interpreter.prepared_impl's `impls`); None for the `impl` itself."""
    primitive = node.primitive
    if primitive.name == "matmul" and not node.attrs:
        return host_matmul
    if primitive.kind == ELEMENTWISE and primitive.name not in _NOT_SPLIT:
        return _split_rows(node, primitive.impl)
    if primitive.kind == REDUCTION and 0 not in node.attrs.get("axes", (0,)):
        return _split_rows(node, primitive.impl)   # each row reduced on its own
    if primitive.name == "reduce_sum":
        return _split_whole_sum(node)
    return None


# Elementwise in the IR, but their `impl` gives (a view of) its argument: nothing to split.
_NOT_SPLIT = frozenset({"const", "broadcast_to", "stop_gradient"})


def _split_rows(node: Node, impl: Callable) -> Callable | None:
    """`impl` over blocks of the output's rows on fusegrad's threads, for a large
    elementwise node or a reduction that keeps the first axis; None otherwise. A NumPy
    ufunc whose loop gives the node's dtype writes each block into its rows of the
    result; another `impl` (a relu, a select, a cast, a row sum) computes each block
    whole, copied into its rows."""
    out = node.out
    threads = thread_count()
    if (threads < 2 or len(out.shape) == 0
            or max(v.size for v in (out, *node.inputs)) < PARALLEL_MIN_ELEMENTS):
        return None
    rows = out.shape[0]
    row_size = out.size // rows
    # Rows per block: a share of them, rounded to aligned edges where rows are short.
    step = max(1, ALIGN_ELEMENTS // row_size) if row_size < ALIGN_ELEMENTS else 1
    blocks = min(threads, rows // step)
    if blocks < 2:
        return None
    edges = [rows * k // blocks // step * step for k in range(blocks)] + [rows]
    # Inputs with the output's first axis are cut with it; the others (a bias row, a
    # scalar: broadcast along that axis) are read whole by every block.
    # (A reduction's one input keeps its first axis as the output's.)
    reduction = node.primitive.kind == REDUCTION
    cut = tuple((reduction or len(v.shape) == len(out.shape)) and v.shape[0] == rows
                for v in node.inputs)
    dtype, shape, attrs = out.dtype, out.shape, node.attrs
    into = _into_rows(impl, node)
    ndarray = np.ndarray

    def split(*arrays: np.ndarray, **_: object) -> np.ndarray:   # (the node's attrs)
        for array in arrays:
            if array.__class__ is not ndarray:
                return impl(*arrays, **attrs)
        if thread_count() < 2:   # numba.set_num_threads(1) since: one thread, as asked
            return impl(*arrays, **attrs)
        result = np.empty(shape, dtype)
        # Every block's arguments are made here, before the pool starts: Python run on
        # this thread meanwhile hands the GIL to the pool's thread and back (a switch
        # costing ~40 us, as much as the block itself at 2^16 elements).
        blocks = [(tuple(a[start:stop] if c else a for a, c in zip(arrays, cut)), result[start:stop])
                  for start, stop in zip(edges, edges[1:])]
        errors = np.geterr()   # the caller's, for the blocks the pool's threads run

        def block(inputs: tuple, rows: np.ndarray) -> None:
            with np.errstate(**errors):
                into(*inputs, out=rows)

        inputs, rows = blocks[0]
        run_parallel(partial(into, *inputs, out=rows), [(block, b) for b in blocks[1:]])
        return result
    return split


def _split_whole_sum(node: Node) -> Callable | None:
    """A sum of every element of a large float32 or float64 array (no keepdims) as two
    sums on two threads, of the halves where NumPy's pairwise sum cuts a contiguous
    array (at n / 2 less its remainder by 8; the first split of `pairwise_sum` in
    NumPy's loops), added as NumPy adds them: the same bits as one np.add.reduce.
    None for other sums; a strided array or one thread runs the plain `impl`. (An
    eager sum of 2^20 float32 on the 2-core EPYC VM: 0.21-0.24 ms before, 0.12-0.20
    now; PyTorch 0.04.)"""
    x, out, attrs = node.inputs[0], node.out, node.attrs
    if (thread_count() < 2 or out.shape != () or attrs.get("keepdims")
            or x.dtype not in (np.float32, np.float64) or x.size < PARALLEL_MIN_ELEMENTS
            or not _numpy_sums_halves(x.dtype)):
        return None
    impl, reduce, ndarray = node.primitive.impl, np.add.reduce, np.ndarray
    half = _half(x.size)
    dtype = x.dtype

    def split(array: np.ndarray, **_: object) -> np.ndarray:   # (the node's attrs)
        if array.__class__ is not ndarray or not array.flags.c_contiguous \
                or thread_count() < 2:
            return impl(array, **attrs)
        flat = array.reshape(-1)
        halves = [None, None]
        errors = np.geterr()   # the caller's, for the half the pool's thread sums

        def second() -> None:
            with np.errstate(**errors):
                halves[1] = reduce(flat[half:], 0, dtype)

        def first() -> None:
            halves[0] = reduce(flat[:half], 0, dtype)

        run_parallel(first, [(second, ())])
        return reduce(np.array(halves, dtype), 0, dtype)   # (an overflow says "reduce")
    return split


def _half(count: int) -> int:
    """Where NumPy's pairwise sum first cuts `count` terms."""
    return count // 2 - count // 2 % 8


@cache
def _numpy_sums_halves(dtype: np.dtype) -> bool:
    """Whether this NumPy's np.add.reduce of a contiguous array is the reduce of its two
    `_half`s' reduces (NumPy 2.4's is): checked once on terms whose sum rounds
    differently in other orders (cut 8 terms off, or the first term added last)."""
    reduce, rng = np.add.reduce, np.random.default_rng(0)
    for period in (7, 11):   # terms from 1 to 10^6 and 10^10 in size
        terms = (rng.standard_normal(4099) * 10.0 ** (np.arange(4099) % period)).astype(dtype)
        cut = _half(terms.size)
        halves = np.array([reduce(terms[:cut], 0, dtype), reduce(terms[cut:], 0, dtype)])
        if reduce(halves, 0, dtype) != reduce(terms, 0, dtype):
            return False
    return True


def _into_rows(impl: Callable, node: Node) -> Callable:
    """`into(*inputs, out=rows)`: `impl` of the inputs, written into `rows` of the result."""
    if isinstance(impl, np.ufunc) and impl.nout == 1 and impl.nin == len(node.inputs) \
            and not node.attrs and _ufunc_dtype(impl, node) == node.out.dtype:
        return impl   # the ufunc's own loop writes the rows
    if "out" in inspect.signature(impl).parameters:   # an impl that writes `out` itself
        return partial(impl, **node.attrs)
    attrs = node.attrs

    def into(*inputs: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, impl(*inputs, **attrs), casting="unsafe")
    return into


def _ufunc_dtype(ufunc: np.ufunc, node: Node) -> np.dtype | None:
    """The dtype NumPy's `ufunc` gives for the node's input dtypes (None if it has none)."""
    try:
        with np.errstate(all="ignore"):
            return ufunc(*(np.zeros(1, v.dtype) for v in node.inputs)).dtype
    except TypeError:
        return None
