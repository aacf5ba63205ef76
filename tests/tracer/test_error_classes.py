"""fusegrad's exceptions are the built-in ones the ecosystem catches (issue 11, item 14):
shape problems ValueError (NumPy, JAX) and RuntimeError (PyTorch), dtype and call
problems TypeError, tracing problems TypeError (JAX's ConcretizationTypeError), and
what fusegrad does not implement NotImplementedError (a RuntimeError)."""
from __future__ import annotations

import numpy as np
import pytest

import fusegrad as fg

X = np.ones((3, 4))


def caught(builtin, call):
    """The error `call` raises, caught as a user's `except builtin:` would."""
    try:
        call()
    except builtin as error:
        assert isinstance(error, fg.FusegradError), type(error).__mro__
        return error
    raise AssertionError(f"{call} raised nothing")


def test_torch_seed_program_catches_mv_of_a_matrix_as_runtime_error():
    x, y = fg.randn(3, 4), fg.randn(4, 2)
    error = caught(RuntimeError, lambda: x.mv(y))
    assert isinstance(error, (fg.ShapeError, ValueError))
    assert "mv: expected a matrix and a vector" in str(error) and "(4, 2)" in str(error)
    caught(RuntimeError, lambda: fg.mm(x, fg.randn(4)))


@pytest.mark.parametrize("builtin", [ValueError, RuntimeError])
def test_shape_errors_are_value_and_runtime_errors(builtin):
    a, b = fg.ones(3), fg.ones(4)
    assert isinstance(caught(builtin, lambda: a + b), fg.ShapeError)
    compiled = fg.compile_grad(lambda x, w: (x @ w).sum())
    assert isinstance(caught(builtin, lambda: compiled(X, X)), fg.ShapeError)


def test_dtype_and_call_errors_are_type_errors():
    t = fg.tensor([1.0, 2.0])
    assert isinstance(caught(TypeError, lambda: t & t), fg.DTypeError)
    assert isinstance(caught(TypeError, lambda: fg.tensor([1, 2]) ** -1), fg.DTypeError)
    compiled = fg.compile_grad(lambda x, w: (x * w).sum(), wrt="weights")
    caught(TypeError, lambda: compiled(X, X))


def test_trace_errors_are_type_errors_as_in_jax():
    def branchy(x):
        return x.sum() if x.sum() > 0 else -x.sum()   # data-dependent control flow
    error = caught(TypeError, lambda: fg.compile_grad(branchy)(X))
    assert isinstance(error, fg.TraceError) and "fg.where" in str(error)


def test_unsupported_spellings_are_not_implemented_hence_runtime_errors():
    error = caught(NotImplementedError, lambda: fg.zeros(3, out=fg.zeros(3)))
    assert isinstance(error, (fg.UnsupportedError, RuntimeError))
    w = fg.zeros(3, requires_grad=True) * 2   # not a leaf: leaves have their own check

    def assign():   # multiplying at index arrays (issue 11, item 3)
        w.at[np.array([0, 0])].multiply(2.0)
    assert isinstance(caught(RuntimeError, assign), fg.UnsupportedError)
