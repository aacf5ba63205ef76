"""Random expression graphs: gradients from `vjp_graph` + `evaluate` against HIPS autograd.

An expression is a tree (depth <= 4) over 2-3 inputs of broadcast-compatible shapes,
of ops that are smooth where it matters: bounded unary ops (so that nothing
overflows at depth 4), binary ops, and reductions. Ties of maximum, minimum and
reduce_max only arise structurally (maximum(x, x), the max of a broadcast row) and
both sides share the gradient evenly there, as JAX and PyTorch do.
"""
from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir.graph import Value

pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

F64 = np.dtype(np.float64)
INPUT_SHAPES = [(3, 4), (4,), (3, 1), ()]


def reference_logsumexp(x, axis, keepdims=False):
    shift = anp.max(x, axis=axis, keepdims=True)
    result = anp.log(anp.sum(anp.exp(x - shift), axis=axis, keepdims=True)) + shift
    return result if keepdims else anp.reshape(result, np.sum(np.zeros(x.shape), axis=axis).shape)


# name -> (fusegrad.ir.ops version, autograd.numpy version)
UNARY = {
    "neg": (ops.neg, anp.negative),
    "sin": (ops.sin, anp.sin),
    "cos": (ops.cos, anp.cos),
    "tanh": (ops.tanh, anp.tanh),
    "sigmoid": (ops.sigmoid, lambda x: 1 / (1 + anp.exp(-x))),
    "relu": (ops.relu, lambda x: anp.where(x > 0, x, 0.0)),
    "square": (lambda x: x ** 2, lambda x: x ** 2),
    "exp_tanh": (lambda x: ops.exp(ops.tanh(x)), lambda x: anp.exp(anp.tanh(x))),
    "log1p_square": (lambda x: ops.log(1 + x * x), lambda x: anp.log(1 + x * x)),
    "sqrt1p_square": (lambda x: ops.sqrt(1 + x * x), lambda x: anp.sqrt(1 + x * x)),
}
BINARY = {
    "add": (ops.add, anp.add),
    "sub": (ops.sub, anp.subtract),
    "mul": (ops.mul, anp.multiply),
    "safe_div": (lambda a, b: a / (1 + b * b), lambda a, b: a / (1 + b * b)),
    "maximum": (ops.maximum, anp.maximum),
    "minimum": (ops.minimum, anp.minimum),
}
REDUCE = {
    "reduce_sum": (ops.reduce_sum, lambda x, axis, keepdims: anp.sum(x, axis, keepdims=keepdims)),
    "reduce_max": (ops.reduce_max, lambda x, axis, keepdims: anp.max(x, axis, keepdims=keepdims)),
    "mean": (ops.mean, lambda x, axis, keepdims: anp.mean(x, axis, keepdims=keepdims)),
    "logsumexp": (ops.logsumexp, reference_logsumexp),
}


def shape_of(expr, input_shapes):
    kind = expr[0]
    if kind == "input":
        return input_shapes[expr[1]]
    if kind == "unary":
        return shape_of(expr[2], input_shapes)
    if kind == "binary":
        return np.broadcast_shapes(shape_of(expr[2], input_shapes),
                                   shape_of(expr[3], input_shapes))
    _, _, axis, keepdims, operand = expr
    return np.sum(np.zeros(shape_of(operand, input_shapes)), axis=axis, keepdims=keepdims).shape


@st.composite
def expressions(draw, input_shapes, depth=4, root=False):
    if depth == 0 or (not root and draw(st.integers(0, 4)) == 0):
        return ("input", draw(st.integers(0, len(input_shapes) - 1)))
    kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce"]))
    if kind == "unary":
        return ("unary", draw(st.sampled_from(sorted(UNARY))),
                draw(expressions(input_shapes, depth - 1)))
    if kind == "binary":
        a = draw(expressions(input_shapes, depth - 1))
        b = draw(expressions(input_shapes, depth - 1))
        try:
            np.broadcast_shapes(shape_of(a, input_shapes), shape_of(b, input_shapes))
        except ValueError:  # e.g. (3,) with (3, 4): b becomes a sum, no deeper than before
            operand = draw(expressions(input_shapes, max(depth - 2, 0)))
            b = ("reduce", "reduce_sum", None, False, operand)
        return ("binary", draw(st.sampled_from(sorted(BINARY))), a, b)
    operand = draw(expressions(input_shapes, depth - 1))
    ndim = len(shape_of(operand, input_shapes))
    axis = draw(st.sampled_from([None, *range(ndim)]))
    return ("reduce", draw(st.sampled_from(sorted(REDUCE))), axis, draw(st.booleans()), operand)


def evaluate_expression(expr, inputs, which: int):
    """`which` 0 builds IR with fusegrad ops, 1 computes with autograd.numpy."""
    kind = expr[0]
    if kind == "input":
        return inputs[expr[1]]
    if kind == "unary":
        return UNARY[expr[1]][which](evaluate_expression(expr[2], inputs, which))
    if kind == "binary":
        return BINARY[expr[1]][which](evaluate_expression(expr[2], inputs, which),
                                      evaluate_expression(expr[3], inputs, which))
    _, name, axis, keepdims, operand = expr
    value = evaluate_expression(operand, inputs, which)
    return REDUCE[name][which](value, axis, keepdims=keepdims)


@st.composite
def problems(draw):
    input_shapes = draw(st.lists(st.sampled_from(INPUT_SHAPES), min_size=2, max_size=3))
    expr = draw(expressions(input_shapes, root=True))
    return input_shapes, expr, draw(st.integers(0, 2 ** 32 - 1))


@given(problem=problems())
@settings(max_examples=50, deadline=None)
def test_random_expression_gradients_match_autograd(problem, optimize_verified):
    input_shapes, expr, seed = problem
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-1.5, 1.5, shape) for shape in input_shapes]
    inputs = tuple(Value(shape, F64, name) for shape, name in zip(input_shapes, "xyz"))
    with ir.building() as builder:
        out = evaluate_expression(expr, inputs, 0)
        weights = rng.standard_normal(out.shape)
        loss = ops.reduce_sum(out * builder.capture(weights))
    joint = ir.vjp_graph(builder.finish(inputs, (loss,)), range(len(inputs)))
    value, *grads = ir.evaluate(optimize_verified(joint), args)

    def reference_loss(*xs):
        return anp.sum(evaluate_expression(expr, xs, 1) * weights)

    np.testing.assert_allclose(value, reference_loss(*args), rtol=1e-10, atol=1e-10)
    for i, grad in enumerate(grads):
        expected = autograd.grad(reference_loss, i)(*args)
        assert grad.shape == args[i].shape
        np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-9, err_msg=f"{expr} d/d{i}")
