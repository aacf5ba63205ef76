"""What codegen hands the runtime for one loop kernel: the source and everything
needed to launch it. Codegen decides it all (entry points, buffer shapes, dtypes and
starting values, thread counts); the runtime only allocates, loads and launches.

Every entry point takes the same arguments, in this order:
``*inputs, *buffers, nchunks, *domain`` -- the input arrays, one array per
`Buffer` (the outputs', then the partials'), the number of chunks (CPU) or blocks
(CUDA) the `chunked` buffers have a row for, and the domain's sizes n0, n1, ....
A CPU loop kernel (`runs_chunks`) then takes `first, last, finish`: the chunks
[first, last) to run and whether to run the epilogue (codegen/cpu.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusegrad.codegen.body import accumulator_dtype, partial_nodes
from fusegrad.codegen.plan import Kernel, is_scalar_shape
from fusegrad.ir.graph import Node, Value


@dataclass(frozen=True)
class Buffer:
    """An array the runtime allocates for each launch."""

    shape: tuple[int, ...]          # after the leading chunk axis, if `chunked`
    dtype: np.dtype
    fill: float | None = None       # every cell's start; None: written before it is read
    chunked: bool = False           # a leading axis of `nchunks` rows, one per chunk or block


@dataclass(frozen=True)
class KernelSource:
    """One loop kernel, compiled to source for one target."""

    name: str
    text: str
    entry: str                      # the function to launch
    runs_chunks: bool               # CPU: `entry` takes the chunks to run (cpu.CHUNK_PARAMETERS)
    epilogue: str | None            # CUDA: launched right after `entry`, same arguments
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]      # the values of the first len(outputs) buffers
    buffers: tuple[Buffer, ...]
    domain: tuple[int, ...]
    outer_points: int               # CUDA: threads `entry` can use (one per outer point, or
                                    # a block per point for long rows: codegen/cuda.py)
    epilogue_threads: int = 0       # CUDA: threads `epilogue` needs

    @property
    def size(self) -> int:
        """Elements of the domain."""
        return int(np.prod(self.domain, dtype=np.int64))


def output_buffers(kernel: Kernel) -> tuple[Buffer, ...]:
    # 0-d arrays are passed as shape (1,): kernels index them [0].
    return tuple(Buffer(v.shape or (1,), v.dtype) for v in kernel.outputs)


def partial_buffers(kernel: Kernel, fill_written: bool) -> tuple[Buffer, ...]:
    """A row per chunk for each reduction that crosses chunks: one cell for a full
    reduction, the columns for a column reduction. Column partials are updated in
    place, so they start at the identity; a full reduction's cell is written once by
    its chunk, so it needs a start only if `fill_written`."""
    return tuple(_partial_buffer(n, kernel, fill_written) for n in partial_nodes(kernel))


def _partial_buffer(node: Node, kernel: Kernel, fill_written: bool) -> Buffer:
    full = is_scalar_shape(node.out.shape)
    shape = () if full else tuple(kernel.domain[kernel.outer_axes:])
    fill = node.primitive.monoid.identity if fill_written or not full else None
    return Buffer(shape, accumulator_dtype(node), fill, chunked=True)
