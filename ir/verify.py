"""Check a graph's invariants (like jax's check_jaxpr); tests run it after every pass."""
from __future__ import annotations

from fusegrad.ir.graph import Graph


class GraphInvariantError(AssertionError):
    pass


def verify(graph: Graph) -> Graph:
    defined = set(map(id, graph.all_inputs))
    for node in graph.nodes:
        for value in node.inputs:
            if id(value) not in defined:
                raise GraphInvariantError(f"{node} uses {value} before it is defined")
        types = node.primitive.infer(*node.inputs, **node.attrs)
        if not node.primitive.multiple_results:
            types = [types]
        for out, (shape, dtype) in zip(node.outputs, types):
            if (out.shape, out.dtype) != (tuple(shape), dtype):
                raise GraphInvariantError(
                    f"{node}: declared {out.type_str}, the rule gives {dtype}{list(shape)}")
            if id(out) in defined:
                raise GraphInvariantError(f"{out} is defined twice")
            defined.add(id(out))
    for value in graph.outputs:
        if id(value) not in defined:
            raise GraphInvariantError(f"output {value} is never defined")
    return graph
