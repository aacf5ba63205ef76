"""Basic indexing inside compile_grad: integers, slices, None and Ellipsis."""
import numpy as np
import pytest

import fusegrad as fg


def indexed(x, w):
    return (fg.tanh(x[:, 1:3] @ w[::-1]) ** 2).sum() + x[0, -1] * 3 + x[None, ..., 2].sum()


def test_values_and_gradients():
    rng = np.random.default_rng(0)
    x, w = rng.random((4, 5)), rng.random((2, 3))
    value, _ = fg.compile_grad(indexed)(x, w)
    expected = (np.tanh(x[:, 1:3] @ w[::-1]) ** 2).sum() + x[0, -1] * 3 + x[:, 2].sum()
    assert np.isclose(value, expected)
    assert fg.gradcheck(indexed, x, w)


def test_other_indices_are_a_clear_error():
    # (Index arrays gather: tests/tracer/test_gather.py.)
    with pytest.raises(TypeError, match=r"only integers, slices, None and \.\.\."):
        fg.compile_grad(lambda x: x[1.5].sum())(np.ones(3))


def test_out_of_bounds_index_names_the_axis():
    with pytest.raises(fg.ShapeError, match="index 3 is out of bounds for axis 0"):
        fg.compile_grad(lambda x: x[3].sum())(np.ones((3, 2)))


def test_a_gradient_that_is_a_slice_of_an_input_is_a_copy():
    x, y = np.arange(4.0), np.ones(2)
    _, (_, gy) = fg.compile_grad(lambda x, y: (x[:2] * y).sum())(x, y)
    np.testing.assert_array_equal(gy, x[:2])
    assert not np.shares_memory(gy, x)
