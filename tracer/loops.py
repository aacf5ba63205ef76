"""`fg.scan` and `fg.fori_loop`: loops that trace their body once (JAX's signatures).

Inside `compile_grad` the body is traced once, on abstract per-step values, into a
graph of its own; one `scan` node runs it (see `ir.loops`), and its derivative is
another scan, so a 1,000-step loop traces, differentiates and compiles in the time
of one step. Values the body reads from outside (weights, closed-over arrays) are
operands of the node, and get gradients like any other.

Outside a trace the loop runs in Python, step by step: on NumPy arrays the results
are NumPy arrays; on eager tensors each step is recorded as usual (an unrolled
recording), so ``backward()`` works through it.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Iterator

import numpy as np

from fusegrad.ir import ops
from fusegrad.ir.builder import Builder, building, current_builder, source_line
from fusegrad.ir.errors import DTypeError, ShapeError, TraceError, located
from fusegrad.ir.graph import Graph, Value, live_nodes
from fusegrad.ir.loops import Body
from fusegrad.ir.passes import optimize
from fusegrad.tracer import pytree
from fusegrad.tracer.source import function_location, user_line
from fusegrad.tracer.state import TensorState

LEAF, SEQUENCE, MAPPING = "leaf", "sequence", "mapping"


def scan(f: Callable, init: Any, xs: Any = None, length: int | None = None,
         reverse: bool = False, unroll: int = 1):
    """JAX's ``lax.scan``: ``f(carry, x) -> (carry, y)`` over the leading axis of `xs`;
    returns ``(final carry, ys stacked on a new leading axis)``.

    `init`, `xs` and what `f` returns may be arrays or nested lists, tuples and dicts
    of arrays; the carry must keep its structure, shapes and dtypes from step to
    step. ``xs=None`` with ``length=n`` runs n steps with x None. ``reverse=True``
    runs from the last element to the first (ys keep their positions). `unroll`
    is accepted for JAX's signature; it is a speed hint, and does not change results.

    Inside `compile_grad` the body is traced once and compiled once; its gradient is
    a scan too. Outside, the loop runs step by step in Python: NumPy arrays in give
    NumPy arrays out, and eager tensors that require grad record every step (the
    unrolled recording) for ``backward()``.
    """
    where = user_line()
    init_leaves: list = []
    init_def = _flatten(init, init_leaves, "init", where)
    xs_leaves: list = []
    xs_def = _flatten(xs, xs_leaves, "xs", where)
    length = _length(xs_leaves, length, where)
    if _tracing():
        return _scan_traced(f, init_def, init_leaves, xs_def, xs_leaves, length, bool(reverse),
                            where)
    return _scan_eager(f, init, init_leaves, xs_def, xs_leaves, length, bool(reverse), where)


def fori_loop(lower: int, upper: int, body_fun: Callable, init_val: Any):
    """JAX's ``lax.fori_loop``: ``val = body_fun(i, val)`` for i in ``range(lower, upper)``.

    The bounds must be Python ints: the loop is a scan over the index (traced once,
    with i a 0-d int64 tensor), differentiable in reverse mode. Traced bounds would
    make the trip count data-dependent, which reverse mode cannot differentiate (JAX
    refuses it too). Outside `compile_grad` it is a Python loop, i a Python int."""
    for name, bound in (("lower", lower), ("upper", upper)):
        if not isinstance(bound, numbers.Integral) or isinstance(bound, bool):
            raise TraceError(located(
                f"fori_loop: {name}={_describe(bound)}: the bounds must be Python ints (a "
                f"loop whose trip count depends on traced values cannot be differentiated "
                f"in reverse mode); write int(...) of a known number, or use fg.scan",
                user_line()))
    if not _tracing():
        value = init_val
        for i in range(int(lower), int(upper)):
            value = body_fun(i, value)
        return value
    index = np.arange(int(lower), max(int(lower), int(upper)), dtype=np.int64)
    final, _ = scan(lambda value, i: (body_fun(i, value), None), init_val, index)
    return final


# ---------------------------------------------------------------- pytrees of tensors

def _flatten(tree: Any, leaves: list, what: str, where: str | None) -> Any:
    """The structure of `tree` (a tree definition); its array leaves go to `leaves`.
    Lists and tuples are always containers here (as in JAX); None has no leaves."""
    if isinstance(tree, (TensorState, np.ndarray, numbers.Number, np.generic)):
        leaves.append(tree)
        return LEAF
    if tree is None:
        return None
    if pytree._is_sequence(tree):
        return (SEQUENCE, type(tree), tuple(_flatten(item, leaves, what, where) for item in tree))
    if isinstance(tree, dict):
        keys = _sorted_keys(tree)
        return (MAPPING, type(tree), keys,
                tuple(_flatten(tree[k], leaves, what, where) for k in keys))
    raise TraceError(located(
        f"scan: {what} holds a {type(tree).__name__}: it takes arrays and nested lists, "
        f"tuples and dicts of them", where))


def _sorted_keys(tree: dict) -> tuple:
    try:
        return tuple(sorted(tree))
    except TypeError:   # keys of mixed types: their own order
        return tuple(tree)


def _unflatten(definition: Any, leaves: Iterator) -> Any:
    if definition is LEAF:
        return next(leaves)
    if definition is None:
        return None
    tag, kind = definition[0], definition[1]
    if tag == SEQUENCE:
        return pytree._rebuild(kind, [_unflatten(d, leaves) for d in definition[2]])
    return pytree._rebuild_mapping(kind, definition[2],
                                   [_unflatten(d, leaves) for d in definition[3]])


def _paths(definition: Any, path: str = "") -> list[str]:
    """Per leaf, where it sits: "", "[0]", "['h']"."""
    if definition is LEAF:
        return [path]
    if definition is None:
        return []
    if definition[0] == SEQUENCE:
        return [p for i, d in enumerate(definition[2]) for p in _paths(d, f"{path}[{i}]")]
    return [p for k, d in zip(definition[2], definition[3]) for p in _paths(d, f"{path}[{k!r}]")]


# ---------------------------------------------------------------- traced

def _tracing() -> bool:
    try:
        current_builder()
    except RuntimeError:
        return False
    return True


def _scan_traced(f, init_def, init_leaves, xs_def, xs_leaves, length, reverse, where):
    outer = current_builder()
    xs_values = [_outer_value(leaf, outer) for leaf in xs_leaves]
    # Python numbers in the carry are weakly typed, as in JAX: they take the dtype the
    # body gives them (0.0 accumulating float32 losses is a float32 carry).
    weak = [isinstance(leaf, numbers.Number) and not isinstance(leaf, np.generic)
            for leaf in init_leaves]
    # A weak float starts as float32, the weakest floating dtype (fusegrad's default).
    types = [((), np.dtype(np.float32)) if w and isinstance(leaf, float)
             else _leaf_type(leaf) for leaf, w in zip(init_leaves, weak)]
    body, free, ys_def = _trace_body(f, init_def, types, xs_def, xs_values, where)
    if body.outputs[:len(types)] and any(weak):
        retyped = [(t[0], v.dtype) if w and v.dtype.kind == "f" == np.dtype(t[1]).kind else t
                   for t, w, v in zip(types, weak, body.outputs)]
        if retyped != types:
            types = retyped
            body, free, ys_def = _trace_body(f, init_def, types, xs_def, xs_values, where)
    _check_carry(body, init_def, types, f, where)
    with source_line(where):
        init_values = [ops.const(leaf, dtype) if w else _outer_value(leaf, outer)
                       for leaf, w, (_, dtype) in zip(init_leaves, weak, types)]
        outputs = ops.scan(Body(body), free, init_values, xs_values, length=length,
                           reverse=reverse)
    tensors = iter([TensorState._traced(v) for v in outputs])
    carry = _unflatten(init_def, tensors)
    return carry, _unflatten(ys_def, tensors)


def _outer_value(leaf: Any, builder: Builder) -> Value:
    if isinstance(leaf, TensorState):
        if leaf._mode.traced:
            return leaf._mode.value
        return builder.capture(leaf.detach().numpy())
    return builder.capture(pytree.checked_array(np.asarray(leaf)))


def _leaf_type(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(leaf, TensorState):
        if leaf._mode.traced:
            return leaf._mode.value.shape, leaf._mode.value.dtype
        leaf = leaf.detach().numpy()
    return np.shape(leaf), pytree.checked_array(np.asarray(leaf)).dtype


def _trace_body(f, init_def, types, xs_def, xs_values, where) -> tuple[Graph, list, Any]:
    """The body traced once on abstract values: its graph (inputs: the outside values
    it reads, the carry, the x slice), those outside values, and the ys' structure."""
    carry_in = [Value(shape, dtype) for shape, dtype in types]
    x_in = [Value(x.shape[1:], x.dtype) for x in xs_values]
    builder = Builder()
    with building(builder):
        carry = _unflatten(init_def, iter([TensorState._traced(v) for v in carry_in]))
        x = _unflatten(xs_def, iter([TensorState._traced(v) for v in x_in]))
        result = f(carry, x)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TraceError(located(
                f"scan: the body {function_location(f)} must return a pair (carry, y), got "
                f"{_describe(result)}", where))
        carry_leaves: list = []
        carry_def = _flatten(result[0], carry_leaves, "the body's carry", where)
        if carry_def != init_def:
            raise TraceError(located(
                f"scan: the body {function_location(f)} returns a carry of another structure than "
                f"init: {_structure(carry_def)} for {_structure(init_def)}", where))
        ys_leaves: list = []
        ys_def = _flatten(result[1], ys_leaves, "the body's y", where)
        outputs = [_body_value(leaf, builder) for leaf in carry_leaves + ys_leaves]
    free = _free_values(builder, carry_in + x_in, outputs)
    graph = builder.finish(tuple(free + carry_in + x_in), tuple(outputs))
    return optimize(graph), free, ys_def


def _body_value(leaf: Any, builder: Builder) -> Value:
    if isinstance(leaf, TensorState) and leaf._mode.traced:
        return leaf._mode.value
    return _outer_value(leaf, builder)   # a constant of the body


def _free_values(builder: Builder, inputs: list[Value], outputs: list[Value]) -> list[Value]:
    """Values the body reads but does not define: the enclosing trace's (weights the
    body closes over). They become operands of the scan node."""
    nodes = live_nodes(builder.nodes, outputs)
    defined = set(inputs) | {v for v, _ in builder.constants.values()}
    defined.update(v for node in nodes for v in node.outputs)
    free: dict[Value, None] = {}
    for value in [v for node in nodes for v in node.inputs] + outputs:
        if value not in defined:
            free[value] = None
    return list(free)


def _check_carry(body: Graph, init_def, types, f, where) -> None:
    for path, (shape, dtype), out in zip(_paths(init_def, "carry"), types, body.outputs):
        if out.shape != tuple(shape) or out.dtype != dtype:
            error = ShapeError if out.shape != tuple(shape) else DTypeError
            expected = Value(shape, dtype).type_str
            raise error(located(
                f"scan: the body {function_location(f)} returns {path} as {out.type_str}, but it "
                f"enters as {expected}: the carry must keep its shape and dtype from step "
                f"to step (cast or reshape it in the body, or start from an init of the "
                f"type the body returns)", where))


# ---------------------------------------------------------------- eager

def _scan_eager(f, init, init_leaves, xs_def, xs_leaves, length, reverse, where):
    """The loop in Python. On NumPy arrays the results are NumPy arrays; on tensors
    the steps are recorded for backward() as any eager ops are."""
    carry, ys = init, []
    for step in range(length):
        t = length - 1 - step if reverse else step
        x = _unflatten(xs_def, iter([leaf[t] for leaf in xs_leaves]))
        result = f(carry, x)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TraceError(located(
                f"scan: the body {function_location(f)} must return a pair (carry, y), got "
                f"{_describe(result)}", where))
        carry, y = result
        ys.append(y)
    if reverse:
        ys.reverse()
    plain = not any(isinstance(leaf, TensorState) for leaf in init_leaves + xs_leaves)
    stacked = _stack_ys(ys, f, init, xs_def, xs_leaves, where)
    if plain:
        carry, stacked = _as_numpy(carry), _as_numpy(stacked)
    return carry, stacked


def _stack_ys(ys: list, f, init, xs_def, xs_leaves, where):
    from fusegrad.tracer.functions import stack
    if not ys:   # no step ran: the ys' types come from tracing the body once
        return _empty_ys(f, init, xs_def, xs_leaves, where)
    columns: list[list] = []
    ys_def = None
    for y in ys:
        leaves: list = []
        ys_def = _flatten(y, leaves, "the body's y", where)
        columns = columns or [[] for _ in leaves]
        for column, leaf in zip(columns, leaves):
            column.append(leaf)
    stacked = [stack(c) if any(isinstance(v, TensorState) for v in c) else np.stack(c)
               for c in columns]
    return _unflatten(ys_def, iter(stacked))


def _empty_ys(f, init, xs_def, xs_leaves, where):
    init_leaves: list = []
    init_def = _flatten(init, init_leaves, "init", where)
    types = [_leaf_type(leaf) for leaf in init_leaves]
    with building(Builder()) as builder:
        xs_values = [_outer_value(leaf, builder) for leaf in xs_leaves]
        body, _, ys_def = _trace_body(f, init_def, types, xs_def, xs_values, where)
    ys = [np.zeros((0,) + v.shape, v.dtype) for v in body.outputs[len(types):]]
    return _unflatten(ys_def, iter(ys))


def _as_numpy(tree: Any) -> Any:
    leaves: list = []
    definition = _flatten(tree, leaves, "result", None)
    arrays = [leaf.detach().numpy() if isinstance(leaf, TensorState) else np.asarray(leaf)
              for leaf in leaves]
    return _unflatten(definition, iter(arrays))


# ---------------------------------------------------------------- messages

def _length(xs_leaves: list, length: int | None, where: str | None) -> int:
    sizes = []
    for leaf in xs_leaves:
        shape = tuple(leaf.shape) if isinstance(leaf, (TensorState, np.ndarray)) else ()
        if not shape:
            raise ShapeError(located(
                "scan: every xs array needs a leading axis to scan over, got a 0-d value",
                where))
        sizes.append(shape[0])
    if length is not None:
        if not isinstance(length, numbers.Integral) or length < 0:
            raise TraceError(located(
                f"scan: length must be a non-negative Python int, got {_describe(length)}",
                where))
        sizes.append(int(length))
    if not sizes:
        raise TraceError(located(
            "scan: with xs=None, give the number of steps as length=", where))
    if len(set(sizes)) > 1:
        raise ShapeError(located(
            f"scan: the xs arrays (and length=) disagree on the number of steps: "
            f"{', '.join(map(str, sizes))}", where))
    return sizes[0]


def _describe(value: Any) -> str:
    if isinstance(value, TensorState):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return type(value).__name__


def _structure(definition: Any) -> str:
    if definition is LEAF:
        return "array"
    if definition is None:
        return "None"
    if definition[0] == SEQUENCE:
        inner = ", ".join(_structure(d) for d in definition[2])
        return f"{definition[1].__name__}({inner})"
    inner = ", ".join(f"{k!r}: {_structure(d)}" for k, d in zip(definition[2], definition[3]))
    return "{" + inner + "}"
