"""The eager backward: gather the recorded IR, differentiate it, run the backward graph.

`gather` walks the edges of the recorded ops from the outputs back to the leaves
and joins their nodes into one forward `Graph`. `plan_backward` runs the same
symbolic pass as `compile_grad` (`ir.vjp_graph` with the output cotangent as an
input, then `ir.optimize`) and replaces forward values that are already computed
(kept by the ops that made them) by inputs. The result is cached by the graph's
*structure* (primitives, params, wiring, shapes, dtypes), so running a backward
over an equally shaped program again costs a dictionary lookup, not a
differentiation, and never a second compile. Small graphs run on the NumPy
interpreter; large ones through the compiled runtime (fused Numba kernels).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir.builder import Builder, building
from fusegrad.ir.graph import Graph, Node, Value, live_nodes
from fusegrad.tracer.graph_nodes import AccumulateGrad, Constant, Edge, Function

# Below this many input elements a backward runs on the NumPy interpreter; a
# compile (about a second per kernel) pays off only for large arrays.
COMPILE_MIN_ELEMENTS = int(os.environ.get("FUSEGRAD_EAGER_COMPILE_MIN", 100_000))


@dataclass(eq=False)
class Recorded:
    """The forward subgraph between some outputs and the leaves."""

    inputs: list[Value]          # values read from outside (leaves, constants), canonical order
    edges: list[Edge]            # where each input's data comes from
    nodes: list[Node]            # in creation (topological) order
    index: dict[Value, int]      # canonical number of every value, in program order
    values: list[Value]          # the inverse of `index`
    functions: list[Function]
    saved: dict[Value, np.ndarray] = field(default_factory=dict)   # still-valid forward results


def gather(root_edges: Sequence[Edge]) -> Recorded:
    frontier: dict[Value, Edge] = {}
    functions: list[Function] = []
    seen: set[int] = set()
    stack: list[Function] = []

    def visit(edge: Edge) -> None:
        source = edge[1]
        if isinstance(source, Function):
            if id(source) not in seen:
                seen.add(id(source))
                functions.append(source)
                stack.append(source)
        elif edge[0] not in frontier:
            frontier[edge[0]] = edge

    for edge in root_edges:
        visit(edge)
    while stack:
        for edge in stack.pop().edges:
            visit(edge)
    functions.sort(key=lambda f: f.seq)
    nodes = [node for f in functions for node in f.nodes]

    # Number values in program order, so that two runs of the same program agree.
    index: dict[Value, int] = {}
    values: list[Value] = []
    inputs: list[Value] = []

    def number(value: Value, is_input: bool) -> None:
        if value not in index:
            index[value] = len(values)
            values.append(value)
            if is_input:
                inputs.append(value)

    for node in nodes:
        for value in node.inputs:
            number(value, True)
        for value in node.outputs:
            number(value, False)
    for edge in root_edges:
        number(edge[0], True)
    edges = [frontier[v] for v in inputs]
    recorded = Recorded(inputs, edges, nodes, index, values, functions)
    for f in functions:
        if f.saved is None:
            continue
        for value, entry in zip(f.outputs, f.saved):
            if entry is not None and entry[1][0] == entry[2] and value in index:
                recorded.saved[value] = entry[0]
    return recorded


def _structure(recorded: Recorded) -> tuple:
    index = recorded.index
    types = tuple((v.shape, v.dtype.str) for v in recorded.inputs)
    nodes = tuple((n.primitive.name, repr(n.params), tuple(index[v] for v in n.inputs))
                  for n in recorded.nodes)
    return types, nodes


# ---------------------------------------------------------------- planning

@dataclass(eq=False)
class BackwardPlan:
    graph: Graph                      # inputs -> gradients
    sources: list[tuple[str, int]]    # per graph input: ("input", i), ("seed", k), ("known", n), ("zeros", j)
    executable: object = None         # the compiled runtime's Executable, made on first large run


_cache: dict[tuple, BackwardPlan] = {}


def known_values(recorded: Recorded) -> list[Value]:
    """Forward values the backward reads instead of recomputing: every result an op
    kept. (Measured on W2 at 1e7 elements: reading them back beats recomputing the
    transcendentals inside the fused kernels, 129 ms against 201 ms.)"""
    result = []
    for f in recorded.functions:
        if f.nodes:   # an op with no nodes is a view of its argument, an input already
            result.extend(v for v in f.outputs if v in recorded.saved)
    return result


def plan_backward(recorded: Recorded, roots: list[Value], wrt: list[Value],
                  known: list[Value]) -> BackwardPlan:
    index = recorded.index
    key = (_structure(recorded), tuple(index[v] for v in roots), tuple(index[v] for v in wrt),
           tuple(sorted(index[v] for v in known)))
    plan = _cache.get(key)
    if plan is None:
        plan = _cache[key] = _build(recorded, roots, wrt, known)
    return plan


def _build(recorded: Recorded, roots: list[Value], wrt: list[Value], known: list[Value]) -> BackwardPlan:
    index = recorded.index
    frontier = set(recorded.inputs)
    # A gradient with respect to a computed value (autograd.grad of an intermediate,
    # retain_grad) is the gradient with respect to a zero added to it.
    nodes, roots, perturbations = _perturb(recorded.nodes, roots, [v for v in wrt if v not in frontier])
    inputs = list(recorded.inputs) + [p for _, p in perturbations]
    perturbation_of = {v: p for v, p in perturbations}
    wrt_inputs = [perturbation_of.get(v, v) for v in wrt]
    if len(roots) == 1:
        forward = Graph(tuple(inputs), tuple(nodes), tuple(roots))
        joint = ir.vjp_graph(forward, [inputs.index(v) for v in wrt_inputs], seed_input=True)
        seeds = [joint.inputs[-1]]
    else:
        # Several outputs: differentiate sum_i <seed_i, output_i>, one scalar.
        seeds = [Value(r.shape, r.dtype, name=f"cotangent{i}") for i, r in enumerate(roots)]
        builder = Builder()
        builder.nodes.extend(nodes)
        with building(builder):
            terms = [ops.reduce_sum(ops.cast(ops.mul(r, s), np.float64)) for r, s in zip(roots, seeds)]
            total = terms[0]
            for term in terms[1:]:
                total = ops.add(total, term)
        forward = builder.finish(tuple(inputs + seeds), (total,))
        joint = ir.vjp_graph(forward, [inputs.index(v) for v in wrt_inputs])
    backward = ir.optimize(joint.replace(outputs=joint.outputs[1:]))
    backward = _read_known(backward, set(known))

    sources: dict[Value, tuple[str, int]] = {}
    for i, value in enumerate(recorded.inputs):
        sources[value] = ("input", i)
    for j, (_, p) in enumerate(perturbations):
        sources[p] = ("zeros", j)
    for k, seed in enumerate(seeds):
        sources[seed] = ("seed", k)
    for value in known:
        sources[value] = ("known", index[value])
    used = {v for n in backward.nodes for v in n.inputs} | set(backward.outputs)
    graph_inputs = tuple(v for v in list(sources) if v in used)
    graph = backward.replace(inputs=graph_inputs)
    return BackwardPlan(graph, [sources[v] for v in graph_inputs])


def _perturb(nodes: list[Node], roots: list[Value], values: list[Value]):
    if not values:
        return nodes, roots, []
    perturbations = [(v, Value(v.shape, v.dtype, name="perturbation")) for v in values]
    replacement: dict[Value, Value] = {}
    builder = Builder()
    pending = dict(perturbations)
    for node in nodes:
        if any(v in replacement for v in node.inputs):
            node = Node(node.primitive, tuple(replacement.get(v, v) for v in node.inputs),
                        node.params, node.outputs, node.source)
        builder.nodes.append(node)
        for out in node.outputs:
            if out in pending:
                with building(builder):
                    replacement[out] = ops.add(out, pending.pop(out))
    return builder.nodes, [replacement.get(r, r) for r in roots], perturbations


def _read_known(graph: Graph, known: set[Value]) -> Graph:
    """Drop the nodes that compute known values; those values become inputs."""
    if not known:
        return graph
    nodes = [n for n in graph.nodes if not all(v in known for v in n.outputs)]
    nodes = live_nodes(nodes, graph.outputs)
    return graph.replace(nodes=tuple(nodes))


# ---------------------------------------------------------------- running

def differentiate(recorded: Recorded, roots: list[Value], wrt: list[Value],
                  seeds: list[np.ndarray]) -> tuple[BackwardPlan, list[np.ndarray]]:
    """Vector-Jacobian products of `roots` (with cotangents `seeds`) for each of `wrt`."""
    elements = sum(v.size for v in recorded.inputs) + sum(s.size for s in seeds)
    compiled = elements >= COMPILE_MIN_ELEMENTS
    plan = plan_backward(recorded, roots, wrt, known_values(recorded))
    arrays = []
    for kind, i in plan.sources:
        if kind == "input":
            arrays.append(_input_data(recorded.edges[i]))
        elif kind == "seed":
            arrays.append(seeds[i])
        elif kind == "known":
            arrays.append(recorded.saved[recorded.values[i]])
        else:
            value = plan.graph.inputs[len(arrays)]
            arrays.append(np.zeros(value.shape, value.dtype))
    if compiled and plan.graph.nodes:
        if plan.executable is None:
            from fusegrad.runtime import compile_graph
            plan.executable = compile_graph(plan.graph, label="backward")
        outputs = plan.executable([np.ascontiguousarray(a) for a in arrays])
    else:
        outputs = ir.evaluate(plan.graph, arrays)
    return plan, _owned(outputs, arrays)


def _owned(outputs: list[np.ndarray], inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Gradients the caller may keep and add into: writable, not aliasing an input
    (a gradient can be the seed itself, or a forward value) or each other."""
    result = []
    for out in outputs:
        if (not out.flags.writeable or not out.flags.c_contiguous
                or any(np.may_share_memory(out, a) for a in inputs)
                or any(np.may_share_memory(out, r) for r in result)):
            out = np.array(out, order="C")
        result.append(out)
    return result


def _input_data(edge: Edge) -> np.ndarray:
    value, source, version = edge
    if isinstance(source, AccumulateGrad):
        tensor = source.variable
        data, box = tensor._data, tensor._box
    else:
        data, box = source.array, source.box
    if box is not None and version is not None and box[0] != version:
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [{_type_name(data)} {list(data.shape)}] is at version {box[0]}; "
            f"expected version {version} instead.")
    return data


def _type_name(data: np.ndarray) -> str:
    from fusegrad.tracer.dtypes import as_dtype
    try:
        return _LEGACY.get(as_dtype(data.dtype).name, "fusegrad.Tensor")
    except TypeError:
        return "fusegrad.Tensor"


_LEGACY = {"float32": "fusegrad.FloatTensor", "float64": "fusegrad.DoubleTensor",
           "int64": "fusegrad.LongTensor", "int32": "fusegrad.IntTensor",
           "bool": "fusegrad.BoolTensor", "float16": "fusegrad.HalfTensor"}
