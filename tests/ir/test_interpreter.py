"""ir/interpreter.py: the NumPy meaning of the IR, which is the oracle for codegen.

The values of every differentiable op are checked in test_vjp.py; here the
interpreter's own promises: the IR's dtypes and shapes win over NumPy's, NaN
handling, captured constants, and argument checking.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir.graph import Value

F32, F64, I32 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)


def build(make_outputs, *types, names="xyz") -> ir.Graph:
    inputs = tuple(Value(shape, dtype, name) for (shape, dtype), name in zip(types, names))
    with ir.building() as builder:
        outputs = make_outputs(*inputs)
    return builder.finish(inputs, outputs if isinstance(outputs, tuple) else (outputs,))


def test_argument_count_is_checked():
    graph = build(lambda x, y: x + y, ((2,), F32), ((2,), F32))
    with pytest.raises(TypeError, match="takes 2 inputs, got 1"):
        ir.evaluate(graph, [np.zeros(2, F32)])


def test_results_have_the_dtypes_and_shapes_of_the_ir():
    def make(x, n):
        return (ops.reduce_sum(x), n + n, ops.mean(n), ops.gt(x, 0.0), ops.argmax(x, 0),
                ops.integer_pow(x, -2), x * 2.5)
    graph = build(make, ((4,), F32), ((4,), I32))
    x, n = np.array([1, -2, 3, 0.5], F32), np.arange(4, dtype=I32)
    results = ir.evaluate(graph, [x, n])
    for result, value in zip(results, graph.outputs):
        assert isinstance(result, np.ndarray)  # 0-d results too, not NumPy scalars
        assert (result.shape, result.dtype) == (value.shape, value.dtype)
    total, doubled, mean, positive, index, inverse_square, scaled = results
    assert total == np.float32(2.5) and mean == 1.5 and index == 2
    np.testing.assert_array_equal(doubled, 2 * n)
    np.testing.assert_array_equal(positive, x > 0)
    np.testing.assert_allclose(inverse_square, 1 / x ** 2, rtol=1e-7)
    np.testing.assert_array_equal(scaled, x * np.float32(2.5))


@pytest.mark.parametrize("n", [-3, 1, 2, 3, 4])
def test_small_integer_powers_may_write_over_their_base(n):
    """integer_pow's impl computes x**n into `out`, which may be x (an in-place pow)."""
    from fusegrad.ir.primitives import _integer_pow_impl
    x = np.array([1.5, -2.0, 3.0, 0.25], F32)
    expected = _integer_pow_impl(x, n=n)
    assert _integer_pow_impl(x, n=n, out=x) is x
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_allclose(expected, np.array([1.5, -2.0, 3.0, 0.25], F64) ** n, rtol=1e-6)


def test_float32_stays_float32_inside():
    """1 + 1e-8 is 1 in float32; computing in float64 and rounding at the end is not."""
    graph = build(lambda x: (x + 1e-8) - 1.0, ((), F32))
    (result,) = ir.evaluate(graph, [np.float32(1)])
    assert result == 0


def test_nan_passes_through_relu_maximum_and_minimum():
    graph = build(lambda x, y: (ops.relu(x), ops.maximum(x, y), ops.minimum(y, x)),
                  ((3,), F64), ((3,), F64))
    x, y = np.array([np.nan, -1.0, 2.0]), np.array([0.0, np.nan, 1.0])
    relu, high, low = ir.evaluate(graph, [x, y])
    np.testing.assert_array_equal(relu, [np.nan, 0.0, 2.0])
    np.testing.assert_array_equal(high, [np.nan, np.nan, 2.0])
    np.testing.assert_array_equal(low, [np.nan, np.nan, 1.0])


def test_no_floating_point_warnings_at_the_edges():
    graph = build(lambda x: (ops.sigmoid(x), ops.log(x), 1.0 / x, ops.logsumexp(x)), ((3,), F32))
    x = np.array([-1000.0, 0.0, 1000.0], F32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sigmoid, log, inverse, lse = ir.evaluate(graph, [x])
    np.testing.assert_array_equal(sigmoid, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(log[:2], [np.nan, -np.inf])
    np.testing.assert_array_equal(inverse, np.array([-0.001, np.inf, 0.001], F32))
    assert lse == 1000.0  # the shift keeps exp from overflowing


def test_captured_constants_are_inputs_with_data():
    x = Value((2, 3), F64, "x")
    table = np.arange(6.0).reshape(2, 3)
    with ir.building() as builder:
        y = x * builder.capture(table) + builder.capture(table)
    graph = builder.finish((x,), (y,))
    assert len(graph.constants) == 1  # one array captured twice is one input
    (result,) = ir.evaluate(graph, [np.full((2, 3), 2.0)])
    np.testing.assert_array_equal(result, 3 * table)


def test_inputs_are_not_modified_and_may_be_outputs():
    graph = build(lambda x: (x, ops.neg(x), x), ((3,), F64))
    x = np.array([1.0, 2.0, 3.0])
    same, negated, again = ir.evaluate(graph, [x])
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(negated, -x)
    assert same is again


def test_array_likes_are_accepted():
    graph = build(lambda x, y: x * y, ((2,), F64), ((), F64))
    (result,) = ir.evaluate(graph, [[1.0, 2.0], 3.0])
    np.testing.assert_array_equal(result, [3.0, 6.0])


def test_layout_and_broadcasting():
    def make(x):
        return (ops.transpose(ops.reshape(x, (2, 3, 4)), (2, 0, 1)),
                ops.broadcast_to(ops.reduce_max(x, 1, keepdims=True), (6, 4)),
                ops.where(ops.gt(x, 10.0), x, ops.reduce_min(x)))
    graph = build(make, ((6, 4), F64))
    x = np.arange(24.0).reshape(6, 4)
    moved, spread, clipped = ir.evaluate(graph, [x])
    np.testing.assert_array_equal(moved, x.reshape(2, 3, 4).transpose(2, 0, 1))
    np.testing.assert_array_equal(spread, np.broadcast_to(x.max(1, keepdims=True), (6, 4)))
    np.testing.assert_array_equal(clipped, np.where(x > 10, x, 0.0))


def test_matmul_of_vectors_and_matrices():
    graph = build(lambda a, v: (a @ v, v @ v, v @ ops.transpose(a)),
                  ((3, 4), F32), ((4,), F32), names="av")
    a, v = np.arange(12, dtype=F32).reshape(3, 4), np.arange(4, dtype=F32)
    av, vv, va = ir.evaluate(graph, [a, v])
    np.testing.assert_array_equal(av, a @ v)
    assert vv.shape == () and vv == v @ v
    np.testing.assert_array_equal(va, v @ a.T)


def test_a_sum_of_booleans_counts_them():
    """sum(x > 0) is a count, as in NumPy and PyTorch, not `any`."""
    graph = build(lambda x: (ops.reduce_sum(ops.gt(x, 0.0)), ops.reduce_sum(ops.lt(x, 0.0), 0)),
                  ((2, 3), F64))
    x = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
    total, per_column = ir.evaluate(graph, [x])
    assert total == 4 and total.dtype == np.int64
    np.testing.assert_array_equal(per_column, np.sum(x < 0, axis=0))


def test_a_deep_graph_holds_only_its_live_values(monkeypatch):
    """Each result is freed after its last use: a chain of 1,000 nodes over 200k
    elements each must not hold 1.6 GB at once."""
    import weakref

    from fusegrad.ir import interpreter
    results: list[weakref.ref] = []
    most_alive = 0

    def counting_run_node(node, args):
        nonlocal most_alive
        result = run_node(node, args)
        results.append(weakref.ref(result))
        most_alive = max(most_alive, sum(r() is not None for r in results))
        return result
    run_node = interpreter.run_node
    monkeypatch.setattr(interpreter, "run_node", counting_run_node)

    def make(x):
        y = x
        for _ in range(50):
            y = ops.tanh(y * 0.5)
        return y
    graph = build(make, ((3,), F64))
    (out,) = ir.evaluate(graph, [np.ones(3)])
    assert len(results) == len(graph.nodes) >= 100 and most_alive <= 3
    expected = np.ones(3)
    for _ in range(50):
        expected = np.tanh(expected * 0.5)
    np.testing.assert_allclose(out, expected)
