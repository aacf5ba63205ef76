"""Reverse-mode differentiation of a graph, emitting the backward as IR.

`vjp_graph` returns the *joint* graph: the forward nodes followed by the backward
nodes built from each primitive's VJP rule, with outputs ``(*forward outputs,
*gradients)``. Because the backward is ordinary IR, the joint graph can be
optimised and fused as a whole, and differentiated again.
"""
from __future__ import annotations

from typing import Sequence

from fusegrad.ir import ops
from fusegrad.ir.builder import Builder, building, source_line
from fusegrad.ir.errors import DTypeError, ShapeError
from fusegrad.ir.graph import Graph, Node, Value
from fusegrad.ir.primitive import ELEMENTWISE


def active_values(graph: Graph, wrt: Sequence[Value]) -> set[Value]:
    """Values that depend on `wrt`: the only ones that need a cotangent."""
    active = set(wrt)
    for node in graph.nodes:
        if node.primitive.vjp is not None and any(v in active for v in node.inputs):
            active.update(v for v in node.outputs if v.dtype.kind == "f")
    return active


def vjp_graph(graph: Graph, wrt: Sequence[int], *, seed_input: bool = False) -> Graph:
    """Differentiate output 0 of `graph` with respect to the inputs at positions `wrt`.

    With ``seed_input=False`` the output must be a scalar and the seed is 1. With
    ``seed_input=True`` the graph gains a last input, the output's cotangent, and
    the gradients are vector-Jacobian products with it.
    """
    (target, *_rest) = graph.outputs
    inputs = [graph.inputs[i] for i in wrt]
    for value in inputs:
        if value.dtype.kind != "f":
            raise DTypeError(f"cannot differentiate with respect to a {value.type_str} input "
                             f"({value.name or 'argument'}): only floating-point arrays have gradients")
    builder = Builder()
    builder.nodes.extend(graph.nodes)
    builder.constants = {id(v): (v, a) for v, a in graph.constants}
    with building(builder):
        if seed_input:
            seed = Value(target.shape, target.dtype, name="cotangent")
        else:
            if target.shape != ():
                raise ShapeError(f"the differentiated function must return a scalar, "
                                 f"got {target.type_str}")
            seed = ops.const(1.0, target.dtype)
        cotangents = _backward(graph.nodes, target, seed, active_values(graph, inputs))
        grads = tuple(cotangents.get(v) or _zeros(v) for v in inputs)
    new_inputs = graph.inputs + ((seed,) if seed_input else ())
    return builder.finish(new_inputs, graph.outputs + grads)


def _backward(nodes: Sequence[Node], target: Value, seed: Value, active: set[Value]) -> dict:
    return backward_nodes(nodes, [(target, seed)], active)


def backward_nodes(nodes: Sequence[Node], seeds: Sequence[tuple[Value, Value]],
                   active: set[Value]) -> dict:
    """Emit the backward of `nodes` from the (value, cotangent) `seeds`; return every
    active value's cotangent. A value seeded twice gets the sum."""
    cotangents: dict[Value, Value] = {}
    for value, seed in seeds:
        previous = cotangents.get(value)
        cotangents[value] = seed if previous is None else ops.add(previous, seed)
    for node in reversed(nodes):
        if node.primitive.vjp is None or not any(v in active for v in node.inputs):
            continue
        if node.primitive.multiple_results:
            # A multi-output node (scan) gets every output's cotangent, None where
            # nothing downstream used that output, and all its outputs.
            gs = [cotangents.get(v) for v in node.outputs]
            if all(g is None for g in gs):
                continue
            with source_line(node.source):
                contributions = node.primitive.vjp(gs, *node.inputs, outputs=node.outputs,
                                                   **node.attrs)
                _accumulate(node, contributions, cotangents, active)
            continue
        g = cotangents.get(node.outputs[0])
        if g is None:
            continue
        with source_line(node.source):
            contributions = node.primitive.vjp(g, *node.inputs, node.out, **node.attrs)
            _accumulate(node, contributions, cotangents, active)
    return cotangents


def _accumulate(node: Node, contributions, cotangents: dict, active: set[Value]) -> None:
    for x, ct in zip(node.inputs, contributions):
        if ct is None or x not in active:
            continue
        if node.primitive.kind == ELEMENTWISE:
            ct = ops.sum_to(ct, x.shape)
        ct = ops.cast(ct, x.dtype)
        previous = cotangents.get(x)
        cotangents[x] = ct if previous is None else ops.add(previous, ct)


def _zeros(value: Value) -> Value:
    return ops.broadcast_to(ops.const(0.0, value.dtype), value.shape)


# ---------------------------------------------------------------- transforms inside a trace
# (issue 11, item 11: fg.grad, fg.vjp, fg.jvp, fg.hessian on traced values)

def backward_values(nodes: Sequence[Node], wrt: Sequence[Value], target: Value,
                    seed: Value) -> list[Value]:
    """The cotangents of `wrt` for the sub-computation `nodes` (a slice of the current
    builder's nodes, in creation order) that ends at `target`, seeded with `seed`.

    The backward nodes are emitted into the *current* builder, after `nodes`, so the
    graph being traced goes on from there: a later differentiation of that graph
    (compile_grad's, or another transform's) differentiates through these nodes as
    through any others, which gives second derivatives. Only `nodes` are walked, so
    values computed before them are constants of this derivative even when they
    depend on `wrt` through earlier nodes (no perturbation confusion).
    """
    active = active_values(_Nodes(tuple(nodes)), wrt)
    cotangents = _backward(nodes, target, seed, active)
    return [cotangents.get(v) or _zeros(v) for v in wrt]


class _Nodes:
    """A node sequence where `active_values` expects a graph."""

    def __init__(self, nodes: tuple[Node, ...]) -> None:
        self.nodes = nodes
