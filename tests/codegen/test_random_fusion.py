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


def space(expression_trees):
    # Reductions over rows (the last axis), columns (the first) or everything: what
    # the planner fuses.
    return expression_trees(
        unary=UNARY, binary=BINARY, reduce=REDUCE, total="sum", depth=3, leaf_odds=4,
        axes=lambda ndim: [None] + ([-1, 0] if ndim == 2 else [0] if ndim else []))


@given(data=st.data())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_graphs_fused_match_the_interpreter(data, expression_trees, interpret,
                                                   assert_all_close, flatten):
    trees = space(expression_trees)
    shapes = (data.draw(st.sampled_from(INPUT_SHAPES)), data.draw(st.sampled_from(INPUT_SHAPES)))
    expr = data.draw(trees.trees(shapes))
    dtype = np.dtype(data.draw(st.sampled_from([np.float32, np.float64])))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    args = [rng.uniform(-2, 2, shape).astype(dtype) for shape in shapes]
    weights = rng.standard_normal(trees.shape_of(expr, shapes)).astype(dtype)

    def loss(x, y):
        # Weighted, so that every element of the result gets its own cotangent.
        return (trees.evaluate(expr, (x, y)) * weights).sum()

    f = fg.compile_grad(loss)
    result = flatten(f(*args))
    assert [r.dtype for r in result] == [dtype] * 3
    assert_all_close(result, interpret(f, *args), dtype, what=repr(expr))
