"""compile_grad on Dask: dask.array arguments chunked along the batch axis.

A call with a dask array among its arguments is traced for the whole batch (the
arrays stand in by shape and dtype, never read), proved batch-separable by
`ir.batch`, and run as one task per chunk: the chunk's program (the traced graph
rebuilt for the chunk's rows, differentiated, fused and compiled in the worker,
or loaded from its disk cache) returns the chunk's part of the loss and of every
gradient. A tree of Dask tasks adds the parts (fan-in 4, as Dask's reductions);
gradients of batch-chunked arguments come back as dask arrays chunked like them.
What travels to workers is the graph (pickled with primitives by name,
`ir.serialize`), never compiled code.

Nothing here imports dask until a call has a dask array in it.
"""
from __future__ import annotations

import contextlib
import contextvars
import mmap
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Sequence
from weakref import WeakKeyDictionary

import numpy as np

from fusegrad import ir
from fusegrad.ir import batch, serialize
from fusegrad.ir.errors import ShapeError, UnsupportedError
from fusegrad.runtime import compile_graph
from fusegrad.tracer import pytree
from fusegrad.tracer.pytree import ArgumentError

# Opt-in progress bar for distributed calls (`dask_progress`).
_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("fusegrad_dask_progress",
                                                                 default=False)


@contextlib.contextmanager
def dask_progress() -> Iterator[None]:
    """Show a progress bar while compile_grad calls with dask arrays run (Dask's:
    `distributed.progress` under a distributed Client, else
    `dask.diagnostics.ProgressBar`)."""
    token = _PROGRESS.set(True)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def holds_dask(args: Sequence[Any], kwargs: dict) -> bool:
    """Whether any argument is, or holds, a dask array (free when dask is not loaded)."""
    module = sys.modules.get("dask.array")
    if module is None:
        return False
    return any(_holds(a, module.Array) for a in (*args, *kwargs.values()))


def _holds(arg: Any, kind: type) -> bool:
    if isinstance(arg, kind):
        return True
    if isinstance(arg, (list, tuple)):
        return any(_holds(a, kind) for a in arg)
    if isinstance(arg, dict):
        return any(_holds(a, kind) for a in arg.values())
    return False


# ---------------------------------------------------------------- the client side

@dataclass(frozen=True)
class Payload:
    """What a worker needs to build and run a chunk's program (pickled into tasks)."""

    graph: bytes                    # the whole batch's forward graph, ir.serialize
    digest: str                     # names `graph` in workers' caches
    separation: batch.Separation
    wrt: tuple[int, ...]
    device: str
    fuse: bool


# Per traced forward graph: its batch axes and the payload built for them.
_PAYLOADS: WeakKeyDictionary = WeakKeyDictionary()


def call(compiled: Any, args: tuple, kwargs: dict) -> tuple[Any, np.ndarray, tuple]:
    """`compiled(*args, **kwargs)` where some arguments are dask arrays: the trace,
    the value and the flat gradients (of `traced.wrt_leaves`, in order)."""
    import dask
    import dask.array as da

    if compiled.has_aux:
        raise UnsupportedError(f"{compiled!r}: has_aux=True is not supported with dask array "
                               f"arguments; return the loss only")
    found: dict[int, Any] = {}
    stand_args = tuple(_stand_in(a, found, da.Array) for a in args)
    stand_kwargs = {k: _stand_in(v, found, da.Array) for k, v in kwargs.items()}
    if not found:
        raise ArgumentError(f"{compiled!r}: a dask array sits where compile_grad does not look "
                            f"for arrays (only in lists, tuples, NamedTuples and dicts)")
    traced, leaves = compiled._lookup(stand_args, stand_kwargs)
    chunked = [found.get(id(leaf)) for leaf in leaves]
    axes, chunks = _batch_axes([(x, _label(traced, i)) for i, x in enumerate(chunked)])
    chunked = [None if x is None else _aligned(x, a, chunks) for x, a in zip(chunked, axes)]
    payload = _payload(traced, axes, compiled)
    tasks = _chunk_tasks(payload, chunked, leaves, axes, chunks)
    total, chunk_grads = _combine(tasks, traced, axes, chunked, da)
    value, grads = _compute(total, chunk_grads, dask)
    return traced, value, tuple(grads)


def _label(traced: Any, leaf: int) -> str:
    return traced.leaf_labels[leaf] if leaf < len(traced.leaf_labels) else f"input {leaf}"


def _stand_in(arg: Any, found: dict, kind: type) -> Any:
    """`arg` with each dask array replaced by a NumPy array of its shape and dtype
    whose memory is reserved but never touched (tracing reads shapes only)."""
    if isinstance(arg, kind):
        # Native byte order: the stand-in must pass through as the graph's input
        # itself (found by identity); the worker converts the chunks' data.
        stand = _untouched(arg.shape, np.dtype(arg.dtype).newbyteorder("="))
        found[id(stand)] = arg
        return stand
    if pytree._is_sequence(arg):
        return pytree._rebuild(type(arg), [_stand_in(a, found, kind) for a in arg])
    if isinstance(arg, dict):
        return pytree._rebuild_mapping(type(arg), arg, [_stand_in(v, found, kind)
                                                        for v in arg.values()])
    return arg


def _untouched(shape: tuple, dtype: np.dtype) -> np.ndarray:
    if any(np.isnan(d) for d in shape):
        raise ShapeError(f"a dask array of unknown chunk sizes {shape}: call "
                         f"compute_chunk_sizes() on it first")
    dtype = np.dtype(dtype)
    size = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
    flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0) | getattr(mmap, "MAP_NORESERVE", 0)
    try:
        buffer = mmap.mmap(-1, size, flags=flags)
    except (OSError, TypeError, ValueError):   # no such flags (Windows): plain memory
        return np.empty(shape, dtype)
    return np.ndarray(shape, dtype, buffer=buffer)


def _batch_axes(arrays: list) -> tuple[list, tuple]:
    """Per graph input its batch axis (None: a replicated parameter), and the batch
    chunks (row counts) every batch-chunked input is aligned to. A dask array's batch
    axis is the one it is chunked along; one in a single chunk takes the first axis
    of the batch size."""
    chunked_along = {}
    for x, label in arrays:
        if x is None:
            continue
        split = [a for a, c in enumerate(x.chunks) if len(c) > 1]
        if len(split) > 1:
            raise ShapeError(f"{label} is a dask array chunked along axes {split}; chunk it "
                             f"along its batch axis only (x.rechunk({{{split[1]}: -1}}) and "
                             f"so on)")
        if split:
            chunked_along[id(x)] = split[0]
    reference = next((x for x, _ in arrays if x is not None and id(x) in chunked_along), None)
    if reference is None:
        reference = next(x for x, _ in arrays if x is not None)
        chunked_along[id(reference)] = 0
    axis = chunked_along[id(reference)]
    rows, chunks = reference.shape[axis], reference.chunks[axis]
    axes = []
    for x, label in arrays:
        if x is None:
            axes.append(None)
            continue
        a = chunked_along.get(id(x))
        if a is None:
            a = next((i for i, n in enumerate(x.shape) if n == rows), None)
        if a is None or x.shape[a] != rows:
            raise ShapeError(f"{label} is a dask array of shape {x.shape}, but the batch has "
                             f"{rows} rows (along axis {axis} of a {reference.shape} dask "
                             f"array): batch-chunked arguments share the batch axis's size")
        axes.append(a)
    return axes, chunks


def _aligned(x: Any, axis: int, chunks: tuple) -> Any:
    """`x` chunked like the batch along `axis`, in one chunk along the others."""
    want = tuple(chunks if a == axis else (n,) for a, n in enumerate(x.shape))
    return x if x.chunks == want else x.rechunk(want)


def _payload(traced: Any, axes: list, compiled: Any) -> Payload:
    per_graph = _PAYLOADS.setdefault(traced.forward, {})
    key = (tuple(axes), compiled.device, compiled.fuse)
    payload = per_graph.get(key)
    if payload is None:
        separation = batch.separate(traced.forward, axes)
        data = serialize.dumps(traced.forward)
        payload = per_graph[key] = Payload(data, serialize.digest(data) + repr(key), separation,
                                           traced.wrt_leaves, compiled.device, compiled.fuse)
    return payload


def _chunk_tasks(payload: Payload, chunked: list, leaves: list, axes: list,
                 chunks: tuple) -> list:
    """One delayed task per chunk, returning (value, *grads) of its rows."""
    import dask

    name = f"fusegrad-graph-{payload.digest[:16]}"
    # One key each: a worker fetches the graph and each parameter once per step.
    shipped = dask.delayed(payload, name=name, traverse=False)
    params = [None if x is not None else
              dask.delayed(leaf, name=f"fusegrad-param-{dask.base.tokenize(leaf)}",
                           traverse=False)
              for x, leaf in zip(chunked, leaves)]
    blocks = [None if x is None else _blocks(x, a) for x, a in zip(chunked, axes)]
    run = dask.delayed(run_chunk, pure=True, nout=1 + len(payload.wrt))
    tasks = []
    for i, rows in enumerate(chunks):
        inputs = [p if b is None else b[i] for p, b in zip(params, blocks)]
        tasks.append(run(shipped, rows, 1.0 if i == 0 else 0.0, *inputs))
    return tasks


def _blocks(x: Any, axis: int) -> list:
    delayed = x.to_delayed()
    index = tuple(slice(None) if a == axis else 0 for a in range(x.ndim))
    return list(delayed[index]) if x.ndim else [delayed[()]]


# Fan-in of the tree adding the chunks' parts (dask.array's default `split_every`).
SPLIT_EVERY = 4


def _combine(tasks: list, traced: Any, axes: list, chunked: list, da: Any):
    """The parts of the loss and of the parameter gradients added up by a tree of
    tasks (fan-in SPLIT_EVERY, as Dask's reductions), as one delayed tuple; and the
    gradients of batch-chunked arguments, concatenated into dask arrays chunked
    like those arguments (None for the others). A chunk's task returns all its
    parts at once, so a chunk costs the scheduler one task and a third of one, not
    one per output: its cost per chunk is what limits how far a cluster scales."""
    import dask

    summed = (0,) + tuple(1 + j for j, leaf in enumerate(traced.wrt_leaves)
                          if chunked[leaf] is None)
    add = dask.delayed(add_parts, pure=True)
    level = [add(*tasks[i:i + SPLIT_EVERY], select=summed)
             for i in range(0, len(tasks), SPLIT_EVERY)]
    while len(level) > 1:
        level = [add(*level[i:i + SPLIT_EVERY]) for i in range(0, len(level), SPLIT_EVERY)]
    chunk_grads = []
    for j, leaf in enumerate(traced.wrt_leaves):
        x, axis = chunked[leaf], axes[leaf]
        if x is None:
            chunk_grads.append(None)
            continue
        pieces = [da.from_delayed(t[1 + j], _block_shape(x.shape, axis, rows), x.dtype)
                  for t, rows in zip(tasks, x.chunks[axis])]
        chunk_grads.append(da.concatenate(pieces, axis=axis))
    return level[0], chunk_grads


def add_parts(*parts: tuple, select: tuple | None = None) -> tuple:
    """The sum of chunks' parts, position by position (runs in a worker); `select`:
    the positions of a chunk's outputs that are summed (the first level)."""
    if select is not None:
        parts = tuple(tuple(p[i] for i in select) for p in parts)
    total = [np.array(x, copy=True) for x in parts[0]]
    for part in parts[1:]:
        for t, x in zip(total, part):
            t += x
    return tuple(total)


def _block_shape(shape: tuple, axis: int, rows: int) -> tuple:
    return tuple(rows if a == axis else n for a, n in enumerate(shape))


def _compute(total: Any, chunk_grads: list, dask: Any) -> tuple[np.ndarray, list]:
    """The loss and the gradients: NumPy arrays for the loss and the parameters; the
    gradients of batch-chunked arguments stay dask arrays, persisted (computed by the
    same tasks as the rest, and kept where they were computed)."""
    progress = _PROGRESS.get()
    chunked = [g for g in chunk_grads if g is not None]
    if chunked or progress:
        with _local_progress_bar(progress):
            total, *chunked = dask.persist(total, *chunked)
        if progress:
            _distributed_progress_bar([total, *chunked])
    (sums,) = dask.compute(total)
    sums, chunked = iter(sums), iter(chunked)
    value = next(sums)
    grads = [next(sums) if g is None else next(chunked) for g in chunk_grads]
    return np.asarray(value), grads


def _local_progress_bar(progress: bool) -> Any:
    """Dask's progress bar for its local schedulers (under a Client, a no-op)."""
    if not progress or _client() is not None:
        return contextlib.nullcontext()
    from dask.diagnostics import ProgressBar
    return ProgressBar()


def _distributed_progress_bar(collections: list) -> None:
    """Under a distributed Client: a bar until the persisted collections are done."""
    if _client() is not None:
        from distributed import futures_of, progress
        progress(futures_of(collections))


def _client() -> Any:
    """The distributed Client Dask would run a computation on now, or None (Dask's
    local schedulers: none made, or one chosen with dask.config.set(scheduler=...))."""
    if "distributed" not in sys.modules:
        return None
    from dask.base import get_scheduler
    from distributed import Client
    client = getattr(get_scheduler(), "__self__", None)
    return client if isinstance(client, Client) else None


# ---------------------------------------------------------------- the worker side

# Per process: (payload digest, rows) -> the compiled chunk program. Kernels compile
# once per worker (or load from its disk cache): the chunk graphs of all chunk sizes
# generate the same kernel source, and a mean's count is the whole batch's.
_EXECUTABLES: dict = {}
_GRAPHS: dict = {}


def run_chunk(payload: Payload, rows: int, share: float, *arrays: np.ndarray) -> tuple:
    """The chunk's part of the loss and of each gradient (runs in a worker)."""
    key = (payload.digest, int(rows))
    executable = _EXECUTABLES.get(key)
    if executable is None:
        graph = _GRAPHS.get(payload.digest)
        if graph is None:
            graph = _GRAPHS[payload.digest] = serialize.loads(payload.graph)
        chunk = batch.chunk_graph(graph, payload.separation, int(rows))
        joint = ir.optimize(ir.vjp_graph(chunk, list(payload.wrt)))
        executable = _EXECUTABLES[key] = compile_graph(joint, device=payload.device,
                                                       fuse=payload.fuse)
    inputs = [pytree.checked_array(np.asarray(a)) for a in arrays]
    inputs += [np.asarray(share, dtype=d) for d in payload.separation.shares]
    return tuple(executable(inputs))
