"""Function transforms, JAX's: `grad`, `value_and_grad`, `vjp`, `jvp`, `hessian`.

Inside a function that `compile_grad` traces, a transform traces its function on
the graph being built and emits the derivative there, with the VJP rules of the
primitives (`ir.vjp.backward_values`). The derivative is ordinary IR of the outer
graph, so compile_grad's own differentiation goes through it: a gradient penalty
``loss + lam * (fg.grad(f)(x) ** 2).sum()`` gets its exact second derivatives,
fused with the rest.

Each differentiated argument enters the transform through an alias node (a
same-shape reshape, folded away by the optimiser), so the transform differentiates
only the uses inside its function: in ``fg.grad(lambda z: (z * x).sum())(x)`` the
closed-over ``x`` is a constant of the inner derivative, as in JAX.

Forward mode (`jvp`) is the transpose of reverse mode, exact and with no new rules:
``vjp_fn(u) = J^T u`` is linear in ``u``, so ``J t = d/du <J^T u, t>``, a second
reverse pass over the first one's nodes (at u = 0; the result does not depend on u).

Outside a trace (on NumPy arrays, nested lists, eager tensors, or pytrees of them) a
transform traces itself into a graph of its own, compiles it like compile_grad does
(fused, cached per signature) and returns NumPy arrays.
"""
from __future__ import annotations

import numbers
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir import primitives as P
from fusegrad.ir.builder import current_builder, current_source, source_line
from fusegrad.ir.errors import DTypeError, ShapeError, TraceError, UnsupportedError, located
from fusegrad.ir.graph import Value
from fusegrad.ir.vjp import backward_values
from fusegrad.runtime import compile_graph
from fusegrad.tracer import pytree
from fusegrad.tracer.captures import capture
from fusegrad.tracer.dispatch import Tracing
from fusegrad.tracer.source import user_line
from fusegrad.tracer.state import TensorState

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "hessian"]

# A Hessian is one reverse pass per element of the gradient, unrolled into the graph
# (compiling 64 of them for a small network takes about 30 s); above this many a
# Hessian-vector product (one forward-over-reverse pass) is the right tool.
HESSIAN_MAX_ELEMENTS = 128


# ---------------------------------------------------------------- public transforms

def value_and_grad(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """``fun``'s value and its gradient with respect to the arguments `argnums`
    (an int: one gradient; a tuple: a tuple of them), as `jax.value_and_grad`:
    ``value, g = fg.value_and_grad(f)(x)``; with ``has_aux=True``, `fun` returns
    ``(value, aux)`` and the call ``((value, aux), g)``."""
    def value_and_grad_fn(*args, **kwargs):
        if not _tracing(args, kwargs):
            return _eagerly(value_and_grad_fn, _arrays(args, argnums), kwargs, _cache, fun)
        return _value_and_grad(fun, argnums, has_aux, args, kwargs)
    _cache: dict = {}
    return _named(value_and_grad_fn, "value_and_grad", fun)


def grad(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """The gradient of the scalar function `fun`, as `jax.grad`: ``fg.grad(f)(x)``;
    with ``has_aux=True`` the call returns ``(g, aux)``."""
    inner = value_and_grad(fun, argnums, has_aux)

    def grad_fn(*args, **kwargs):
        if not _tracing(args, kwargs):
            return _eagerly(grad_fn, _arrays(args, argnums), kwargs, _cache, fun)
        result, g = inner(*args, **kwargs)
        return (g, result[1]) if has_aux else g
    _cache: dict = {}
    return _named(grad_fn, "grad", fun)


def vjp(fun: Callable, *primals, has_aux: bool = False):
    """``out, vjp_fn = fg.vjp(f, *primals)``: `vjp_fn(ct)` is the vector-Jacobian
    product, a tuple with one cotangent per primal, as `jax.vjp` (with ``has_aux=True``
    the call returns ``(out, vjp_fn, aux)``)."""
    if not _tracing(primals, {}):
        return _eager_vjp(fun, _arrays(primals), has_aux)
    return _vjp(fun, primals, has_aux)


def jvp(fun: Callable, primals: Sequence, tangents: Sequence, has_aux: bool = False):
    """``out, tangent_out = fg.jvp(f, primals, tangents)``: `f` at the primals and its
    Jacobian times the tangents (forward mode), as `jax.jvp` (with ``has_aux=True``
    the call returns ``(out, tangent_out, aux)``). Computed as the transpose of a
    vector-Jacobian product: exact, and itself differentiable."""
    primals, tangents = _pair(primals, tangents)
    if not _tracing((primals, tangents), {}):
        primals, tangents = _arrays(primals), _arrays(tangents)
        return _eagerly(lambda p, t: jvp(fun, p, t, has_aux=has_aux), (primals, tangents), {},
                        _cache_of(fun, ("jvp", has_aux)), fun)
    return _jvp(fun, primals, tangents, has_aux)


def hessian(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """The Hessian of the scalar function `fun` with respect to the array arguments
    `argnums`, as `jax.hessian`: for an int, an array of shape ``x.shape + x.shape``;
    for a tuple, ``H[i][j]`` of shape ``x_i.shape + x_j.shape``; with ``has_aux=True``,
    ``(H, aux)``. One reverse pass per gradient element is traced (at most
    HESSIAN_MAX_ELEMENTS); for large arguments use a Hessian-vector product,
    ``fg.jvp(fg.grad(f), (x,), (v,))[1]``."""
    def hessian_fn(*args, **kwargs):
        if not _tracing(args, kwargs):
            return _eagerly(hessian_fn, _arrays(args, argnums), kwargs, _cache, fun)
        return _hessian(fun, argnums, has_aux, args, kwargs)
    _cache: dict = {}
    return _named(hessian_fn, "hessian", fun)


# ---------------------------------------------------------------- on the trace

def _value_and_grad(fun, argnums, has_aux, args, kwargs):
    single, nums = _argnums(argnums, len(args), "value_and_grad")
    args = list(args)
    specs, wrt = {}, []
    for i in nums:
        args[i], specs[i], aliases = _aliased(args[i], f"argument {i}", "differentiate")
        wrt.extend(aliases)
    start = len(current_builder().nodes)
    result = fun(*args, **kwargs)
    out, aux = _split_aux(result, has_aux, fun)
    target = _scalar_output(out, fun)
    with source_line(current_source() or user_line()):
        seed = ops.const(1.0, target.dtype)
        grads = iter(backward_values(current_builder().nodes[start:], wrt, target, seed))
    trees = tuple(tree_unflatten(specs[i], [_tensor(next(grads)) for _ in range(_count(specs[i]))])
                  for i in nums)
    g = trees[0] if single else trees
    return ((out, aux), g) if has_aux else (out, g)


def _vjp(fun, primals, has_aux):
    primals = list(primals)
    wrt, specs = [], []
    for i, p in enumerate(primals):
        primals[i], spec, aliases = _aliased(p, f"primal {i}", "differentiate")
        specs.append(spec)
        wrt.extend(aliases)
    builder = current_builder()
    start = len(builder.nodes)
    result = fun(*primals)
    out, aux = _split_aux(result, has_aux, fun)
    out_leaves, out_spec = tree_flatten(out)
    targets = [_traced_value(leaf, f"{_name(fun)}'s output", "differentiate") for leaf in out_leaves]
    nodes = tuple(builder.nodes[start:])

    def vjp_fn(cotangent):
        ct_leaves, ct_spec = tree_flatten(cotangent)
        if ct_spec != out_spec or len(ct_leaves) != len(targets):
            raise ShapeError(located("vjp_fn: the cotangent must have the structure of the "
                                     "function's output", user_line()))
        mark = len(builder.nodes)
        with source_line(current_source() or user_line()):
            seeds = [_cotangent(ct, t) for ct, t in zip(ct_leaves, targets)]
            if len(targets) == 1:
                target, seed = targets[0], seeds[0]
            else:
                # Several outputs: one reverse pass of <out, ct> (exact: its gradient
                # is J^T ct), rather than one pass per output.
                target = _inner(targets, seeds)
                seed = ops.const(1.0, target.dtype)
            grads = iter(backward_values(nodes + tuple(builder.nodes[mark:]), wrt, target, seed))
        return tuple(tree_unflatten(spec, [_tensor(next(grads)) for _ in range(_count(spec))])
                     for spec in specs)

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def _jvp(fun, primals, tangents, has_aux):
    result = _vjp(fun, primals, has_aux)
    out, vjp_fn = result[0], result[1]
    out_leaves, out_spec = tree_flatten(out)
    builder = current_builder()
    with source_line(current_source() or user_line()):
        # u: a fresh value per output leaf (zeros; the derivative is u's coefficient).
        us = [_zeros(leaf._mode.value) for leaf in out_leaves]
    start = len(builder.nodes)
    cts = vjp_fn(tree_unflatten(out_spec, [_tensor(u) for u in us]))
    ct_leaves = [leaf._mode.value for ct in cts for leaf in tree_flatten(ct)[0]]
    t_leaves = [t for tangent in tangents for t in tree_flatten(tangent)[0]]
    if len(t_leaves) != len(ct_leaves):
        raise ShapeError(located("jvp: the tangents must have the structure of the primals",
                                 user_line()))
    with source_line(current_source() or user_line()):
        tangent_values = [_cotangent(t, ct) for t, ct in zip(t_leaves, ct_leaves)]
        total = _inner(ct_leaves, tangent_values)
        seed = ops.const(1.0, total.dtype)
        tangent_out = backward_values(builder.nodes[start:], us, total, seed)
    tangent_out = tree_unflatten(out_spec, [_tensor(v) for v in tangent_out])
    return (out, tangent_out, result[2]) if has_aux else (out, tangent_out)


def _hessian(fun, argnums, has_aux, args, kwargs):
    single, nums = _argnums(argnums, len(args), "hessian")
    args = list(args)
    xs = []
    for i in nums:
        args[i], spec, aliases = _aliased(args[i], f"argument {i}", "differentiate")
        if spec is not None:
            raise UnsupportedError(located(
                f"hessian: argument {i} is a {type(args[i]).__name__}; hessian takes array "
                "arguments (pass the arrays of a pytree as separate arguments)", user_line()))
        xs.append(aliases[0])
    total = sum(int(np.prod(x.shape, dtype=np.int64)) for x in xs)
    if total > HESSIAN_MAX_ELEMENTS:
        raise UnsupportedError(located(
            f"hessian: the arguments have {total} elements, so the Hessian would trace {total} "
            f"reverse passes (at most {HESSIAN_MAX_ELEMENTS}); use a Hessian-vector product "
            "instead: fg.jvp(fg.grad(f), (x,), (v,))[1]", user_line()))
    builder = current_builder()
    start = len(builder.nodes)
    result = _value_and_grad(fun, tuple(nums), has_aux, args, kwargs)
    grads, aux = result[1], (result[0][1] if has_aux else None)
    grads = [g._mode.value for g in grads]
    nodes = tuple(builder.nodes[start:])
    with source_line(current_source() or user_line()):
        blocks = [_jacobian_blocks(nodes, g, xs) for g in grads]
    result = tuple(tuple(_tensor(block) for block in row) for row in blocks)
    h = result[0][0] if single else result
    return (h, aux) if has_aux else h


def _jacobian_blocks(nodes, g: Value, xs: list[Value]) -> list[Value]:
    """d g / d x for each x of `xs`, of shape ``g.shape + x.shape``: one reverse pass
    per element of g (seeded with a one-hot constant), giving a row of every block."""
    rows = [backward_values(nodes, xs, g, current_builder().capture(_onehot(g, k)))
            for k in range(int(np.prod(g.shape, dtype=np.int64)))]
    blocks = []
    for j, x in enumerate(xs):
        if rows:
            blocks.append(ops.reshape(ops.stack([row[j] for row in rows], 0), g.shape + x.shape))
        else:   # an empty gradient: an empty block
            blocks.append(ops.broadcast_to(ops.const(0.0, x.dtype), g.shape + x.shape))
    return blocks


def _onehot(like: Value, k: int) -> np.ndarray:
    seed = np.zeros(like.shape, like.dtype)
    seed.flat[k] = 1
    return seed


# ---------------------------------------------------------------- outside a trace

class _Compiled:
    """A transform traced into a graph of its own for one signature."""

    def __init__(self, executable, spec, slots, captured) -> None:
        self.executable = executable
        self.spec = spec
        self.slots = slots          # per result leaf: an output index, or (constant,)
        self.captured = captured


def _eagerly(call: Callable, args: tuple, kwargs: dict, cache: dict, fun: Callable | None = None):
    """`call(*args, **kwargs)` on arrays: traced once per signature into a graph whose
    outputs are the result's arrays, optimised, fused and compiled like compile_grad's;
    the result comes back with NumPy arrays at its array leaves."""
    leaves: list[np.ndarray] = []
    try:
        key = pytree.flatten((args, kwargs), leaves)
    except pytree.UnhashableConstant as error:
        raise pytree.ArgumentError(
            f"{_name(call)}: an argument holds a {type(error.args[0]).__name__}, which is neither "
            "an array nor hashable (a constant of the trace)") from None
    entry = cache.get(key)
    if entry is None or (entry.captured is not None and entry.captured.rebound()):
        entry = cache[key] = _compile_eagerly(call, args, kwargs, leaves, fun)
    outputs = entry.executable(leaves) if entry.executable is not None else []
    values = [outputs[slot] if isinstance(slot, int) else _fresh(slot[0]) for slot in entry.slots]
    return tree_unflatten(entry.spec, values)


def _fresh(constant: Any) -> Any:
    """A constant leaf of a result, an array copied so that no two calls share it."""
    return constant.copy() if isinstance(constant, np.ndarray) else constant


def _arrays(args: tuple, argnums=None) -> tuple:
    """`args` with each Python float at a differentiated position (all, for None) as a
    float64 0-d array: a differentiable scalar rather than a constant of the trace, so a
    Newton iteration on a scalar does not compile once per value. Other floats stay
    constants (weakly typed: they keep a float32 computation float32)."""
    if argnums is None:
        positions = range(len(args))
    else:
        nums = (argnums,) if isinstance(argnums, numbers.Integral) else tuple(argnums)
        positions = {int(i) % len(args) for i in nums if -len(args) <= i < len(args)}
    return tuple(np.asarray(a, np.float64) if isinstance(a, float) and i in positions else a
                 for i, a in enumerate(args))


def _compile_eagerly(call, args, kwargs, leaves, fun) -> _Compiled:
    inputs = tuple(Value(a.shape, a.dtype, name=f"x{i}") for i, a in enumerate(leaves))
    captured = capture(fun) if fun is not None else None
    with Tracing() as builder:
        tensors = iter([TensorState._traced(v) for v in inputs])
        traced_args, traced_kwargs = pytree.substitute((args, kwargs), lambda _: next(tensors))
        result = call(*traced_args, **traced_kwargs)
    result_leaves, spec = tree_flatten(result)
    outputs, slots = [], []
    for leaf in result_leaves:
        if isinstance(leaf, TensorState) and leaf._mode.traced:
            slots.append(len(outputs))
            outputs.append(leaf._mode.value)
        else:
            slots.append((leaf,))
    executable = None
    if outputs:
        graph = ir.optimize(builder.finish(inputs, tuple(outputs)))
        executable = compile_graph(graph, device="cpu", fuse=True)
    return _Compiled(executable, spec, slots, captured)


# Eager jvp and vjp take the function at each call (no transformed function to hold a
# cache), so their compiled graphs are cached per function, weakly.
_CACHES: "weakref.WeakKeyDictionary[Callable, dict]" = weakref.WeakKeyDictionary()


def _cache_of(fun: Callable, kind: tuple) -> dict:
    try:
        caches = _CACHES.setdefault(fun, {})
    except TypeError:       # not weakly referenceable: no cache across calls
        return {}
    return caches.setdefault(kind, {})


def _eager_vjp(fun, primals, has_aux):
    """`vjp` on arrays: the output (and aux) now, `vjp_fn` compiled on its first call."""
    forward = _eagerly(lambda *p: _vjp(fun, p, has_aux)[::2] if has_aux else
                       _vjp(fun, p, False)[0], primals, {}, _cache_of(fun, ("vjp", has_aux)), fun)
    out, aux = forward if has_aux else (forward, None)
    cache = _cache_of(fun, ("vjp_fn", has_aux))

    def vjp_fn(cotangent):
        def pullback(p, ct):
            return _vjp(fun, p, has_aux)[1](ct)
        return _eagerly(pullback, (tuple(primals), cotangent), {}, cache, fun)

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


# ---------------------------------------------------------------- trees of tensors
# A result or an argument of a transform: nested lists, tuples, NamedTuples and dicts
# whose leaves are tensors (or arrays, numbers, None). A leaf's spec is None.

def tree_flatten(tree: Any) -> tuple[list, Any]:
    leaves: list = []
    return leaves, _walk(tree, leaves)


def _walk(tree: Any, leaves: list):
    if pytree._is_sequence(tree) and not pytree._is_array_literal(tree):
        return ("seq", type(tree), tuple(_walk(item, leaves) for item in tree))
    if isinstance(tree, dict):
        return ("map", type(tree), tuple(tree), tuple(_walk(v, leaves) for v in tree.values()))
    leaves.append(tree)
    return None


def tree_unflatten(spec, leaves: list) -> Any:
    return _build(spec, iter(leaves))


def _build(spec, leaves):
    if spec is None:
        return next(leaves)
    if spec[0] == "seq":
        return pytree._rebuild(spec[1], [_build(s, leaves) for s in spec[2]])
    return pytree._rebuild_mapping(spec[1], spec[2], [_build(s, leaves) for s in spec[3]])


def _count(spec) -> int:
    if spec is None:
        return 1
    children = spec[2] if spec[0] == "seq" else spec[3]
    return sum(_count(s) for s in children)


# ---------------------------------------------------------------- helpers

def _tracing(args: tuple, kwargs: dict) -> bool:
    """Whether the transform runs on the graph being traced: some argument is a traced
    tensor, or a trace is being built (its function may close over traced tensors)."""
    try:
        current_builder()
        return True
    except RuntimeError:
        pass
    leaves, _ = tree_flatten((args, kwargs))
    return any(isinstance(leaf, TensorState) and leaf._mode.traced for leaf in leaves)


def _named(function: Callable, transform: str, fun: Callable) -> Callable:
    function.__name__ = f"{transform}({_name(fun)})"
    function.__qualname__ = function.__name__
    function.__doc__ = getattr(fun, "__doc__", None)
    function.__wrapped__ = fun
    return function


def _name(fun: Any) -> str:
    return getattr(fun, "__name__", None) or type(fun).__name__


def _argnums(argnums, count: int, transform: str) -> tuple[bool, tuple[int, ...]]:
    single = isinstance(argnums, numbers.Integral)
    nums = (argnums,) if single else tuple(argnums)
    if not nums or any(not isinstance(i, numbers.Integral) for i in nums):
        raise TypeError(f"{transform}: argnums must be an int or a non-empty tuple of ints, "
                        f"got {argnums!r}")
    resolved = []
    for i in nums:
        if not -count <= i < count:
            raise pytree.ArgumentError(located(
                f"{transform}: argnums={argnums!r} is out of range for a call with {count} "
                f"positional argument{'s' if count != 1 else ''}", user_line()))
        resolved.append(int(i) % count)
    return single, tuple(resolved)


def _operand(leaf: Any, label: str, what: str) -> Value:
    """A tree leaf as a value of the graph being traced: traced tensors as they are,
    arrays (and eager tensors, and Python floats) as constants of the trace."""
    if isinstance(leaf, TensorState):
        if leaf._mode.traced:
            return leaf._mode.value
        leaf = leaf.detach().numpy()
    if isinstance(leaf, (bool, np.bool_)) or leaf is None:
        raise TraceError(located(f"cannot {what} with respect to {label}, a "
                                 f"{type(leaf).__name__}: it must be a floating-point array",
                                 user_line()))
    if isinstance(leaf, numbers.Number):
        return ops.const(leaf, np.float64 if isinstance(leaf, numbers.Real) and
                         not isinstance(leaf, numbers.Integral) else np.asarray(leaf).dtype)
    if isinstance(leaf, (np.ndarray, list, tuple)):
        return current_builder().capture(pytree.checked_array(np.asarray(leaf)))
    raise TraceError(located(f"cannot {what} with respect to {label}, a {type(leaf).__name__}: "
                             "it must be a floating-point array", user_line()))


def _aliased(arg: Any, label: str, what: str):
    """`arg` (a tensor or a tree of them) with each leaf replaced by a fresh alias of
    it: the values a transform differentiates with respect to."""
    leaves, spec = tree_flatten(arg)
    aliases = []
    for k, leaf in enumerate(leaves):
        where = label if spec is None else f"{label} (leaf {k})"
        value = _operand(leaf, where, what)
        if value.dtype.kind != "f":
            raise DTypeError(located(f"cannot {what} with respect to {where}, an array of "
                                     f"{value.dtype}: only floating-point arrays have gradients",
                                     user_line()))
        with source_line(current_source() or user_line()):
            aliases.append(P.reshape.bind(value, shape=value.shape))  # folded by the optimiser
    return tree_unflatten(spec, [_tensor(a) for a in aliases]), spec, aliases


def _split_aux(result: Any, has_aux: bool, fun) -> tuple[Any, Any]:
    if not has_aux:
        return result, None
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        got = (f"a {type(result).__name__} of length {len(result)}"
               if isinstance(result, (tuple, list)) else f"a {type(result).__name__}")
        raise TraceError(located(f"{_name(fun)} must return a pair (output, aux) when "
                                 f"has_aux=True, got {got}", user_line()))
    return result[0], result[1]


def _traced_value(out: Any, label: str, what: str) -> Value:
    if isinstance(out, TensorState) and out._mode.traced:
        return out._mode.value
    raise TraceError(located(f"cannot {what} {label}: it is a {type(out).__name__}, not an "
                             f"array computed from the function's arguments", user_line()))


def _scalar_output(out: Any, fun) -> Value:
    value = _traced_value(out, f"{_name(fun)}'s output", "differentiate")
    if value.shape != ():
        raise ShapeError(located(f"grad of {_name(fun)}: the function must return a scalar "
                                 f"(0-d) value, got shape {value.shape}; reduce it first (e.g. "
                                 f".sum()), or use fg.vjp for a non-scalar output", user_line()))
    if value.dtype.kind != "f":
        raise DTypeError(located(f"grad of {_name(fun)}: the function must return a "
                                 f"floating-point value, got {value.dtype}", user_line()))
    return value


def _cotangent(ct: Any, like: Value) -> Value:
    """A cotangent (or tangent) given for `like`: its shape, cast to its dtype."""
    value = _operand(ct, "a cotangent", "take a product")
    if value.shape != like.shape:
        if value.shape == ():
            value = ops.broadcast_to(value, like.shape)
        else:
            raise ShapeError(located(f"a cotangent or tangent of shape {value.shape} was given "
                                     f"for a value of shape {like.shape}", user_line()))
    return ops.cast(value, like.dtype)


def _inner(xs: Sequence[Value], ys: Sequence[Value]) -> Value:
    """sum_k <xs[k], ys[k]>, a scalar."""
    total = None
    for x, y in zip(xs, ys):
        term = ops.reduce_sum(ops.mul(x, y))
        total = term if total is None else ops.add(total, term)
    return total


def _zeros(like: Value) -> Value:
    return ops.broadcast_to(ops.const(0.0, like.dtype), like.shape)


def _tensor(value: Value):
    return TensorState._traced(value)


def _pair(primals, tangents) -> tuple[tuple, tuple]:
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples (or lists), as in jax.jvp: "
                        "fg.jvp(f, (x,), (t,))")
    if len(primals) != len(tangents):
        raise TypeError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    return tuple(primals), tuple(tangents)
