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


def spaces(expression_trees) -> tuple:
    """The same trees read two ways: built as IR with fusegrad ops, and computed by
    autograd.numpy."""
    def space(which: int):
        return expression_trees(
            unary={k: v[which] for k, v in UNARY.items()},
            binary={k: v[which] for k, v in BINARY.items()},
            reduce={k: v[which] for k, v in REDUCE.items()}, total="reduce_sum",
            depth=4, leaf_odds=5, axes=lambda ndim: [None, *range(ndim)])
    return space(0), space(1)


@given(data=st.data())
@settings(max_examples=50, deadline=None)
def test_random_expression_gradients_match_autograd(data, expression_trees, optimize_verified):
    ir_space, reference = spaces(expression_trees)
    input_shapes = data.draw(st.lists(st.sampled_from(INPUT_SHAPES), min_size=2, max_size=3))
    expr = data.draw(ir_space.trees(input_shapes))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    args = [rng.uniform(-1.5, 1.5, shape) for shape in input_shapes]
    inputs = tuple(Value(shape, F64, name) for shape, name in zip(input_shapes, "xyz"))
    with ir.building() as builder:
        out = ir_space.evaluate(expr, inputs)
        weights = rng.standard_normal(out.shape)
        loss = ops.reduce_sum(out * builder.capture(weights))
    joint = ir.vjp_graph(builder.finish(inputs, (loss,)), range(len(inputs)))
    value, *grads = ir.evaluate(optimize_verified(joint), args)

    def reference_loss(*xs):
        return anp.sum(reference.evaluate(expr, xs) * weights)

    np.testing.assert_allclose(value, reference_loss(*args), rtol=1e-10, atol=1e-10)
    for i, grad in enumerate(grads):
        expected = autograd.grad(reference_loss, i)(*args)
        assert grad.shape == args[i].shape
        np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-9, err_msg=f"{expr} d/d{i}")
