"""Graphs as bytes, to ship a program to another process (a Dask worker).

A graph pickles as plain data except for its primitives, which travel by name and
are looked up in the receiving process's registry: a primitive's rules are code
(lambdas, which pickle cannot carry) and passes test primitives by identity
(`node.primitive is P.const`), so the receiver must use its own. No compiled code
ever travels; the receiver plans and compiles (or loads from its disk cache).
"""
from __future__ import annotations

import hashlib
import io
import pickle

from fusegrad.ir.graph import Graph
from fusegrad.ir.primitive import REGISTRY, Primitive


class _GraphPickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, Primitive):
            return registered, (obj.name,)
        return NotImplemented


def registered(name: str) -> Primitive:
    """The primitive called `name` in this process (unpickling a graph calls it)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"this process's fusegrad has no primitive {name!r}: the graph was "
                         f"made by another version of fusegrad") from None


def dumps(graph: Graph) -> bytes:
    buffer = io.BytesIO()
    _GraphPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(graph)
    return buffer.getvalue()


def loads(data: bytes) -> Graph:
    graph = pickle.loads(data)
    if not isinstance(graph, Graph):
        raise TypeError(f"expected a pickled Graph, got {type(graph).__name__}")
    return graph


def digest(data: bytes) -> str:
    """A short name for a serialized graph (its content), for caches keyed by it."""
    return hashlib.sha256(data).hexdigest()[:32]
