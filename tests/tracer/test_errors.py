"""Bad programs and bad input to `compile_grad` give a fusegrad exception whose
message names the op, the shapes or dtypes and the user's line, never a Numba
traceback.

The expected lines are found by the marker comments at the ends of lines (`# <-
name`), so that editing this file cannot put the tests out of step.
"""
from __future__ import annotations

import re
import traceback
from pathlib import Path

import numpy as np
import pytest

import fusegrad as fg

_SOURCE = Path(__file__).read_text().splitlines()


def line_of(marker: str) -> str:
    """'test_errors.py:N' of the line that ends with the comment `# <- marker`."""
    hits = [n for n, text in enumerate(_SOURCE, 1) if text.rstrip().endswith(f"# <- {marker}")]
    assert len(hits) == 1, f"marker {marker!r} found {len(hits)} times"
    return f"test_errors.py:{hits[0]}"


def raised(error_type, f, *args) -> str:
    """Call `f(*args)`, expect `error_type`, check no Numba or plain Python error sits
    under it, and return the message."""
    with pytest.raises(error_type) as info:
        f(*args)
    error = info.value
    assert isinstance(error, fg.FusegradError)
    chain = error
    while chain is not None:
        assert not type(chain).__module__.startswith("numba"), f"a Numba error: {chain!r}"
        chain = chain.__cause__ or chain.__context__
    text = "".join(traceback.format_exception(error))
    assert "numba" not in str(error).lower() and "numba/core" not in text
    return str(error)


X34, Y5, W52 = np.ones((3, 4)), np.ones(5), np.ones((5, 2))


# ---------------------------------------------------------------- shapes

def broadcast(x, y):
    z = x * 2
    return (z + y).sum()  # <- broadcast


def test_non_broadcastable_shapes():
    message = raised(fg.ShapeError, fg.compile_grad(broadcast), X34, Y5)
    assert "add" in message and "(3, 4)" in message and "(5,)" in message
    assert "broadcast" in message
    assert line_of("broadcast") in message


def inner_mismatch(x, w):
    return (fg.tanh(x @ w)).sum()  # <- matmul


def test_matmul_inner_dimensions():
    message = raised(fg.ShapeError, fg.compile_grad(inner_mismatch), X34, W52)
    assert "matmul" in message
    assert "[3,4]" in message and "[5,2]" in message and "4 != 5" in message
    assert line_of("matmul") in message


def bad_axis(x):
    return x.sum(axis=3).sum()  # <- axis


def test_reduction_axis_out_of_range():
    message = raised(fg.ShapeError, fg.compile_grad(bad_axis), X34)
    assert "reduce_sum" in message and "axis 3" in message and "[3,4]" in message
    assert line_of("axis") in message


def bad_reshape(x):
    return x.reshape(5, 2).sum()  # <- reshape


def test_reshape_to_a_different_size():
    message = raised(fg.ShapeError, fg.compile_grad(bad_reshape), X34)
    assert "reshape" in message and "[3,4]" in message and "(5, 2)" in message
    assert line_of("reshape") in message


def non_scalar(x):  # <- non-scalar def
    return fg.tanh(x) * 2  # <- non-scalar


def test_non_scalar_return():
    message = raised(fg.ShapeError, fg.compile_grad(non_scalar), X34)
    assert "scalar" in message and "(3, 4)" in message
    assert "non_scalar" in message and line_of("non-scalar def") in message
    assert ".sum()" in message  # says how to fix it
    assert "mul" in message and line_of("non-scalar") in message  # and where it came from


def not_a_tensor(x):  # <- not a tensor
    return 1.0


def test_returning_something_untraced():
    message = raised(fg.TraceError, fg.compile_grad(not_a_tensor), X34)
    assert "float" in message and "not_a_tensor" in message
    assert line_of("not a tensor") in message


# ---------------------------------------------------------------- dtypes and wrt

def product(x, y):  # <- product
    return (x * y).sum()


def test_integer_array_asked_for_a_gradient():
    f = fg.compile_grad(product, wrt=0)
    message = raised(fg.DTypeError, f, np.ones(3, np.int64), np.ones(3))
    assert "int64" in message and "argument 0" in message and "(x)" in message
    assert "floating-point" in message
    assert "product" in message and line_of("product") in message


def test_integer_arrays_only():
    f = fg.compile_grad(product)
    message = raised(fg.DTypeError, f, np.ones(3, np.int64), np.ones(3, np.int32))
    assert "floating-point" in message and "int64" in message
    assert line_of("product") in message


@pytest.mark.parametrize("wrt", [2, -3, (0, 5)])
def test_wrt_out_of_range(wrt):
    message = raised(fg.FusegradError, fg.compile_grad(product, wrt=wrt), np.ones(3), np.ones(3))
    assert "wrt" in message and "out of range" in message and "2 arguments" in message
    assert line_of("product") in message


def scaled(x, k):  # <- scaled
    return (x * k).sum()


def test_wrt_a_constant_argument():
    message = raised(fg.DTypeError, fg.compile_grad(scaled, wrt=1), np.ones(3), 2.0)
    assert "argument 1" in message and "not an array" in message
    assert line_of("scaled") in message


@pytest.mark.parametrize("dtype", [np.float16, np.complex128])
def test_unsupported_array_dtypes(dtype):
    # float16 would reach Numba, which has no float16 arrays on the CPU.
    message = raised(fg.DTypeError, fg.compile_grad(product), np.ones(3, dtype), np.ones(3))
    assert np.dtype(dtype).name in message and "argument 0 (x)" in message
    assert "float32" in message and "float64" in message


HALVES = np.ones(3, np.float16)


def closes_over_halves(x):
    return (x * HALVES).sum()  # <- float16 constant


def test_unsupported_constant_dtypes():
    # A closed-over array is a constant of the trace: refused like an argument, at the
    # line that uses it, in traced and in eager code.
    message = raised(fg.DTypeError, fg.compile_grad(closes_over_halves), np.ones(3))
    assert "float16" in message and "(3,)" in message and line_of("float16 constant") in message
    message = raised(fg.DTypeError, lambda: fg.exp(np.ones(2, np.complex128)))  # <- complex eager
    assert "complex128" in message and line_of("complex eager") in message


def where_float_condition(x, m):
    return fg.where(m, x, 0).sum()  # <- where


def test_where_needs_a_boolean_condition():
    message = raised(fg.DTypeError, fg.compile_grad(where_float_condition), np.ones(3), np.ones(3))
    assert "where" in message and "bool" in message and "f64" in message
    assert line_of("where") in message


# ---------------------------------------------------------------- data-dependent Python

def branches(x):
    if x.sum() > 0:  # <- if
        return x.sum()
    return -x.sum()


def converts(x):
    scale = float(x.max())  # <- float
    return x.sum() * scale


@pytest.mark.parametrize("fn, marker, what", [(branches, "if", "truth value"),
                                              (converts, "float", "float value")])
def test_data_dependent_control_flow(fn, marker, what):
    message = raised(fg.TraceError, fg.compile_grad(fn), X34)
    assert what in message and line_of(marker) in message
    # Explains why, and what to do instead.
    assert "static graph" in message and "fg.where" in message


def copies(x):
    return fg.tensor(x).sum()  # <- copy


def test_reading_the_data_of_a_traced_tensor():
    message = raised(fg.TraceError, fg.compile_grad(copies), X34)
    assert "data of a traced tensor" in message and line_of("copy") in message
    assert "use the tensor itself" in message.lower()


def test_eager_errors_name_the_line_too():
    # Raised by fusegrad's front-end, not by a traced op: the line is still the user's.
    m = fg.tensor(np.ones((2, 2)))
    message = raised(fg.ShapeError, lambda: m.mv(m))  # <- eager mv
    assert "mv" in message and "(2, 2)" in message and line_of("eager mv") in message


def test_error_messages_name_the_line_once():
    message = raised(fg.ShapeError, fg.compile_grad(broadcast), X34, Y5)
    assert len(re.findall(re.escape(line_of("broadcast")), message)) == 1


def test_an_error_leaves_the_function_usable():
    f = fg.compile_grad(broadcast)
    raised(fg.ShapeError, f, X34, Y5)
    value, (gx, gy) = f(X34, np.ones(4))
    assert value == 36.0
    np.testing.assert_array_equal(gx, np.full((3, 4), 2.0))
    np.testing.assert_array_equal(gy, np.full(4, 3.0))
