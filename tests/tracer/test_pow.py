"""`x ** e`, compiled and eager: whole-number float exponents (issue 9, item 9) and
the gradient of a power at a zero base (item 4), against NumPy, HIPS autograd and
PyTorch's rules (pow_backward_self / pow_backward_exponent).

Each compiled case is one graph, compiled once; the eager cases run on the NumPy
interpreter.
"""
from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg

# autograd warns that d/dx x**0.0 is identically zero; that is the point.
pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

# Whole-number floats (2.0, np.float32(2)) used to crash while tracing; 0.5 and the
# int are the exponents that always worked, kept as controls.
EXPONENTS = [2.0, 3.0, -1.0, 0.0, 0.5, np.float32(2), np.float64(2), 2]
BASE = np.array([0.5, 1.5, 3.0], np.float32)  # positive: every exponent is defined


def _reference(e):
    """(x ** e, d/dx) from autograd in float64, at BASE."""
    x = BASE.astype(np.float64)
    value = np.power(x, float(e))
    return value, autograd.grad(lambda x: anp.sum(x ** float(e)))(x)


def _power_rows(x):
    # One compiled graph for all exponents: row k of x is raised to EXPONENTS[k].
    return sum((x[k] ** e).sum() for k, e in enumerate(EXPONENTS))


def test_whole_float_exponents_compiled():
    x = np.tile(BASE, (len(EXPONENTS), 1))
    value, grad = fg.compile_grad(_power_rows, wrt=0)(x)
    expected = [_reference(e) for e in EXPONENTS]
    assert grad.dtype == np.float32
    np.testing.assert_allclose(value, sum(v.sum() for v, _ in expected), rtol=1e-6)
    np.testing.assert_allclose(grad, np.stack([g for _, g in expected]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("e", EXPONENTS, ids=repr)
def test_whole_float_exponents_eager(e):
    x = fg.tensor(BASE, requires_grad=True)
    y = x ** e
    y.sum().backward()
    value, grad = _reference(e)
    assert y.dtype == fg.float32
    np.testing.assert_allclose(y.detach().numpy(), value, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- a zero base

ZERO_BASE = np.array([0.0, 0.5, 2.0], np.float32)
# d/dx sum_k x**k for k = 0, 1, 2 is 0 + 1 + 2x: finite at x = 0 (JAX, PyTorch).
POLYNOMIAL_GRAD = [1.0, 2.0, 5.0]


def test_polynomial_features_gradient_at_zero_compiled():
    f = fg.compile_grad(lambda x: (x[:, None] ** np.arange(3)).sum(), wrt=0)
    value, grad = f(ZERO_BASE)
    np.testing.assert_allclose(value, (ZERO_BASE[:, None] ** np.arange(3)).sum())
    np.testing.assert_array_equal(grad, POLYNOMIAL_GRAD)


def test_polynomial_features_gradient_at_zero_eager():
    x = fg.tensor(ZERO_BASE, requires_grad=True)
    (x[:, None] ** fg.tensor(np.arange(3))).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), POLYNOMIAL_GRAD)


def test_power_gradients_at_a_zero_base_follow_pytorch():
    """d/da a**b and d/db a**b where a = 0: PyTorch's values, no NaN. At b < 0 both
    are -inf (the limits); at b >= 0 the exponent's gradient is 0."""
    a = np.array([0.0, 0.0, 0.0, 0.0, 2.0])
    b = np.array([-1.0, 0.0, 1.0, 1.5, 0.5])
    _, (da, db) = fg.compile_grad(lambda a, b: (a ** b).sum())(a, b)
    np.testing.assert_array_equal(da[:4], [-np.inf, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(db[:4], [-np.inf, 0.0, 0.0, 0.0])
    np.testing.assert_allclose([da[4], db[4]], [0.5 * 2 ** -0.5, 2 ** 0.5 * np.log(2)])
