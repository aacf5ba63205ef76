"""ir/vjp.py: one table of ops drives the value and gradient checks.

Each case builds ``loss = reduce_sum(op(*inputs) * weights)`` (fixed random weights,
so every output element gets a different cotangent), differentiates it with
`vjp_graph`, runs the joint graph through the pipeline (verifying after each pass)
and evaluates it. The value is checked against NumPy, the gradients against HIPS
autograd and against central differences in float64; every case runs in float32
and float64.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import autograd
import autograd.extend
import autograd.numpy as anp
import numpy as np
import pytest

from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir.builder import current_builder
from fusegrad.ir.graph import Value
from fusegrad.ir.loops import Body

# autograd warns when a gradient is identically zero (x ** 0); that is the point there.
pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

# Inputs are drawn away from the kinks (0 for abs and relu) and from each other (ties
# of maximum and reduce_max have measure zero), so finite differences are meaningful.
REAL = "real"            # +-[0.2, 2]
POSITIVE = "positive"    # [0.5, 2]: log, sqrt, the base of pow
UNIT = "unit"            # +-[0.1, 0.9]: arcsin, arccos, tan (away from its poles)

TOLERANCES = {  # (rtol, atol) of the value and of the gradients
    F64: dict(value=(1e-12, 1e-12), grad=(1e-9, 1e-11), finite=(1e-5, 1e-6)),
    F32: dict(value=(2e-5, 2e-5), grad=(2e-4, 2e-5), finite=(2e-4, 2e-5)),
}


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[..., Value]      # with fusegrad.ir.ops
    reference: Callable[..., Any]    # with autograd.numpy: the value and gradient oracle
    shapes: tuple[tuple[int, ...], ...]
    domains: tuple[str, ...]

    def __str__(self) -> str:
        return self.name


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def unary(name, build, reference, domain=REAL, shapes=((3, 4), ())):
    return [Case(f"{name}[{shape_text(s)}]", build, reference, (s,), (domain,)) for s in shapes]


BROADCAST_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 4), (3, 1)), ((3, 4), ()),
                   ((), (3, 4)), ((3, 1), (4,))]


def binary(name, build, reference, domains=(REAL, REAL), pairs=BROADCAST_PAIRS):
    return [Case(f"{name}[{shape_text(a)},{shape_text(b)}]", build, reference, (a, b), domains)
            for a, b in pairs]


def layout(name, build, reference, shape):
    return Case(f"{name}[{shape_text(shape)}]", build, reference, (shape,), (REAL,))


def reductions(name, build, reference, axes_list):
    cases = []
    for shape, axes in axes_list:
        for keepdims in (False, True):
            cases.append(Case(
                f"{name}[{shape_text(shape)},axes={axes},keepdims={keepdims}]",
                lambda x, axes=axes, keepdims=keepdims: build(x, axes, keepdims=keepdims),
                lambda x, axes=axes, keepdims=keepdims: reference(x, axes, keepdims=keepdims),
                (shape,), (REAL,)))
    return cases


def other_float(dtype: np.dtype) -> np.dtype:
    return F32 if dtype == F64 else F64


# autograd's broadcast_to cannot add leading axes, and its where does not sum the
# cotangent back to a broadcast branch's shape; adding zeros broadcasts differentiably.
def reference_broadcast_to(x, shape):
    return x + np.zeros(shape)


def reference_where(condition, a, b):
    shape = np.broadcast_shapes(np.shape(condition), np.shape(a), np.shape(b))
    return anp.where(condition, reference_broadcast_to(a, shape), reference_broadcast_to(b, shape))


def reference_sigmoid(x):
    return 1 / (1 + anp.exp(-x))


def reference_logsumexp(x, axis, keepdims=False):
    shift = anp.max(x, axis=axis, keepdims=True)
    result = anp.log(anp.sum(anp.exp(x - shift), axis=axis, keepdims=True)) + shift
    if keepdims:
        return result
    return anp.reshape(result, np.sum(np.zeros(x.shape), axis=axis).shape)


def reference_softmax(x, axis):
    e = anp.exp(x - anp.max(x, axis=axis, keepdims=True))
    return e / anp.sum(e, axis=axis, keepdims=True)


def reference_cumprod(x, axis):
    """HIPS autograd has no VJP for cumprod; the products of the prefixes have one."""
    x = anp.moveaxis(x, axis, 0)
    return anp.moveaxis(anp.stack([anp.prod(x[:i + 1], axis=0) for i in range(x.shape[0])]),
                        0, axis)


def reference_norm(x, axis, keepdims=False):
    return anp.sqrt(anp.sum(x * x, axis=axis, keepdims=keepdims))


AXES_2D = [((3, 4), None), ((3, 4), 0), ((3, 4), 1), ((3, 4), (0, 1)), ((2, 3, 4), (0, 2))]

CASES = [
    *unary("neg", ops.neg, anp.negative),
    *unary("exp", ops.exp, anp.exp),
    *unary("log", ops.log, anp.log, POSITIVE),
    *unary("sin", ops.sin, anp.sin),
    *unary("cos", ops.cos, anp.cos),
    *unary("tanh", ops.tanh, anp.tanh),
    *unary("sqrt", ops.sqrt, anp.sqrt, POSITIVE),
    *unary("abs", ops.abs, anp.abs),
    *unary("sigmoid", ops.sigmoid, reference_sigmoid),
    *unary("relu", ops.relu, lambda x: anp.maximum(x, 0.0)),
    *[case for n in (2, 3, -1, 0) for case in unary(
        f"integer_pow{n}", lambda x, n=n: ops.integer_pow(x, n), lambda x, n=n: x ** n)],
    *unary("cast", lambda x: ops.cast(x, other_float(x.dtype)), lambda x: x * 1.0),
    *binary("add", ops.add, anp.add),
    *binary("sub", ops.sub, anp.subtract),
    *binary("mul", ops.mul, anp.multiply),
    *binary("div", ops.div, anp.true_divide),
    *binary("pow", ops.power, anp.power, (POSITIVE, REAL)),
    *binary("maximum", ops.maximum, anp.maximum),
    *binary("minimum", ops.minimum, anp.minimum),
    *binary("where_gt", lambda a, b: ops.where(ops.gt(a, b), a * b, ops.sin(b)),
            lambda a, b: reference_where(a > b, a * b, anp.sin(b))),
    # issue 11, item 4: a % b (d/db = -floor(a / b)); `//` and masks give no gradient,
    # but pass one through a select.
    *binary("remainder", ops.remainder, anp.mod),
    *binary("masks_floor_divide",
            lambda a, b: ops.where(ops.bitwise_xor(ops.bitwise_or(ops.lt(a, b), ops.invert(
                ops.gt(b, 0.5))), ops.bitwise_and(ops.gt(a, 0), ops.lt(b, 1))),
                a * ops.floor_divide(a, b), b),
            lambda a, b: reference_where(((a < b) | ~(b > 0.5)) ^ ((a > 0) & (b < 1)),
                                         a * anp.floor(a / b), b)),
    *binary("where_lt_number", lambda a, b: ops.where(ops.lt(a, 0.5), b, 0.0),
            lambda a, b: reference_where(a < 0.5, b, 0.0)),
    *[layout(f"broadcast_to{shape}", lambda x, shape=shape: ops.broadcast_to(x, shape),
             lambda x, shape=shape: reference_broadcast_to(x, shape), x_shape)
      for x_shape, shape in [((4,), (3, 4)), ((3, 1), (3, 4)), ((), (2, 3)), ((3, 1), (2, 3, 4))]],
    layout("reshape(12)", lambda x: ops.reshape(x, (12,)),
           lambda x: anp.reshape(x, (12,)), (3, 4)),
    layout("reshape(2,2,3)", lambda x: ops.reshape(x, (2, 2, 3)),
           lambda x: anp.reshape(x, (2, 2, 3)), (3, 4)),
    layout("reshape(3,4)", lambda x: ops.reshape(x, (3, 4)),
           lambda x: anp.reshape(x, (3, 4)), (12,)),
    layout("reshape(1,1)", lambda x: ops.reshape(x, (1, 1)), lambda x: anp.reshape(x, (1, 1)), ()),
    layout("transpose", ops.transpose, anp.transpose, (3, 4)),
    layout("getitem[1:3, ::-2]", lambda x: ops.getitem(x, (slice(1, 3), slice(None, None, -2))),
           lambda x: x[1:3, ::-2], (3, 4)),
    layout("getitem[None, ..., 2]", lambda x: ops.getitem(x, (None, Ellipsis, 2)),
           lambda x: x[None, ..., 2], (3, 4)),
    layout("scatter_slice", lambda x: ops.scatter_slice(x, (5, 4), ((1, 4, 1), (3, -1, -2))),
           lambda x: anp.concatenate([anp.zeros((1, 4)), anp.stack(
               [anp.stack([anp.zeros(3), x[:, 1], anp.zeros(3), x[:, 0]], axis=1)[i]
                for i in range(3)]), anp.zeros((1, 4))]), (3, 2)),
    layout("transpose(1,2,0)", lambda x: ops.transpose(x, (1, 2, 0)),
           lambda x: anp.transpose(x, (1, 2, 0)), (2, 3, 4)),
    layout("transpose(2,0,1)", lambda x: ops.transpose(x, (2, 0, 1)),
           lambda x: anp.transpose(x, (2, 0, 1)), (2, 3, 4)),
    *reductions("reduce_sum", ops.reduce_sum, anp.sum, AXES_2D),
    *reductions("reduce_max", ops.reduce_max, anp.max, AXES_2D),
    *reductions("reduce_min", ops.reduce_min, anp.min, AXES_2D),
    *reductions("mean", ops.mean, anp.mean,
                [((3, 4), None), ((3, 4), 1), ((2, 3, 4), (0, 2))]),
    *reductions("logsumexp", ops.logsumexp, reference_logsumexp,
                [((3, 4), None), ((3, 4), 1), ((3, 4), 0)]),
    layout("softmax(-1)", ops.softmax, lambda x: reference_softmax(x, -1), (3, 4)),
    layout("softmax(0)", lambda x: ops.softmax(x, 0), lambda x: reference_softmax(x, 0), (3, 4)),
    layout("softmax(1)", lambda x: ops.softmax(x, 1),
           lambda x: reference_softmax(x, 1), (2, 3, 4)),
    # more elementwise math (issue 11, item 6)
    *unary("log1p", ops.log1p, anp.log1p, POSITIVE),
    *unary("expm1", ops.expm1, anp.expm1),
    *unary("square", ops.square, anp.square),
    *unary("rsqrt", ops.rsqrt, lambda x: 1 / anp.sqrt(x), POSITIVE),
    *unary("tan", ops.tan, anp.tan, UNIT),
    *unary("arctan", ops.arctan, anp.arctan),
    *unary("sinh", ops.sinh, anp.sinh),
    *unary("cosh", ops.cosh, anp.cosh),
    *unary("arcsin", ops.arcsin, anp.arcsin, UNIT),
    *unary("arccos", ops.arccos, anp.arccos, UNIT),
    *unary("log2", ops.log2, anp.log2, POSITIVE),
    *unary("log10", ops.log10, anp.log10, POSITIVE),
    *unary("exp2", ops.exp2, anp.exp2),
    *unary("floor", ops.floor, anp.floor),
    *unary("ceil", ops.ceil, anp.ceil),
    *unary("round", ops.round, anp.round),
    *unary("softplus", ops.softplus, lambda x: anp.logaddexp(0.0, x)),
    *unary("clip", lambda x: ops.clip(x, -0.5, 0.8), lambda x: anp.clip(x, -0.5, 0.8)),
    *unary("clip_low", lambda x: ops.clip(x, 0.3), lambda x: anp.maximum(x, 0.3)),
    *binary("arctan2", ops.arctan2, anp.arctan2),
    *binary("hypot", ops.hypot, anp.hypot),
    *binary("matmul", ops.matmul, anp.matmul, pairs=[
        ((3, 4), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((4,), (4, 5)),
        # batched (issue 11, item 1): folded rows, broadcast batch dimensions, 1-d sides
        ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)),
        ((4,), (2, 4, 3)), ((2, 3, 4), (4,))]),
    # reductions and matrix helpers (issue 11, item 7)
    layout("cumsum(1)", lambda x: ops.cumsum(x, 1), lambda x: anp.cumsum(x, 1), (3, 4)),
    layout("cumsum(0)", lambda x: ops.cumsum(x, 0), lambda x: anp.cumsum(x, 0), (2, 3, 4)),
    layout("cumprod(1)", lambda x: ops.cumprod(x, 1), lambda x: reference_cumprod(x, 1), (3, 4)),
    layout("cumprod(0)", lambda x: ops.cumprod(x, 0), lambda x: reference_cumprod(x, 0), (5,)),
    *reductions("prod", ops.prod, anp.prod, [((3, 4), None), ((3, 4), 1), ((2, 3, 4), (0, 2))]),
    *reductions("vector_norm", lambda x, axes, keepdims: ops.vector_norm(x, 2, axes, keepdims),
                reference_norm,
                [((3, 4), None), ((3, 4), 0), ((2, 3, 4), (0, 2))]),
    layout("diag(matrix,1)", lambda x: ops.diag(x, 1), lambda x: anp.diag(x, 1), (4, 4)),
    layout("diag(vector,-1)", lambda x: ops.diag(x, -1), lambda x: anp.diag(x, -1), (3,)),
    layout("trace", ops.trace, anp.trace, (3, 4)),
    binary("outer", ops.outer, anp.outer, pairs=[((3,), (4,))])[0],
]


# ---------------------------------------------------------------- gathers (issue 11, item 2)
# Index arrays are constants of the graph, with repeats and negative indices; autograd's
# integer-array indexing transposes with np.add.at, and scatter_add is checked against a
# 0/1 matrix product.
ROWS, COLS = np.array([2, 0, 2, -1]), np.array([1, 1, -4, 3])
ALONG = np.array([[0, 0], [3, -1], [2, 1]])


def _constant(array: np.ndarray) -> Value:
    return current_builder().capture(array)


CASES += [
    layout("gather[rows, cols]", lambda x: ops.getitem(x, (_constant(ROWS), _constant(COLS))),
           lambda x: x[ROWS, COLS], (3, 4)),
    layout("gather[:, cols]", lambda x: ops.getitem(x, (slice(None), _constant(COLS))),
           lambda x: x[:, COLS], (3, 4)),
    layout("take_along_axis", lambda x: ops.take_along_axis(x, _constant(ALONG), 1),
           lambda x: x[np.arange(3)[:, None], ALONG], (3, 4)),
    layout("scatter_add", lambda x: ops.scatter_add(x, [_constant(ROWS)], (3, 2)),
           lambda x: anp.dot((ROWS % 3 == np.arange(3)[:, None]).astype(float), x), (4, 2)),
    # issue 11, item 3: x[[2, 0, 2]] = 2 * x[[0, 1, 1]]: row 2 keeps the last write
    layout("scatter", lambda x: ops.index_update(
               x, ops.mul(ops.getitem(x, (_constant(np.array([0, 1, 1])),)), 2.0),
               (_constant(np.array([2, 0, 2])),), "set"),
           lambda x: anp.stack([2 * x[1], x[1], 2 * x[1]]), (3, 4)),
    layout("iota", lambda x: x * ops.cast(ops.iota(x.shape), x.dtype),
           lambda x: x * np.arange(12.0).reshape(3, 4), (3, 4)),
]


# erf, gelu, log_softmax (issue 11, item 6, rest). autograd's erf needs SciPy: a
# hand-written one, math.erf per element with d/dx erf = 2/sqrt(pi) exp(-x^2).
@autograd.extend.primitive
def reference_erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


autograd.extend.defvjp(reference_erf,
                       lambda y, x: lambda g: g * 2 / math.sqrt(math.pi) * anp.exp(-x * x))


def reference_log_softmax(x, axis):
    shifted = x - anp.max(x, axis=axis, keepdims=True)
    return shifted - anp.log(anp.sum(anp.exp(shifted), axis=axis, keepdims=True))


CASES += [
    *unary("erf", ops.erf, reference_erf),
    *unary("erfc", ops.erfc, lambda x: 1 - reference_erf(x)),
    *unary("gelu", ops.gelu, lambda x: 0.5 * x * (1 + reference_erf(x / math.sqrt(2)))),
    *unary("gelu_tanh", lambda x: ops.gelu(x, "tanh"), lambda x: 0.5 * x * (1 + anp.tanh(
        math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    layout("log_softmax(1)", lambda x: ops.log_softmax(x, 1),
           lambda x: reference_log_softmax(x, 1), (3, 4)),
    layout("log_softmax(0)", lambda x: ops.log_softmax(x, 0),
           lambda x: reference_log_softmax(x, 0), (2, 3, 4)),
]


# ---------------------------------------------------------------- loops (issue 11, item 12)

def scan_build(reverse: bool) -> Callable[..., Value]:
    """ys + final carry of ``h = tanh(h * w + x_t); y_t = h * h`` from h = 0, w a
    const of the body: its cotangent is summed over the steps by the backward scan."""
    def build(xs, w):
        h_in, x_in, w_in = (Value(w.shape, xs.dtype), Value(xs.shape[1:], xs.dtype),
                            Value(w.shape, w.dtype))
        with ir.building() as body:
            h = ops.tanh(ops.add(ops.mul(h_in, w_in), x_in))
            y = ops.mul(h, h)
        graph = body.finish((w_in, h_in, x_in), (h, y))
        zero = ops.broadcast_to(ops.const(0.0, xs.dtype), w.shape)
        final, ys, _ = ops.scan(Body(graph), [w], [zero], [xs], length=xs.shape[0],
                                reverse=reverse)
        return ops.add(ys, final)
    return build


def scan_reference(reverse: bool) -> Callable[..., Any]:
    def reference(xs, w):
        h, ys = anp.zeros(w.shape), []
        for t in (reversed(range(xs.shape[0])) if reverse else range(xs.shape[0])):
            h = anp.tanh(h * w + xs[t])
            ys.append(h * h)
        return anp.stack(ys[::-1] if reverse else ys) + h
    return reference


CASES += [
    Case("scan[4x3,3]", scan_build(False), scan_reference(False), ((4, 3), (3,)), (REAL, REAL)),
    Case("scan_reverse[4x3,3]", scan_build(True), scan_reference(True), ((4, 3), (3,)),
         (REAL, REAL)),
]


def draw(rng: np.random.Generator, shape, domain: str) -> np.ndarray:
    if domain == POSITIVE:
        return rng.uniform(0.5, 2.0, shape)
    if domain == UNIT:
        return rng.uniform(0.1, 0.9, shape) * rng.choice([-1.0, 1.0], shape)
    return rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def loss_graph(case: Case, dtype: np.dtype, rng: np.random.Generator):
    """The graph of ``reduce_sum(op(*inputs) * weights)``, and the weights."""
    inputs = tuple(Value(shape, dtype, name) for shape, name in zip(case.shapes, "abc"))
    with ir.building() as builder, ir.source_line(f"test_vjp.py:{case.name}"):
        out = case.build(*inputs)
        weights = rng.standard_normal(out.shape).astype(out.dtype)
        loss = ops.reduce_sum(out * builder.capture(weights))
    return builder.finish(inputs, (loss,)), weights


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_value_and_gradients(case, dtype, optimize_verified, central_differences):
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    args = [draw(rng, shape, domain).astype(dtype)
            for shape, domain in zip(case.shapes, case.domains)]
    graph, weights = loss_graph(case, dtype, rng)
    joint = ir.vjp_graph(graph, range(len(args)))
    optimized = optimize_verified(joint)

    value, *grads = ir.evaluate(optimized, args)
    unoptimized = ir.evaluate(joint, args)
    # Every rewrite of the optimizer is exact (ir/passes.py): bit for bit the same.
    for before, after in zip(unoptimized, [value, *grads]):
        np.testing.assert_array_equal(after, before)

    # The oracles work in float64 on exactly the inputs (and weights) the graph saw.
    args64 = [a.astype(F64) for a in args]
    weights64 = weights.astype(F64)

    def loss(*xs):
        return anp.sum(case.reference(*xs) * weights64)

    # A cast to float32 in a float64 case computes in float32 from there on.
    tol = TOLERANCES[F32 if F32 in (dtype, graph.outputs[0].dtype) else F64]
    assert value.shape == () and value.dtype == graph.outputs[0].dtype
    np.testing.assert_allclose(value, loss(*args64), *tol["value"], err_msg="value")
    for i, (grad, arg) in enumerate(zip(grads, args)):
        name = graph.inputs[i].name
        assert grad.shape == arg.shape and grad.dtype == arg.dtype, f"d/d{name}"
        np.testing.assert_allclose(grad, autograd.grad(loss, i)(*args64), *tol["grad"],
                                   err_msg=f"d/d{name} vs autograd")
        np.testing.assert_allclose(grad, central_differences(loss, args64, i), *tol["finite"],
                                   err_msg=f"d/d{name} vs central differences")


def test_table_covers_every_differentiable_primitive():
    """A primitive added to the registry gets a row here, or this fails."""
    covered = set()
    for case in CASES:
        inputs = tuple(Value(shape, F64) for shape in case.shapes)
        with ir.building() as builder:
            case.build(*inputs)
        covered.update(node.primitive.name for node in builder.nodes)
    # const, sign and the comparisons have no (nonzero) gradient; argmax/argmin are indices.
    not_differentiable = {"const", "sign", "le", "ge", "eq", "ne", "argmax", "argmin"}
    assert set(ir.REGISTRY) - not_differentiable <= covered


# ---------------------------------------------------------------- second derivatives

def second_derivative_graph(build, shapes, wrt, extend_graph, optimize_first: bool):
    """The joint graph of ``reduce_sum(d build / d inputs[wrt])`` with respect to all inputs."""
    inputs = tuple(Value(shape, F64, name) for shape, name in zip(shapes, "xyz"))
    with ir.building() as builder:
        out = ops.reduce_sum(build(*inputs))
    joint = ir.vjp_graph(builder.finish(inputs, (out,)), (wrt,))
    if optimize_first:
        joint = ir.optimize(joint)
    summed = extend_graph(joint, lambda value, grad: ops.reduce_sum(grad))
    return ir.vjp_graph(summed, range(len(inputs)))


@pytest.mark.parametrize("optimize_first", [False, True], ids=["raw", "optimized"])
def test_second_derivative_of_sin_times_square(optimize_first, extend_graph, optimize_verified):
    graph = second_derivative_graph(lambda x: ops.sin(x) * x ** 2, [(7,)], 0, extend_graph,
                                    optimize_first)
    x = np.linspace(-3, 3, 7)
    first_sum, second = ir.evaluate(optimize_verified(graph), [x])
    np.testing.assert_allclose(first_sum, np.sum(np.cos(x) * x ** 2 + 2 * x * np.sin(x)),
                               rtol=1e-12)
    np.testing.assert_allclose(second, (2 - x ** 2) * np.sin(x) + 4 * x * np.cos(x),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("optimize_first", [False, True], ids=["raw", "optimized"])
def test_second_derivative_of_tanh(optimize_first, extend_graph, optimize_verified):
    graph = second_derivative_graph(ops.tanh, [(5,)], 0, extend_graph, optimize_first)
    x = np.linspace(-2, 2, 5)
    _, second = ir.evaluate(optimize_verified(graph), [x])
    t = np.tanh(x)
    np.testing.assert_allclose(second, -2 * t * (1 - t ** 2), rtol=1e-12, atol=1e-15)


SECOND_ORDER_CASES = [  # name, build, reference, shapes, domains
    ("tanh(x@w)", lambda x, w: ops.tanh(ops.matmul(x, w)),
     lambda x, w: anp.tanh(anp.matmul(x, w)), [(3, 4), (4, 2)], (REAL, REAL)),
    ("sin(x@w)", lambda x, w: ops.sin(ops.matmul(x, w)),
     lambda x, w: anp.sin(anp.matmul(x, w)), [(4,), (4, 2)], (REAL, REAL)),
    ("logsumexp", lambda x, w: ops.logsumexp(x * w, 1),
     lambda x, w: reference_logsumexp(x * w, 1), [(3, 4), (4,)], (REAL, REAL)),
    ("softmax*x", lambda x, w: ops.softmax(x * w) * x,
     lambda x, w: reference_softmax(x * w, -1) * x, [(3, 4), (3, 1)], (REAL, REAL)),
    ("pow", ops.power, anp.power, [(3,), (3,)], (POSITIVE, REAL)),
    ("div", lambda x, w: ops.sqrt(x) / ops.sigmoid(w),
     lambda x, w: anp.sqrt(x) / reference_sigmoid(w),
     [(3, 4), ()], (POSITIVE, REAL)),
    ("mean*max", lambda x, w: ops.mean(x * w, 0) * ops.reduce_max(x, 0),
     lambda x, w: anp.mean(x * w, 0) * anp.max(x, 0), [(3, 4), (3, 1)], (REAL, REAL)),
]

# loops (issue 11, item 12): the derivative of the backward scan, itself a scan
SECOND_ORDER_CASES.append(("scan", scan_build(False), scan_reference(False), [(4, 3), (3,)],
                           (REAL, REAL)))


@pytest.mark.parametrize("wrt", [0, 1], ids=["d/dx", "d/dw"])
@pytest.mark.parametrize("optimize_first", [False, True], ids=["raw", "optimized"])
@pytest.mark.parametrize("name, build, reference, shapes, domains", SECOND_ORDER_CASES,
                         ids=[case[0] for case in SECOND_ORDER_CASES])
def test_second_derivative_against_autograd(name, build, reference, shapes, domains, wrt,
                                            optimize_first, extend_graph, optimize_verified):
    graph = second_derivative_graph(build, shapes, wrt, extend_graph, optimize_first)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    args = [draw(rng, shape, domain) for shape, domain in zip(shapes, domains)]
    _, *second = ir.evaluate(optimize_verified(graph), args)

    def summed_gradient(*xs):
        return anp.sum(autograd.grad(lambda *ys: anp.sum(reference(*ys)), wrt)(*xs))

    for i in range(len(args)):
        np.testing.assert_allclose(second[i], autograd.grad(summed_gradient, i)(*args),
                                   rtol=1e-10, atol=1e-12, err_msg=f"d/d input {i}")


# ---------------------------------------------------------------- bad input

def test_non_scalar_output_is_rejected():
    x = Value((3,), F32, "x")
    with ir.building() as builder:
        y = ops.exp(x)
    with pytest.raises(ir.ShapeError, match="must return a scalar.*f32\\[3\\]"):
        ir.vjp_graph(builder.finish((x,), (y,)), (0,))


def test_non_scalar_output_is_accepted_with_a_seed_input():
    x = Value((3,), F64, "x")
    with ir.building() as builder:
        y = ops.exp(x)
    joint = ir.vjp_graph(builder.finish((x,), (y,)), (0,), seed_input=True)
    assert [v.shape for v in joint.inputs] == [(3,), (3,)]
    x_value, seed = np.array([0.0, 1.0, 2.0]), np.array([1.0, -2.0, 0.5])
    value, grad = ir.evaluate(ir.optimize(joint), [x_value, seed])
    np.testing.assert_allclose(grad, seed * np.exp(x_value))


def test_integer_input_is_rejected():
    n = Value((3,), np.int32, "n")
    x = Value((3,), F32, "x")
    with ir.building() as builder:
        y = ops.reduce_sum(ops.cast(n, F32) * x)
    graph = builder.finish((n, x), (y,))
    with pytest.raises(ir.DTypeError, match="i32\\[3\\].*\\(n\\)"):
        ir.vjp_graph(graph, (0,))
    # With respect to the float input alone it is fine.
    n_value, x_value = np.arange(3, dtype=np.int32), np.ones(3, F32)
    _, grad = ir.evaluate(ir.vjp_graph(graph, (1,)), [n_value, x_value])
    np.testing.assert_array_equal(grad, [0, 1, 2])


def test_unused_input_gets_a_zero_gradient():
    x, y = Value((2, 3), F32, "x"), Value((4,), F32, "y")
    with ir.building() as builder:
        z = ops.reduce_sum(ops.exp(x))
    joint = ir.vjp_graph(builder.finish((x, y), (z,)), (0, 1))
    _, gx, gy = ir.evaluate(ir.optimize(joint), [np.zeros((2, 3), F32), np.ones(4, F32)])
    np.testing.assert_array_equal(gx, np.ones((2, 3)))
    assert gy.shape == (4,) and gy.dtype == F32 and not gy.any()


def test_integer_pow_zero_has_zero_gradient_at_zero():
    """d/dx x**0 is 0 everywhere, including x = 0 (JAX and autograd agree)."""
    x = Value((3,), F64, "x")
    with ir.building() as builder:
        y = ops.reduce_sum(ops.integer_pow(x, 0))
    joint = ir.vjp_graph(builder.finish((x,), (y,)), (0,))
    for graph in (joint, ir.optimize(joint)):
        _, grad = ir.evaluate(graph, [np.array([0.0, 1.0, -2.0])])
        np.testing.assert_array_equal(grad, [0.0, 0.0, 0.0])


def test_backward_nodes_carry_the_forward_source_line():
    x = Value((3,), F32, "x")
    with ir.building() as builder:
        with ir.source_line("model.py:3"):
            y = ops.tanh(x)
        with ir.source_line("model.py:4"):
            z = ops.reduce_sum(y)
    joint = ir.vjp_graph(builder.finish((x,), (z,)), (0,))
    backward = joint.nodes[len(builder.finish((x,), (z,)).nodes):]
    # Only the seed (the constant 1) belongs to no line of the user's.
    sources = [node.source for node in backward if node.primitive.name != "const"]
    assert sources and set(sources) == {"model.py:3", "model.py:4"}


def test_stop_gradient_passes_the_value_and_blocks_the_gradient():
    x = Value((3,), F64, "x")
    with ir.building() as builder:
        y = ops.reduce_sum(ops.stop_gradient(x) * ops.sin(x))
    joint = ir.vjp_graph(builder.finish((x,), (y,)), (0,))
    x_value = np.array([0.5, -1.0, 2.0])
    value, grad = ir.evaluate(ir.optimize(joint), [x_value])
    np.testing.assert_allclose(value, np.sum(x_value * np.sin(x_value)))
    np.testing.assert_allclose(grad, x_value * np.cos(x_value))


def gradient_of(build, x_value):
    x = Value(np.shape(x_value), F64, "x")
    with ir.building() as builder:
        y = ops.reduce_sum(build(x))
    joint = ir.vjp_graph(builder.finish((x,), (y,)), (0,))
    return ir.evaluate(ir.optimize(joint), [np.asarray(x_value, F64)])[1]


def test_kinks_at_zero_have_zero_gradient():
    """abs and relu at exactly 0 take the gradient 0, as PyTorch and JAX do."""
    np.testing.assert_array_equal(gradient_of(ops.abs, [-1.0, 0.0, 2.0]), [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(gradient_of(ops.relu, [-1.0, 0.0, 2.0]), [0.0, 0.0, 1.0])


def test_ties_share_the_gradient_evenly():
    # maximum(x, 1): the tie at x = 1 gets half. reduce_max: the two maxima get half each.
    np.testing.assert_array_equal(gradient_of(lambda x: ops.maximum(x, 1.0), [0.0, 1.0, 2.0]),
                                  [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(gradient_of(lambda x: ops.minimum(x, 1.0), [0.0, 1.0, 2.0]),
                                  [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(gradient_of(ops.reduce_max, [3.0, 1.0, 3.0]), [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(gradient_of(lambda x: ops.reduce_min(x, 1), [[2.0, 2.0, 2.0]]),
                                  [[1 / 3, 1 / 3, 1 / 3]])


def test_pow_at_a_zero_base_has_finite_gradients():
    """d(a**b)/db = a**b log(a) is taken as 0 at a = 0 (the limit for b > 0), not NaN."""
    a, b = Value((2,), F64, "a"), Value((2,), F64, "b")
    with ir.building() as builder:
        y = ops.reduce_sum(ops.power(a, b))
    joint = ir.vjp_graph(builder.finish((a, b), (y,)), (0, 1))
    _, grad_a, grad_b = ir.evaluate(ir.optimize(joint), [np.zeros(2), np.array([2.0, 3.0])])
    np.testing.assert_array_equal(grad_a, [0.0, 0.0])
    np.testing.assert_array_equal(grad_b, [0.0, 0.0])


def test_a_scalar_input_returned_as_is_has_gradient_one():
    s = Value((), F64, "s")
    joint = ir.vjp_graph(ir.Graph((s,), (), (s,)), (0,))
    value, grad = ir.evaluate(ir.optimize(joint), [np.array(3.0)])
    assert value == 3.0 and grad == 1.0
