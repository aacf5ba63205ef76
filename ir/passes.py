"""Graph -> Graph passes, in the order of `PIPELINE`.

Each pass is a pure function: it builds a new graph and never edits its input
(nodes are frozen; a node whose inputs change is rebuilt, the others are shared).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from fusegrad.ir import ops
from fusegrad.ir import primitives as P
from fusegrad.ir.builder import Builder, building, source_line
from fusegrad.ir.graph import Graph, Node, Value, live_nodes
from fusegrad.ir.interpreter import run_node
from fusegrad.ir.primitive import ELEMENTWISE
from fusegrad.ir.shapes import broadcast_shapes

def _const_value(value: Value, producers: dict[Value, Node]):
    """The constant `value` is, for rewrites that change the graph's structure by its
    value; None for a constant derived from shapes (ops.size_const), whose value
    changes with the batch size while the kernels compiled for the graph should not."""
    node = producers.get(value)
    if node is not None and node.primitive is P.const and not ops.is_size_const(node):
        return node.param("value")
    return None


def _is_const(value: Value, producers: dict[Value, Node], number: float) -> bool:
    """Whether `value` is the constant `number`, the sign of a zero included: 0.0 and
    -0.0 compare equal but are different identities (x + -0.0 is x, x + 0.0 is not)."""
    found = _const_value(value, producers)
    return (found is not None and found == number
            and math.copysign(1, found) == math.copysign(1, number))


def _identity_operand(node: Node, producers) -> Value | None:
    """x + -0.0, -0.0 + x, x - 0.0, x * 1, 1 * x, x / 1 -> x, when that keeps shape and
    dtype: identities in IEEE arithmetic, NaN, inf and -0.0 included. `x + 0.0` is not
    one (-0.0 + 0.0 is +0.0), nor is `x - -0.0`; for integers every zero is."""
    name = node.primitive.name
    if name not in ("add", "sub", "mul", "div"):
        return None
    a, b = node.inputs
    if name in ("mul", "div"):
        unit = 1.0
    elif node.out.dtype.kind == "f":
        unit = -0.0 if name == "add" else 0.0
    else:
        unit = 0
    candidates = [(a, b)] + ([(b, a)] if name in ("add", "mul") else [])
    for keep, drop in candidates:
        if (_is_const(drop, producers, unit) and keep.shape == node.out.shape
                and keep.dtype == node.out.dtype):
            return keep
    return None


def _negation(node: Node, producers) -> Node | None:
    """x * -1, -1 * x -> neg x (exact; the backward of `a - b` multiplies by -1)."""
    if node.primitive is not P.mul:
        return None
    a, b = node.inputs
    for keep, drop in ((a, b), (b, a)):
        if (_is_const(drop, producers, -1.0) and keep.shape == node.out.shape
                and keep.dtype == node.out.dtype):
            return Node(P.neg, (keep,), (), node.outputs, node.source)
    return None


def _absorb_broadcasts(node: Node, producers) -> Node:
    """Elementwise ops broadcast implicitly, so an explicit broadcast_to feeding one is
    dropped when the result's shape does not change (the seed of a backward pass
    becomes a scalar constant instead of a full array of ones)."""
    if node.primitive.kind != ELEMENTWISE or node.primitive is P.broadcast_to:
        return node
    inputs = list(node.inputs)
    for i, value in enumerate(inputs):
        producer = producers.get(value)
        if producer is None or producer.primitive is not P.broadcast_to:
            continue
        trial = inputs[:i] + [producer.inputs[0]] + inputs[i + 1:]
        if broadcast_shapes(*(v.shape for v in trial)) == node.out.shape:
            inputs = trial
    if inputs == list(node.inputs):
        return node
    return Node(node.primitive, tuple(inputs), node.params, node.outputs, node.source)


def _fold_layout(node: Node, producers) -> Value | None:
    name = node.primitive.name
    if name in ("reshape", "broadcast_to") and node.inputs[0].shape == node.out.shape:
        return node.inputs[0]
    if name == "neg":
        inner = producers.get(node.inputs[0])
        if inner is not None and inner.primitive is P.neg:
            return inner.inputs[0]
    return None


def _chain_layout(node: Node, producers) -> Node:
    """reshape(reshape(x)) -> reshape(x); broadcast_to(reshape(x)) -> broadcast_to(x)
    when the reshape only put size-1 axes in front (broadcasting does that anyway)."""
    inner = producers.get(node.inputs[0]) if node.inputs else None
    if inner is None or inner.primitive is not P.reshape:
        return node
    x = inner.inputs[0]
    prepends_ones = inner.out.shape[inner.out.ndim - x.ndim:] == x.shape and \
        all(d == 1 for d in inner.out.shape[:inner.out.ndim - x.ndim])
    if node.primitive is P.reshape or (node.primitive is P.broadcast_to and prepends_ones):
        return Node(node.primitive, (x,), node.params, node.outputs, node.source)
    return node


def _reshape_splat(node: Node, producers) -> Node:
    """reshape(broadcast_to(scalar)) -> broadcast_to(scalar): a fill has no layout."""
    inner = producers.get(node.inputs[0]) if node.primitive is P.reshape else None
    if inner is None or inner.primitive is not P.broadcast_to or inner.inputs[0].size != 1:
        return node
    scalar = inner.inputs[0]
    if scalar.ndim > node.out.ndim:
        return node
    return Node(P.broadcast_to, (scalar,), (("shape", node.out.shape),), node.outputs, node.source)


def _rewrite(graph: Graph, visit: Callable[[Node, dict, dict], "Node | list | Value"]) -> Graph:
    """Rebuild `graph`, letting `visit` replace each node by a node, by a list of nodes
    (the last defines the original outputs) or by an existing value."""
    replaced: dict[Value, Value] = {}
    producers: dict[Value, Node] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        inputs = tuple(replaced.get(v, v) for v in node.inputs)
        if inputs != node.inputs:
            node = Node(node.primitive, inputs, node.params, node.outputs, node.source)
        result = visit(node, producers, replaced)
        if isinstance(result, Value):
            replaced[node.out] = result
            continue
        for new_node in result if isinstance(result, list) else [result]:
            nodes.append(new_node)
            for out in new_node.outputs:
                producers[out] = new_node
    outputs = tuple(replaced.get(v, v) for v in graph.outputs)
    return graph.replace(nodes=tuple(nodes), outputs=outputs)


def _defining(nodes: list[Node], result: Value, original: Node) -> list[Node]:
    """The replacement nodes, the one computing `result` now defining `original`'s
    output, so that a value keeps its identity (and its name) through a rewrite."""
    *before, last = nodes
    assert last.out is result
    return before + [Node(last.primitive, last.inputs, last.params, original.outputs, last.source)]


def _reciprocal(node: Node, producers) -> "list[Node] | None":
    """a / c -> a * (1 / c) for a constant c whose reciprocal is exact (a power of two
    such as 256): both round the same real number, so the result is the same, and a
    multiply is cheaper than a divide. Not for a mean's count (a size-derived constant,
    see `_const_value`): the program would differ between a batch of 64 and one of 100;
    its division is by the kernel argument, once per mean, and gives the same bits. Other divisors stay divisions:
    a * (1 / b) can be an ulp off, and is inf where 1 / b overflows (b subnormal)."""
    if node.primitive is not P.div or node.out.dtype.kind != "f":
        return None
    a, b = node.inputs
    c = _const_value(b, producers)
    if c is None or not np.isfinite(c) or abs(math.frexp(c)[0]) != 0.5:
        return None
    # The reciprocal of a power of two is one too, exact unless it overflows (inf)
    # or falls below the subnormals (0).
    with np.errstate(all="ignore"):
        inverse = node.out.dtype.type(1) / node.out.dtype.type(c)
    if not np.isfinite(inverse) or inverse == 0:
        return None
    builder = Builder()
    with building(builder), source_line(node.source):
        product = ops.mul(a, float(inverse))
    return _defining(builder.nodes, product, node)


def simplify(graph: Graph) -> Graph:
    def visit(node, producers, replaced):
        node = _chain_layout(_absorb_broadcasts(node, producers), producers)
        node = _reshape_splat(node, producers)
        return (_identity_operand(node, producers) or _fold_layout(node, producers)
                or _negation(node, producers) or _reciprocal(node, producers) or node)
    return _rewrite(graph, visit)


def _splat(value: Value, producers: dict[Value, Node]) -> Node | None:
    """The const node a value is filled with, if it is a constant or a broadcast one."""
    node = producers.get(value)
    if node is not None and node.primitive is P.broadcast_to:
        node = producers.get(node.inputs[0])
    return node if node is not None and node.primitive is P.const else None


def fold_constants(graph: Graph) -> Graph:
    """Evaluate elementwise nodes whose inputs are all constants (or constants
    broadcast to a shape: the result is then the folded constant, broadcast)."""
    def visit(node, producers, replaced):
        if node.primitive.kind != ELEMENTWISE or not node.inputs or node.primitive is P.broadcast_to:
            return node
        consts = [_splat(v, producers) for v in node.inputs]
        if any(c is None for c in consts):
            return node
        args = [np.asarray(c.param("value"), dtype=v.dtype) for c, v in zip(consts, node.inputs)]
        folded = run_node(_scalar_node(node), args)[()].item()
        # Folded from a size-derived constant, it is one too (a mean's 1/N times the
        # backward's seed): still a kernel argument, of the same value.
        size = (("size", True),) if any(ops.is_size_const(c) for c in consts) else ()
        params = (("dtype", node.out.dtype),) + size + (("value", folded),)
        if node.out.shape == ():
            return Node(P.const, (), params, node.outputs, node.source)
        scalar = Value((), node.out.dtype)
        return [Node(P.const, (), params, (scalar,), node.source),
                Node(P.broadcast_to, (scalar,), (("shape", node.out.shape),), node.outputs,
                     node.source)]
    return _rewrite(graph, visit)


def _scalar_node(node: Node) -> Node:
    """The same operation on 0-d operands (to evaluate a folded constant)."""
    out = Value((), node.out.dtype)
    inputs = tuple(Value((), v.dtype) for v in node.inputs)
    return Node(node.primitive, inputs, node.params, (out,), node.source)


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    def visit(node, producers, replaced):
        if node.primitive.multiple_results:   # a scan: each body is its own
            return node
        key = node.key
        seen = cse_table.get(key)
        if seen is not None:
            return seen.out
        cse_table[key] = node
        return node
    cse_table: dict[tuple, Node] = {}
    return _rewrite(graph, visit)


def eliminate_dead_code(graph: Graph) -> Graph:
    nodes = tuple(live_nodes(graph.nodes, graph.outputs))
    used = {id(v) for node in nodes for v in node.inputs} | {id(v) for v in graph.outputs}
    constants = tuple(c for c in graph.constants if id(c[0]) in used)
    return graph.replace(nodes=nodes, constants=constants)


# Every rewrite gives the same result as the graph it replaces, bit for bit, NaN, inf,
# -0.0, overflow and subnormals included (tests/ir/test_passes.py tries the extremes).
# Rewrites that were not exact are gone: sum(x * w) -> sum(x) * w (rounds and can
# overflow where the true value does not), a / b -> a * (1 / b) for any b (an ulp off;
# inf for a subnormal b) and x + 0.0 -> x (-0.0 + 0.0 is +0.0).
PIPELINE = [simplify, fold_constants, eliminate_common_subexpressions, simplify,
            eliminate_dead_code]


def optimize(graph: Graph, pipeline=PIPELINE) -> Graph:
    for run_pass in pipeline:
        graph = run_pass(graph)
    return graph
