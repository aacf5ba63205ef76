"""Loops that do not unroll: the `scan` primitive's body, meaning and derivative.

A scan node (JAX's ``lax.scan``) applies its *body* graph once per step:

    inputs   consts..., init carries..., xs...       (each x stacked on a leading axis)
    body     (consts..., carry..., x...) -> (carry'..., y...)
    outputs  final carries..., stacked ys..., the carry entering each step (stacked)

The last group is the residual of the backward pass: the derivative of a scan is
another scan, over the body's VJP graph, run in the opposite direction, reading the
carry each step started from (the body's own values are recomputed from it, as
cheap elementwise values are elsewhere). That backward scan's body is a graph like
any other, so it is optimised, fused and compiled once, and can be differentiated
again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from fusegrad.ir.graph import Graph, Value


@dataclass(frozen=True, eq=False)
class Body:
    """A scan's body graph, as a node parameter: compared by identity (a node key
    must not print a whole graph), shown by the printer indented under its node."""

    graph: Graph

    def __repr__(self) -> str:
        return f"<body of {len(self.graph.nodes)} nodes at {id(self):#x}>"


def split_inputs(inputs: Sequence, num_consts: int, num_carry: int) -> tuple[list, list, list]:
    return (list(inputs[:num_consts]), list(inputs[num_consts:num_consts + num_carry]),
            list(inputs[num_consts + num_carry:]))


def scan_types(*inputs: Value, body: Body, num_consts: int, num_carry: int, length: int,
               reverse: bool) -> list[tuple[tuple[int, ...], np.dtype]]:
    """The output types, after checking the body against the operands."""
    from fusegrad.ir.errors import DTypeError, ShapeError
    graph = body.graph
    consts, init, xs = split_inputs(inputs, num_consts, num_carry)
    for x in xs:
        if x.ndim == 0 or x.shape[0] != length:
            raise ShapeError(f"each xs array needs a leading axis of length {length}, "
                             f"got {x.type_str}")
    slices = [Value(x.shape[1:], x.dtype) for x in xs]
    for role, given, expected in (("operand", consts + init + slices, graph.inputs),
                                  ("carry result", graph.outputs[:num_carry], init)):
        if len(given) != len(expected):
            raise ShapeError(f"the body takes {len(graph.inputs)} inputs and returns "
                             f"{len(graph.outputs)} values; got {len(given)} for {len(expected)}")
        for a, b in zip(given, expected):
            if a.shape != b.shape:
                raise ShapeError(f"body {role} {a.type_str} does not match {b.type_str}")
            if a.dtype != b.dtype:
                raise DTypeError(f"body {role} {a.type_str} does not match {b.type_str}")
    ys = graph.outputs[num_carry:]
    return ([(v.shape, v.dtype) for v in init] + [((length,) + v.shape, v.dtype) for v in ys]
            + [((length,) + v.shape, v.dtype) for v in init])


def run_scan(run_body: Callable[[list], list], args: Sequence[np.ndarray], *, body: Body,
             num_consts: int, num_carry: int, length: int, reverse: bool) -> list[np.ndarray]:
    """The loop itself, calling `run_body(arrays) -> arrays` once per step: the
    interpreter's body evaluation, or the compiled body's executable."""
    consts, carry, xs = split_inputs(list(args), num_consts, num_carry)
    ys_types = body.graph.outputs[num_carry:]
    ys = [np.empty((length,) + v.shape, v.dtype) for v in ys_types]
    saved = [np.empty((length,) + v.shape, v.dtype) for v in body.graph.outputs[:num_carry]]
    for step in range(length):
        t = length - 1 - step if reverse else step
        for stack, value in zip(saved, carry):
            stack[t] = value
        results = run_body(consts + carry + [x[t] for x in xs])
        carry = results[:num_carry]
        for stack, value in zip(ys, results[num_carry:]):
            stack[t] = value
    # Fresh arrays: a zero-step scan's carry is its operand, which callers may not get.
    carry = [np.array(c, dtype=v.dtype).reshape(v.shape)
             for c, v in zip(carry, body.graph.outputs[:num_carry])]
    return carry + ys + saved


def scan_impl(*args: np.ndarray, body: Body, **params) -> list[np.ndarray]:
    """The reference meaning: the body run by the NumPy interpreter."""
    from fusegrad.ir.interpreter import evaluate
    return run_scan(lambda arrays: evaluate(body.graph, arrays), args, body=body, **params)


# ---------------------------------------------------------------- loop invariants

def hoist_invariants(body: Body, consts: list[Value], num_consts: int) -> tuple[Body, list[Value]]:
    """Move the body's nodes that read only its consts (``W.T`` in a backward body)
    out of the loop, into the current builder: computed once instead of each step.
    Their results become further consts of the body. Nodes of constants alone
    (a broadcast zero) stay: inside the body they fuse into its kernels."""
    from fusegrad.ir import primitives as P
    from fusegrad.ir.builder import current_builder, make_node, source_line
    graph = body.graph
    outer: dict[Value, Value] = dict(zip(graph.inputs[:num_consts], consts))
    literal = {v for v, _ in graph.constants}
    arrays = dict(graph.constants)
    literal.update(n.out for n in graph.nodes if n.primitive is P.const)
    kept, hoisted = [], False
    for node in graph.nodes:
        movable = (node.primitive is not P.const and not node.primitive.multiple_results
                   and all(v in outer or v in literal for v in node.inputs)
                   and any(v in outer for v in node.inputs))
        if not movable:
            kept.append(node)
            continue
        inputs = tuple(outer[v] if v in outer else _outside(v, arrays, graph) for v in node.inputs)
        with source_line(node.source):
            moved = make_node(node.primitive, inputs, node.attrs,
                              [(v.shape, v.dtype) for v in node.outputs])
            current_builder().add(moved)
        outer.update(zip(node.outputs, moved.outputs))
        hoisted = True
    if not hoisted:
        return body, consts
    # The hoisted values the body still reads become consts; the originals stay
    # (positions of the operands do not move).
    needed = {v for node in kept for v in node.inputs} | set(graph.outputs)
    extra = [v for v in outer if v not in graph.inputs[:num_consts] and v in needed]
    inputs = graph.inputs[:num_consts] + tuple(extra) + graph.inputs[num_consts:]
    from fusegrad.ir.builder import Builder
    builder = Builder()
    builder.nodes.extend(kept)
    builder.constants = {id(v): (v, a) for v, a in graph.constants}
    return (Body(builder.finish(inputs, graph.outputs)),
            list(consts) + [outer[v] for v in extra])


def _outside(value: Value, arrays: dict, graph: Graph) -> Value:
    """A literal of the body read by a hoisted node, in the enclosing graph."""
    from fusegrad.ir import ops
    from fusegrad.ir.builder import current_builder
    if value in arrays:
        return current_builder().capture(arrays[value])
    producer = graph.producers()[value]
    return ops.const(producer.param("value"), producer.param("dtype"))


# ---------------------------------------------------------------- the derivative

def scan_vjp(cotangents: list, *inputs: Value, outputs: tuple, body: Body, num_consts: int,
             num_carry: int, length: int, reverse: bool) -> list:
    """The cotangents of a scan's inputs: a scan of the body's VJP, run backwards."""
    from fusegrad.ir import ops
    consts, init, xs = split_inputs(inputs, num_consts, num_carry)
    num_ys = len(body.graph.outputs) - num_carry
    g_final = cotangents[:num_carry]
    g_ys = cotangents[num_carry:num_carry + num_ys]
    g_saved = cotangents[num_carry + num_ys:]
    saved = outputs[num_carry + num_ys:]
    has_gy = [g is not None and y.dtype.kind == "f"
              for g, y in zip(g_ys, body.graph.outputs[num_carry:])]
    has_gsaved = [g is not None and c.dtype.kind == "f" for g, c in zip(g_saved, init)]
    backward = backward_body(body.graph, num_consts, num_carry, has_gy, has_gsaved)
    fc = _floating(init)
    fk = _floating(consts)
    fx = _floating(xs)
    start = ([g_final[i] if g_final[i] is not None else _zeros(init[i]) for i in fc]
             + [_zeros(consts[k]) for k in fk])
    stacked = (list(saved) + list(xs) + [g for g, has in zip(g_ys, has_gy) if has]
               + [g for g, has in zip(g_saved, has_gsaved) if has])
    results = ops.scan(backward, consts, start, stacked, length=length, reverse=not reverse)
    ct_init = dict(zip(fc, results[:len(fc)]))
    ct_consts = dict(zip(fk, results[len(fc):len(fc) + len(fk)]))
    ct_xs = dict(zip(fx, results[len(fc) + len(fk):len(fc) + len(fk) + len(fx)]))
    return ([ct_consts.get(k) for k in range(len(consts))]
            + [ct_init.get(i) for i in range(len(init))]
            + [ct_xs.get(j) for j in range(len(xs))])


def backward_body(graph: Graph, num_consts: int, num_carry: int, has_gy: list[bool],
                  has_gsaved: list[bool]) -> Body:
    """One step of the backward scan, as a graph:

    inputs   consts..., ct_carry..., ct_consts_sum..., carry..., x..., ct_y..., ct_saved...
    outputs  ct of the carry entering the step..., ct_consts_sum + this step's...,
             ct_x...
    (floating-point carries, consts and xs only; ct_y for the ys given one)."""
    from fusegrad.ir import ops
    from fusegrad.ir.builder import Builder, building
    from fusegrad.ir.passes import optimize
    from fusegrad.ir.vjp import active_values, backward_nodes
    consts, carry, xs = split_inputs(graph.inputs, num_consts, num_carry)
    carry_out, ys = graph.outputs[:num_carry], graph.outputs[num_carry:]
    fc, fk, fx = _floating(carry), _floating(consts), _floating(xs)
    ct_carry = [Value(carry[i].shape, carry[i].dtype, name=f"ct_{i}") for i in fc]
    sums = [Value(consts[k].shape, consts[k].dtype) for k in fk]
    ct_ys = [Value(y.shape, y.dtype) for y, has in zip(ys, has_gy) if has]
    ct_saved = [Value(carry[i].shape, carry[i].dtype) for i, has in enumerate(has_gsaved) if has]
    builder = Builder()
    builder.nodes.extend(graph.nodes)
    builder.constants = {id(v): (v, a) for v, a in graph.constants}
    seeds = list(zip([carry_out[i] for i in fc], ct_carry))
    seeds += list(zip([y for y, has in zip(ys, has_gy) if has], ct_ys))
    wrt = [consts[k] for k in fk] + [carry[i] for i in fc] + [xs[j] for j in fx]
    with building(builder):
        cts = backward_nodes(graph.nodes, seeds, active_values(graph, wrt))
        new_ct_carry = [cts.get(carry[i]) or _zeros(carry[i]) for i in fc]
        extra = iter(ct_saved)
        new_ct_carry = [ops.add(ct, next(extra)) if has_gsaved[i] else ct
                        for i, ct in zip(fc, new_ct_carry)]
        new_sums = [ops.add(s, cts[consts[k]]) if consts[k] in cts else s
                    for s, k in zip(sums, fk)]
        ct_xs = [cts.get(xs[j]) or _zeros(xs[j]) for j in fx]
    inputs = tuple(consts + ct_carry + sums + carry + xs + ct_ys + ct_saved)
    return Body(optimize(builder.finish(inputs, tuple(new_ct_carry + new_sums + ct_xs))))


def _floating(values: Sequence[Value]) -> list[int]:
    return [i for i, v in enumerate(values) if v.dtype.kind == "f"]


def _zeros(value: Value) -> Value:
    from fusegrad.ir import ops
    return ops.broadcast_to(ops.const(0.0, value.dtype), value.shape)
