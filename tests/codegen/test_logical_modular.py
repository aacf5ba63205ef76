"""Logical, bitwise and modular ops (issue 11, item 4): `&`, `|`, `^`, `~` on masks and
integers, `//` and `%` with NumPy's floor semantics, and the comparisons with a number
on either side. Values agree bit for bit with NumPy in a fused kernel, the NumPy
interpreter and eager mode; `%` is differentiated as PyTorch's remainder.

Each dtype's table is one graph compiled once; every pair of its values is one element.
"""
from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg
from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir.graph import Value
from fusegrad.runtime import compile_graph

INTEGERS = ["int8", "uint32", "int64", "uint64"]
FLOATS = ["float32", "float64"]


def values(dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.array([-7.5, -3.0, -1.0, -0.0, 0.0, 0.25, 1.0, 2.0, 3.0, 1e30], dtype)
    info = np.iinfo(dtype)
    picked = {0, 1, 2, 3, 7, 100, info.max, info.max - 1, info.min, info.min + 1}
    if info.min < 0:
        picked |= {-1, -2, -3, -7}
    return np.array(sorted(v for v in picked if info.min <= v <= info.max), dtype)


def grid(dtype) -> list[np.ndarray]:
    return list(np.meshgrid(values(dtype), values(dtype), indexing="ij"))


# name -> (fusegrad on Values x, y; NumPy on arrays x, y; dtype kinds it applies to)
TABLE = {
    "x//y": (ops.floor_divide, np.floor_divide, "iuf"),
    "x%y": (ops.remainder, np.remainder, "iuf"),
    "x//3": (lambda x, y: ops.floor_divide(x, 3), lambda x, y: x // x.dtype.type(3), "iuf"),
    "x%3": (lambda x, y: ops.remainder(x, 3), lambda x, y: x % x.dtype.type(3), "iuf"),
    "7%y": (lambda x, y: ops.remainder(7, y), lambda x, y: y.dtype.type(7) % y, "iuf"),
    "x&y": (ops.bitwise_and, np.bitwise_and, "iu"),
    "x|y": (ops.bitwise_or, np.bitwise_or, "iu"),
    "x^y": (ops.bitwise_xor, np.bitwise_xor, "iu"),
    "~x": (lambda x, y: ops.invert(x), lambda x, y: ~x, "iu"),
    "x&6": (lambda x, y: ops.bitwise_and(x, 6), lambda x, y: x & x.dtype.type(6), "iu"),
    "x<y&x>0": (lambda x, y: ops.bitwise_and(ops.lt(x, y), ops.gt(x, 0)),
                lambda x, y: (x < y) & (x > 0), "iuf"),
    "x<=y|x>=2": (lambda x, y: ops.bitwise_or(ops.le(x, y), ops.ge(x, 2)),
                  lambda x, y: (x <= y) | (x >= 2), "iuf"),
    "x<y^y>1": (lambda x, y: ops.bitwise_xor(ops.lt(x, y), ops.gt(y, 1)),
                lambda x, y: (x < y) ^ (y > 1), "iuf"),
    "~(x<y)": (lambda x, y: ops.invert(ops.lt(x, y)), lambda x, y: ~(x < y), "iuf"),
    "logical_and": (ops.logical_and, np.logical_and, "iuf"),
    "logical_or": (ops.logical_or, np.logical_or, "iuf"),
    "logical_xor": (ops.logical_xor, np.logical_xor, "iuf"),
    "logical_not": (lambda x, y: ops.logical_not(x), lambda x, y: np.logical_not(x), "iuf"),
}


def names(dtype) -> list[str]:
    return [name for name, (_, _, kinds) in TABLE.items() if np.dtype(dtype).kind in kinds]


def table_graph(dtype):
    size = len(values(dtype))
    x, y = (Value((size, size), np.dtype(dtype), name) for name in "xy")
    with ir.building() as builder:
        outputs = tuple(TABLE[name][0](x, y) for name in names(dtype))
    return builder.finish((x, y), outputs)


def expected(dtype) -> list[np.ndarray]:
    x, y = grid(dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return [np.asarray(TABLE[name][1](x, y)) for name in names(dtype)]


def assert_bitwise(actual, wanted, what, dtype) -> None:
    assert len(actual) == len(wanted)
    for name, a, b in zip(names(dtype), actual, wanted):
        a = np.asarray(a)
        assert a.dtype == b.dtype, f"{what}, {dtype} {name}: dtype {a.dtype} != {b.dtype}"
        # Bit for bit: the sign of a zero remainder and NaN's place count too.
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8),
                                      err_msg=f"{what}, {dtype} {name}: {a} != {b}")


@pytest.mark.parametrize("dtype", INTEGERS + FLOATS)
def test_interpreter_matches_numpy(dtype):
    assert_bitwise(ir.evaluate(table_graph(dtype), grid(dtype)), expected(dtype), "interpreter",
                   dtype)


@pytest.mark.parametrize("dtype", INTEGERS + FLOATS)
def test_fused_kernel_matches_numpy(dtype):
    executable = compile_graph(ir.optimize(table_graph(dtype)))
    assert executable.kernel_count == len(executable.steps)  # nothing left to NumPy
    assert_bitwise(executable(grid(dtype)), expected(dtype), "fused", dtype)


def test_eager_operators_match_numpy():
    """Tensor's operators, reflected ones, and the fg. functions of both spellings."""
    for dtype in ("int64", "float64"):
        x, y = grid(dtype)
        tx, ty = fg.tensor(x), fg.tensor(y)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            pairs = [(tx // ty, x // y), (tx % ty, x % y), (7 % ty, 7 % y), (7 // ty, 7 // y),
                     (fg.remainder(tx, 3), x % 3), (fg.floor_divide(tx, ty), x // y),
                     (tx.remainder(ty), x % y), (fg.mod(tx, ty), np.mod(x, y)),
                     ((tx < ty) & (tx > 0), (x < y) & (x > 0)),
                     (True & (tx < ty), True & (x < y)), ((tx < 1) | False, (x < 1) | False),
                     ((tx < ty) ^ (ty > 1), (x < y) ^ (y > 1)), (~(tx < ty), ~(x < y)),
                     (1 < tx, 1 < x), (1 >= tx, 1 >= x), (tx <= ty, x <= y), (tx > 2.5, x > 2.5),
                     (fg.logical_and(tx, ty), np.logical_and(x, y)),
                     (fg.logical_or(tx, ty), np.logical_or(x, y)),
                     (fg.logical_xor(tx, ty), np.logical_xor(x, y)),
                     (fg.logical_not(tx), np.logical_not(x)), (tx.logical_not(), np.logical_not(x))]
            if dtype == "int64":
                pairs += [(tx & ty, x & y), (tx | ty, x | y), (tx ^ ty, x ^ y), (~tx, ~x),
                          (6 & tx, 6 & x), (6 | tx, 6 | x), (6 ^ tx, 6 ^ x),
                          (fg.bitwise_not(tx), ~x), (tx.bitwise_and(ty), x & y)]
        for i, (got, want) in enumerate(pairs):
            got = got.numpy()
            assert got.dtype == want.dtype, (dtype, i, got.dtype, want.dtype)
            np.testing.assert_array_equal(got, want, err_msg=f"{dtype}, pair {i}")


def test_bitwise_ops_refuse_floats():
    """As NumPy: `&` of floats is a TypeError (fusegrad's DTypeError)."""
    t = fg.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="bitwise_and: needs bool or integer inputs"):
        t & t
    with pytest.raises(fg.DTypeError, match="invert"):
        ~t


# ---------------------------------------------------------------- gradients

A = np.array([-3.5, -1.0, 2.0, 7.25, 0.3, -0.7])
B = np.array([2.0, -1.5, -3.0, 2.0, 0.7, 0.4])


def loss_numpy(a, b):
    """Remainders of both operands, a `//` (zero gradient) and a mask made of them
    (autograd spells a // b as floor(a / b))."""
    mask = ((a < b) & (0 < b)) | ~(a > 1)
    return anp.sum((a % b) * (a % 1.5) + (2.5 % b) * anp.floor(a / b) + anp.where(mask, a % b, 0.0))



def _fg_loss(a, b):
    """loss_numpy in fusegrad."""
    mask = ((a < b) & (0 < b)) | ~(a > 1)
    return fg.sum((a % b) * (a % 1.5) + (2.5 % b) * (a // b) + fg.where(mask, a % b, 0.0))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_remainder_gradient_matches_autograd_and_finite_differences(dtype):
    value, (ga, gb) = fg.compile_grad(_fg_loss, wrt=(0, 1))(A.astype(dtype), B.astype(dtype))
    want = loss_numpy(A, B)
    want_a, want_b = autograd.grad(loss_numpy, (0, 1))(A, B)
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(value, want, rtol=tol)
    np.testing.assert_allclose(ga, want_a, rtol=tol, atol=tol)
    np.testing.assert_allclose(gb, want_b, rtol=tol, atol=tol)
    # d/db of a % b is -floor(a / b) (PyTorch's remainder), by central differences
    # away from the jumps.
    eps = 1e-6
    for i in range(len(A)):
        step = np.zeros_like(B)
        step[i] = eps
        numeric = (loss_numpy(A, B + step) - loss_numpy(A, B - step)) / (2 * eps)
        np.testing.assert_allclose(gb[i], numeric, rtol=1e-4, atol=1e-4)


def test_eager_remainder_gradient_and_grad_fn():
    a = fg.tensor(A, requires_grad=True)
    b = fg.tensor(B, requires_grad=True)
    assert type((a % 2).grad_fn).__name__ == "RemainderBackward0"
    assert type((a % b).grad_fn).__name__ == "RemainderBackward1"
    _fg_loss(a, b).backward()
    want_a, want_b = autograd.grad(loss_numpy, (0, 1))(A, B)
    np.testing.assert_allclose(a.grad.numpy(), want_a, rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), want_b, rtol=1e-12)
