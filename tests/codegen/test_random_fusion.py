"""Random expression graphs, compiled fused, against the NumPy interpreter of the
same joint graph: the planner's levels (per element, per row, after the loop), its
stages and its boundaries have to agree with plain NumPy on whatever it is given.

Every distinct graph compiles new kernels (about 0.3 s each), so the examples are
few: the single-threaded kernel variant (the default at these sizes), and the
inputs are small shapes that mix row vectors, column vectors and matrices.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fusegrad as fg

INPUT_SHAPES = [(3, 4), (4,), (3, 1)]

UNARY = {
    "neg": lambda x: -x,
    "sin": fg.sin,
    "tanh": fg.tanh,
    "sigmoid": fg.sigmoid,
    "relu": fg.relu,
    "square": lambda x: x * x,
    "exp_tanh": lambda x: fg.exp(fg.tanh(x)),
    "log1p_square": lambda x: fg.log(1 + x * x),
    "sqrt1p_square": lambda x: fg.sqrt(1 + x * x),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "safe_div": lambda a, b: a / (1 + b * b),
    "maximum": fg.maximum,
    "minimum": fg.minimum,
}
REDUCE = {
    "sum": lambda x, axis, keepdims: x.sum(axis=axis, keepdims=keepdims),
    "mean": lambda x, axis, keepdims: x.mean(axis=axis, keepdims=keepdims),
    "max": lambda x, axis, keepdims: x.max(axis=axis, keepdims=keepdims),
    "logsumexp": lambda x, axis, keepdims: fg.logsumexp(x, axis=axis, keepdims=keepdims),
}


def shape_of(expr, shapes) -> tuple[int, ...]:
    kind = expr[0]
    if kind == "input":
        return shapes[expr[1]]
    if kind == "unary":
        return shape_of(expr[2], shapes)
    if kind == "binary":
        return np.broadcast_shapes(shape_of(expr[2], shapes), shape_of(expr[3], shapes))
    _, _, axis, keepdims, operand = expr
    return np.sum(np.zeros(shape_of(operand, shapes)), axis=axis, keepdims=keepdims).shape


@st.composite
def expressions(draw, shapes, depth=3, root=False):
    if depth == 0 or (not root and draw(st.integers(0, 3)) == 0):
        return ("input", draw(st.integers(0, len(shapes) - 1)))
    kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce"]))
    if kind == "unary":
        return ("unary", draw(st.sampled_from(sorted(UNARY))), draw(expressions(shapes, depth - 1)))
    if kind == "binary":
        a = draw(expressions(shapes, depth - 1))
        b = draw(expressions(shapes, depth - 1))
        try:
            np.broadcast_shapes(shape_of(a, shapes), shape_of(b, shapes))
        except ValueError:  # e.g. (3,) with (3, 4): a full reduction broadcasts with anything
            b = ("reduce", "sum", None, False, b)
        return ("binary", draw(st.sampled_from(sorted(BINARY))), a, b)
    operand = draw(expressions(shapes, depth - 1))
    ndim = len(shape_of(operand, shapes))
    # Rows (the last axis), columns (the first) or everything: what the planner fuses.
    axis = draw(st.sampled_from([None] + ([-1, 0] if ndim == 2 else [0] if ndim else [])))
    return ("reduce", draw(st.sampled_from(sorted(REDUCE))), axis, draw(st.booleans()), operand)


def build(expr, inputs):
    kind = expr[0]
    if kind == "input":
        return inputs[expr[1]]
    if kind == "unary":
        return UNARY[expr[1]](build(expr[2], inputs))
    if kind == "binary":
        return BINARY[expr[1]](build(expr[2], inputs), build(expr[3], inputs))
    _, name, axis, keepdims, operand = expr
    return REDUCE[name](build(operand, inputs), axis, keepdims)


@st.composite
def problems(draw):
    shapes = (draw(st.sampled_from(INPUT_SHAPES)), draw(st.sampled_from(INPUT_SHAPES)))
    expr = draw(expressions(shapes, root=True))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return shapes, expr, np.dtype(dtype), draw(st.integers(0, 2**32 - 1))


@given(problem=problems())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_graphs_fused_match_the_interpreter(problem, interpret, assert_all_close, flatten):
    shapes, expr, dtype, seed = problem
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-2, 2, shape).astype(dtype) for shape in shapes]
    weights = rng.standard_normal(shape_of(expr, shapes)).astype(dtype)

    def loss(x, y):
        # Weighted, so that every element of the result gets its own cotangent.
        return (build(expr, (x, y)) * weights).sum()

    f = fg.compile_grad(loss)
    result = flatten(f(*args))
    assert [r.dtype for r in result] == [dtype] * 3
    assert_all_close(result, interpret(f, *args), dtype, what=repr(expr))
