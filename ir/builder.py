"""Building graphs: the one place nodes are created.

`Primitive.bind` appends a node to the innermost active `Builder`. The tracer, the
differentiation pass and the passes all build graphs through this module, so a VJP
rule written with ordinary graph operations emits IR like any other code.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy as np

from fusegrad.ir.graph import Graph, Node, Value, live_nodes


class Builder:
    """Collects nodes in creation order (which is a topological order)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.constants: dict[int, tuple[Value, np.ndarray]] = {}

    def add(self, node: Node) -> None:
        self.nodes.append(node)

    def capture(self, array: np.ndarray) -> Value:
        """A numpy array closed over by traced code becomes a constant input."""
        entry = self.constants.get(id(array))
        if entry is None:
            entry = (Value(array.shape, array.dtype, name=f"const{len(self.constants)}"), array)
            self.constants[id(array)] = entry
        return entry[0]

    def finish(self, inputs: tuple[Value, ...], outputs: tuple[Value, ...]) -> Graph:
        nodes = tuple(live_nodes(self.nodes, outputs))
        used = {id(v) for node in nodes for v in node.inputs} | {id(v) for v in outputs}
        constants = tuple(c for c in self.constants.values() if id(c[0]) in used)
        return Graph(inputs=inputs, nodes=nodes, outputs=outputs, constants=constants)


class _State(threading.local):
    def __init__(self) -> None:
        self.builders: list[Builder] = []
        self.source: str | None = None


_state = _State()


@contextlib.contextmanager
def building(builder: Builder | None = None) -> Iterator[Builder]:
    builder = builder or Builder()
    _state.builders.append(builder)
    try:
        yield builder
    finally:
        _state.builders.pop()


def current_builder() -> Builder:
    if not _state.builders:
        raise RuntimeError("fusegrad: graph operations need an active builder (ir.building())")
    return _state.builders[-1]


@contextlib.contextmanager
def source_line(source: str | None) -> Iterator[None]:
    """Attribute the nodes created inside to `source` (e.g. "model.py:7")."""
    saved = _state.source
    _state.source = source
    try:
        yield
    finally:
        _state.source = saved


def current_source() -> str | None:
    return _state.source


def make_node(primitive: Any, inputs: tuple[Value, ...], params: dict[str, Any],
              out_types: list[tuple[tuple[int, ...], np.dtype]]) -> Node:
    outputs = tuple(Value(shape, dtype) for shape, dtype in out_types)
    return Node(primitive, inputs, tuple(sorted(params.items())), outputs, _state.source)


def is_building() -> bool:
    """Whether a builder is active (current_builder() would return one), without the
    exception: the eager executor asks on every tensor it wraps."""
    return bool(_state.builders)
