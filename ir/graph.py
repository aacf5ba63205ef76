"""The typed SSA graph: values, nodes, graphs.

A `Value` is an SSA variable with a static shape and dtype. A `Node` applies one
primitive to input values and defines output values. A `Graph` is a closed program:
input values, nodes in a valid topological order, output values. Everything here
is immutable; passes build new graphs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

Shape = tuple[int, ...]

FLOATING = (np.dtype(np.float32), np.dtype(np.float64))
BOOL = np.dtype(np.bool_)


class Value:
    """An SSA value. Identity is the object: two values are never equal by content."""

    __slots__ = ("shape", "dtype", "name", "__weakref__")

    def __init__(self, shape: Shape, dtype: Any, name: str | None = None):
        self.shape: Shape = tuple(int(d) for d in shape)
        self.dtype: np.dtype = np.dtype(dtype)
        # Only graph arguments carry a name (the user's parameter name); other
        # values are named by the printer, in order of first use.
        self.name = name

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def type_str(self) -> str:
        return f"{dtype_str(self.dtype)}[{','.join(map(str, self.shape))}]"

    def __repr__(self) -> str:
        return f"Value({self.name or hex(id(self))}:{self.type_str})"


@dataclass(frozen=True, eq=False)
class Node:
    """One primitive application: ``outputs = primitive[params](*inputs)``."""

    primitive: Any  # ir.primitive.Primitive; typed loosely to avoid an import cycle
    inputs: tuple[Value, ...]
    params: tuple[tuple[str, Any], ...]
    outputs: tuple[Value, ...]
    source: str | None = None  # "file.py:12" of the user's line that traced it

    @property
    def out(self) -> Value:
        (value,) = self.outputs
        return value

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.params)

    def param(self, name: str, default: Any = None) -> Any:
        for key, value in self.params:
            if key == name:
                return value
        return default

    @property
    def key(self) -> tuple:
        """What makes two nodes compute the same thing (used by CSE and caching)."""
        # Params compare by repr: with == a const 0.0 would merge with -0.0, which
        # turns x / -0.0 from -inf into inf.
        return (self.primitive.name, tuple(id(v) for v in self.inputs), repr(self.params))

    def __repr__(self) -> str:
        return f"Node({self.primitive.name}, {self.inputs} -> {self.outputs})"


@dataclass(frozen=True, eq=False)
class Graph:
    inputs: tuple[Value, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Value, ...]
    # Captured constant arrays (numpy arrays the traced function closed over):
    # extra inputs whose data travels with the graph.
    constants: tuple[tuple[Value, np.ndarray], ...] = field(default=())

    def producers(self) -> dict[Value, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    @property
    def all_inputs(self) -> tuple[Value, ...]:
        return self.inputs + tuple(v for v, _ in self.constants)

    def replace(self, **changes) -> "Graph":
        fields = dict(inputs=self.inputs, nodes=self.nodes, outputs=self.outputs,
                      constants=self.constants)
        fields.update(changes)
        return Graph(**fields)


def dtype_str(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype == BOOL:
        return "bool"
    return {"f": "f", "i": "i", "u": "u", "c": "c"}.get(dtype.kind, dtype.kind) + str(8 * dtype.itemsize)


def live_nodes(nodes: Iterable[Node], outputs: Iterable[Value]) -> list[Node]:
    """The nodes that `outputs` depend on, in their original (topological) order."""
    nodes = list(nodes)
    needed = {id(v) for v in outputs}
    live = []
    for node in reversed(nodes):
        if any(id(v) in needed for v in node.outputs):
            live.append(node)
            needed.update(id(v) for v in node.inputs)
    live.reverse()
    return live


def first_backward_node(joint: Graph, forward_outputs: int) -> int:
    """In a joint graph, the index of the first node that the forward outputs (the
    first `forward_outputs`) do not need: where printing marks the backward."""
    forward = {id(node) for node in live_nodes(joint.nodes, joint.outputs[:forward_outputs])}
    return next((i for i, node in enumerate(joint.nodes) if id(node) not in forward),
                len(joint.nodes))
