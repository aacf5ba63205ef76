"""Batch separability: is a loss a sum of per-row terms, and what one chunk of rows adds.

Data-parallel training splits the rows of the batch-chunked arguments into chunks,
runs the same program on each and adds the results. That is exact when the loss is
linear in sums over the batch axis of per-row terms (a `mean` is such a sum over a
count), with everything between the rows and those sums row-wise: elementwise math
with parameters broadcast along, reductions over other axes, matmuls that keep the
batch axis as a row or column. This pass proves it by following each value's kind
from the graph's inputs:

    None          free: computed from parameters (replicated arguments) only
    int a         mapped: along axis a, row i's entries (computed from row i alone);
                  the rows are outermost in that axis, N of them or N blocks of k
    SUMMED        a sum over the batch axis (of mapped values), or linear in such sums

and rebuilds the graph for a chunk of `rows` rows (`chunk_graph`): mapped values get
`rows` along their batch axis, every constant keeps its value for the whole batch
(a mean's count stays N, so chunk results add up to the whole loss), and a free
term added to a sum is weighted by a `share` input (1 on one chunk, 0 on the
others) so that it counts once. Where a row could meet another row, the error names
the op and the user's line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fusegrad.ir import primitives as P
from fusegrad.ir.errors import FusegradError, located
from fusegrad.ir.graph import Graph, Node, Value
from fusegrad.ir.primitive import ELEMENTWISE, LAYOUT, MATMUL, REDUCTION

SUMMED = "summed"

# Elementwise ops linear in each argument that is a batch sum, the others free.
_LINEAR_UNARY = ("neg", "cast", "stop_gradient", "broadcast_to")


class BatchError(FusegradError, ValueError):
    """The loss cannot be proved to be a sum of per-row terms over the batch axis."""


@dataclass(frozen=True)
class Separation:
    """What the pass proved about a graph, for one set of batch axes."""

    rows: int                           # the batch size N of the whole batch
    input_axes: tuple[int | None, ...]  # per graph input, its batch axis or None
    shares: tuple[np.dtype, ...]        # dtypes of the `share` inputs a chunk graph adds


def separate(graph: Graph, input_axes: Sequence[int | None]) -> Separation:
    """Prove `graph` (scalar output 0) batch-separable with these inputs' batch axes;
    raise BatchError naming the first op that mixes rows otherwise."""
    rewrite = _Rewrite(graph, tuple(input_axes), None)
    rewrite.run()
    return Separation(rewrite.batch, tuple(input_axes), rewrite.share_dtypes())


def chunk_graph(graph: Graph, separation: Separation, rows: int) -> Graph:
    """`graph` for a chunk of `rows` rows: its output is the chunk's part of the whole
    loss. Its inputs are `graph`'s, chunk-shaped, then one 0-d `share` per dtype of
    `separation.shares` (1 on exactly one chunk, 0 on the rest)."""
    rewrite = _Rewrite(graph, separation.input_axes, rows)
    return rewrite.run()


# ---------------------------------------------------------------- the walk

class _Rewrite:
    def __init__(self, graph: Graph, input_axes: tuple, rows: int | None) -> None:
        if len(input_axes) != len(graph.inputs):
            raise ValueError(f"{len(input_axes)} batch axes for {len(graph.inputs)} inputs")
        self.graph = graph
        self.batch = _batch_size(graph, input_axes)
        self.rows = self.batch if rows is None else int(rows)
        self.kind: dict[int, object] = {}      # id(old value) -> None | axis | SUMMED
        self.new: dict[int, Value] = {}        # id(old value) -> value of the chunk graph
        self.nodes: list[Node] = []
        self.shares: dict[np.dtype, Value] = {}
        self.inputs = tuple(self._input(v, a) for v, a in zip(graph.inputs, input_axes))

    def _input(self, value: Value, axis: int | None) -> Value:
        self.kind[id(value)] = axis
        if axis is None:
            return self._keep(value)
        shape = list(value.shape)
        shape[axis] = self.rows
        self.new[id(value)] = chunk = Value(shape, value.dtype, name=value.name)
        return chunk

    def share_dtypes(self) -> tuple[np.dtype, ...]:
        return tuple(sorted(self.shares, key=str))

    def _keep(self, value: Value) -> Value:
        self.new[id(value)] = value
        return value

    def run(self) -> Graph:
        for value, _ in self.graph.constants:
            self.kind[id(value)] = None
            self._keep(value)
        for node in self.graph.nodes:
            self._node(node)
        out = self.graph.outputs[0]
        if self.kind[id(out)] is not SUMMED:
            raise BatchError("the loss does not depend on the rows of any batch-chunked "
                             "argument: there is nothing to split over the batch (pass "
                             "NumPy arrays to run it in this process)")
        shares = tuple(self.shares[d] for d in self.share_dtypes())
        return Graph(self.inputs + shares, tuple(self.nodes), (self.new[id(out)],),
                     self.graph.constants)

    def _node(self, node: Node) -> None:
        kinds = [self.kind[id(v)] for v in node.inputs]
        if all(k is None for k in kinds):
            self.nodes.append(node)     # parameters only: the same node, same values
            for out in node.outputs:
                self.kind[id(out)] = None
                self._keep(out)
            return
        prim = node.primitive
        if prim.multiple_results:
            raise self._error(node, "cannot prove that it keeps rows apart")
        if prim.kind == ELEMENTWISE:
            kind, params, inputs = self._elementwise(node, kinds)
        elif prim.kind == REDUCTION:
            kind, params, inputs = self._reduction(node, kinds)
        elif prim.kind == MATMUL:
            kind, params, inputs = self._matmul(node, kinds), node.attrs, None
        elif prim.kind == LAYOUT:
            kind, params, inputs = self._layout(node, kinds)
        else:
            raise self._error(node, "cannot prove that it keeps rows apart")
        self._emit(node, kind, params, inputs)

    def _emit(self, node: Node, kind, params: dict, inputs: list | None) -> None:
        if inputs is None:
            inputs = [self.new[id(v)] for v in node.inputs]
        shape, dtype = node.primitive.infer(*inputs, **params)
        out = Value(shape, dtype)
        self.nodes.append(Node(node.primitive, tuple(inputs), tuple(sorted(params.items())),
                               (out,), node.source))
        self.kind[id(node.out)] = kind
        self.new[id(node.out)] = out

    # ---------------------------------------------------------------- by kind

    def _elementwise(self, node: Node, kinds: list) -> tuple:
        name = node.primitive.name
        inputs = [self.new[id(v)] for v in node.inputs]
        if SUMMED in kinds:
            if any(isinstance(k, int) for k in kinds):
                raise self._error(node, "combines a sum over the batch with per-row values "
                                        "(each row would need every other row)")
            summed = [i for i, k in enumerate(kinds) if k is SUMMED]
            if name in ("add", "sub"):
                # A free term joins the sum once, not once per chunk.
                inputs = [self._weighted(x, node.out.dtype) if k is None else x
                          for x, k in zip(inputs, kinds)]
            elif not ((name in _LINEAR_UNARY and _keeps_floats(node))
                      or (name == "mul" and len(summed) == 1)
                      or (name == "div" and summed == [0])):
                raise self._error(node, "is not linear in a sum over the batch, so it is "
                                        "not a sum of per-row terms")
            return SUMMED, node.attrs, inputs
        out = node.out
        axis = self._common_axis(node, [(v, k) for v, k in zip(node.inputs, kinds)], out.ndim)
        params = node.attrs
        if name == "broadcast_to":
            shape = list(params["shape"])
            shape[axis] = self._resized(shape[axis])
            params = {**params, "shape": tuple(shape)}
        return axis, params, inputs

    def _common_axis(self, node: Node, operands: list, ndim: int) -> int:
        """The batch axis of a broadcast result (right-aligned, NumPy's rule)."""
        axes = {k + ndim - v.ndim for v, k in operands if isinstance(k, int)}
        if len(axes) > 1:
            raise self._error(node, f"lines up batch axes at different positions {sorted(axes)}")
        (axis,) = axes
        for v, k in operands:
            at = axis - (ndim - v.ndim)
            if k is None and at >= 0 and v.shape[at] != 1:
                raise self._error(node, f"combines the rows with a {v.type_str} value that is not "
                                        f"batch-chunked but has {v.shape[at]} entries along the "
                                        f"batch axis; pass it as a dask array chunked like the "
                                        f"other batch arguments")
        return axis

    def _reduction(self, node: Node, kinds: list) -> tuple:
        (kind,) = kinds
        name = node.primitive.name
        params = node.attrs
        if "axes" not in params:
            raise self._error(node, "cannot prove that it keeps rows apart")
        axes, keepdims = params["axes"], bool(params.get("keepdims"))
        if kind is SUMMED or kind in axes:
            if name != "reduce_sum":
                raise self._error(node, "reduces over the batch axis (across rows): only a sum "
                                        "or a mean over the batch adds up chunk by chunk")
            return SUMMED, params, None
        return (kind if keepdims else kind - sum(a < kind for a in axes)), params, None

    def _matmul(self, node: Node, kinds: list) -> object:
        a, b = node.inputs
        ka, kb = kinds
        if SUMMED in kinds:
            if ka is None or kb is None:
                return SUMMED           # linear in the sum
            raise self._error(node, "multiplies a sum over the batch with per-row values")
        contracts_a = ka == a.ndim - 1
        contracts_b = kb == b.ndim - 2
        if contracts_a and contracts_b:
            return SUMMED               # X.T @ Y: a sum over rows of outer products
        if contracts_a or contracts_b:
            raise self._error(node, "contracts the batch axis with a parameter (a value that is "
                                    "not batch-chunked)")
        ndim = node.out.ndim
        if ka == a.ndim - 2 or kb == b.ndim - 1:
            if isinstance(ka, int) and isinstance(kb, int):
                raise self._error(node, "multiplies rows of one batch argument with rows of "
                                        "another (every pair of rows)")
            axis = ndim - 2 if ka == a.ndim - 2 else ndim - 1
            # A free operand's stacking dimensions broadcast; they hold no batch axis.
            return axis
        # The batch axis is among the stacking dimensions, which broadcast like elementwise.
        stack = [(Value(v.shape[:-2], v.dtype), k) for v, k in zip(node.inputs, kinds)]
        return self._common_axis(node, stack, ndim - 2)

    def _layout(self, node: Node, kinds: list) -> tuple:
        name = node.primitive.name
        params = node.attrs
        if name == "gather":
            return self._gather(node, kinds), params, None
        if len(kinds) != 1 or name not in ("transpose", "reshape", "slice"):
            raise self._error(node, "cannot prove that it keeps rows apart")
        (kind,) = kinds
        (x,) = node.inputs
        if kind is SUMMED:
            return SUMMED, params, None
        if name == "transpose":
            return tuple(params["perm"]).index(kind), params, None
        if name == "slice":
            index = list(params["index"])
            if tuple(index[kind]) != (0, x.shape[kind], 1):
                raise self._error(node, "selects some rows of the batch: which rows depends "
                                        "on how the batch is chunked")
            index[kind] = (0, self._resized(x.shape[kind]), 1)
            return kind, {**params, "index": tuple(index)}, None
        shape = list(params["shape"])
        axis = _reshaped_axis(x.shape, kind, tuple(shape), self.batch)
        if axis is None:
            raise self._error(node, f"reshapes {x.type_str} to {tuple(shape)}, which moves the "
                                    f"batch axis {kind} inside another axis (rows interleaved)")
        shape[axis] = self._resized(shape[axis])
        return axis, {**params, "shape": tuple(shape)}, None

    def _gather(self, node: Node, kinds: list) -> int:
        """take_along_axis and x[rows, labels]: a gather whose leading (`batch`) axes,
        shared by the array and the index arrays, include the batch axis reads each
        row's values from that row only."""
        leading = node.param("batch")
        axis = kinds[0]
        if not (isinstance(axis, int) and axis < leading and all(k == axis for k in kinds)):
            raise self._error(node, "indexes across rows (only a gather that keeps the batch "
                                    "axis among its leading axes, as take_along_axis does, reads "
                                    "each row from that row)")
        return axis

    # ---------------------------------------------------------------- helpers

    def _resized(self, size: int) -> int:
        """A batch axis's size in the chunk. The axis holds the rows outermost, each
        row's `size // N` entries together (a reshape may have merged the rows with an
        inner axis: x.reshape(N * T, D))."""
        return self.rows * (size // self.batch)

    def _weighted(self, value: Value, dtype: np.dtype) -> Value:
        share = self.shares.get(dtype)
        if share is None:
            share = self.shares[dtype] = Value((), dtype, name=f"share_{dtype.name}")
        shape, out_dtype = P.mul.infer(value, share)
        out = Value(shape, out_dtype)
        self.nodes.append(Node(P.mul, (value, share), (), (out,), None))
        return out

    def _error(self, node: Node, why: str) -> BatchError:
        shapes = ", ".join(v.type_str for v in node.inputs)
        return BatchError(located(f"the loss is not a sum of per-row terms over the batch: "
                                  f"{node.primitive.name} ({shapes}) {why}", node.source))


def _keeps_floats(node: Node) -> bool:
    # A cast to an integer or bool truncates: not linear.
    return node.out.dtype.kind == "f"


def _batch_size(graph: Graph, input_axes: tuple) -> int:
    sizes = {v.shape[a] for v, a in zip(graph.inputs, input_axes) if a is not None}
    if len(sizes) != 1:
        raise ValueError(f"batch-chunked inputs must share one batch size, got {sorted(sizes)}")
    return sizes.pop()


def _reshaped_axis(shape: tuple, axis: int, new: tuple, rows: int) -> int | None:
    """Where a reshape puts the rows of batch axis `axis`, or None when they do not
    stay the outermost index of one axis. The rows are outermost in axis i of the
    result when as many elements come before it as before `axis`, and its size is a
    multiple of the row count (merging inner axes into it, x(N, T, D) -> (N*T, D), or
    splitting them off, (N*T, D) -> (N, T, D))."""
    before = int(np.prod(shape[:axis], dtype=np.int64))
    for i, size in enumerate(new):
        if int(np.prod(new[:i], dtype=np.int64)) == before and size and size % rows == 0:
            return i
    return None
