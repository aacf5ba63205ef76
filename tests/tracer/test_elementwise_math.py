"""The elementwise math of issue 11 (item 6): log1p ... hypot and clip, compiled fused
(value and gradients against HIPS autograd and the NumPy interpreter), the rounding
ops' edge values in a kernel, and the eager spellings (NumPy's and PyTorch's).

The table test of tests/ir/test_vjp.py checks each op alone, in float32 and float64,
against autograd and central differences; here one function holds them all, so that
they are compiled together into fused kernels, once per dtype.
"""
from __future__ import annotations

import types

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg

pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

AUTOGRAD = types.SimpleNamespace(
    log1p=anp.log1p, expm1=anp.expm1, square=anp.square, rsqrt=lambda x: 1 / anp.sqrt(x),
    tan=anp.tan, arctan=anp.arctan, atan=anp.arctan, sinh=anp.sinh, cosh=anp.cosh,
    arcsin=anp.arcsin, arccos=anp.arccos, log2=anp.log2, log10=anp.log10, exp2=anp.exp2,
    floor=anp.floor, ceil=anp.ceil, round=anp.round,
    softplus=lambda x: anp.logaddexp(0.0, x), arctan2=anp.arctan2, atan2=anp.arctan2,
    hypot=anp.hypot, clip=anp.clip)

WEIGHTS = np.random.default_rng(3).standard_normal((3, 4))


def all_math_source(m, weights):
    """Every new op in one expression (NumPy's and PyTorch's spellings mixed)."""
    def all_math(x, u, p, y):
        terms = (m.log1p(p) + m.expm1(x) + m.square(x) + m.rsqrt(p) + m.tan(u) + m.arctan(x)
                 + m.sinh(x) * m.cosh(u) + m.arcsin(u) * m.arccos(u) + m.log2(p) - m.log10(p)
                 + m.exp2(x) + 1.5 * m.floor(x) + m.ceil(x) * y + m.round(3 * x)
                 + m.softplus(4 * x) + m.atan2(x, y) + m.hypot(x, y) + m.clip(x, -0.5, 0.8) * y)
        return (terms * weights).sum()
    return all_math


# Weights in each dtype (a float64 capture would promote a float32 loss).
COMPILED = {dtype: fg.compile_grad(all_math_source(fg, WEIGHTS.astype(dtype))) for dtype in (F32, F64)}


def all_math_inputs(dtype):
    rng = np.random.default_rng(7)
    sign = rng.choice([-1.0, 1.0], (4, 3, 4))
    x, u, p, y = rng.uniform(0.2, 2.0, (4, 3, 4)) * sign
    u, p = u * 0.45, np.abs(p)        # |u| < 0.9 (arcsin, tan), p > 0.2 (logs, rsqrt)
    return tuple(a.astype(dtype) for a in (x, u, p, y))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_all_new_ops_fused_match_autograd_and_the_interpreter(dtype, interpret, assert_all_close,
                                                              flatten):
    args = all_math_inputs(dtype)
    results = flatten(COMPILED[dtype](*args))
    assert [r.dtype for r in results] == [dtype] * 5
    assert_all_close(results, interpret(COMPILED[dtype], *args), dtype, what="vs interpreter")
    reference = all_math_source(AUTOGRAD, WEIGHTS.astype(dtype).astype(F64))
    args64 = [a.astype(F64) for a in args]
    expected = [np.asarray(reference(*args64))]
    expected += [autograd.grad(reference, i)(*args64) for i in range(4)]
    assert_all_close(results, expected, dtype, what="vs autograd")


def rounding_source(m):
    """Each rounding's results encoded as one finite number per element: the angle of
    (r, -1) tells the value and the sign of a zero; whether r equals x catches a lost
    infinity or large value; NaN is counted apart."""
    def encode(r, x):
        nan = r != r
        angle = m.where(nan, 0.0, m.arctan2(r, -1.0))
        return angle + 2.0 * (r == x).astype(np.float64) + 4.0 * nan.astype(np.float64)

    def rounding(x, w):
        return ((encode(m.floor(x), x) + 8 * encode(m.ceil(x), x) + 64 * encode(m.round(x), x))
                * w).sum()
    return rounding


EDGES = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999999999999994, -0.3, 0.3, -0.0, 0.0,
                  -3.7, 3.7, 2.0 ** 60 + 2.0 ** 8, -(2.0 ** 53) - 2, 1e300, np.inf, -np.inf, np.nan])


def test_rounding_edge_values_in_a_kernel():
    """Halves round to even, zeros keep their sign (np.ceil(-0.3) is -0.0), and
    infinities, NaN and values too large to have a fraction pass through, as in NumPy;
    the gradient is zero."""
    w = np.random.default_rng(5).uniform(1, 2, EDGES.shape)
    value, (gx, gw) = fg.compile_grad(rounding_source(fg))(EDGES, w)
    expected = rounding_source(types.SimpleNamespace(
        floor=np.floor, ceil=np.ceil, round=np.round, where=np.where, arctan2=np.arctan2))(EDGES, w)
    np.testing.assert_allclose(value, expected, rtol=1e-14)
    np.testing.assert_array_equal(gx, np.zeros_like(EDGES))


# ---------------------------------------------------------------- eager spellings

UNARY = {  # name: (NumPy function, grad_fn, input)
    "log1p": (np.log1p, "Log1PBackward0", "positive"),
    "expm1": (np.expm1, "Expm1Backward0", "real"),
    "square": (np.square, "PowBackward0", "real"),
    "rsqrt": (lambda x: 1 / np.sqrt(x), "RsqrtBackward0", "positive"),
    "tan": (np.tan, "TanBackward0", "unit"),
    "arctan": (np.arctan, "AtanBackward0", "real"),
    "atan": (np.arctan, "AtanBackward0", "real"),
    "sinh": (np.sinh, "SinhBackward0", "real"),
    "cosh": (np.cosh, "CoshBackward0", "real"),
    "arcsin": (np.arcsin, "AsinBackward0", "unit"),
    "asin": (np.arcsin, "AsinBackward0", "unit"),
    "arccos": (np.arccos, "AcosBackward0", "unit"),
    "acos": (np.arccos, "AcosBackward0", "unit"),
    "log2": (np.log2, "Log2Backward0", "positive"),
    "log10": (np.log10, "Log10Backward0", "positive"),
    "exp2": (np.exp2, "Exp2Backward0", "real"),
    "floor": (np.floor, "FloorBackward0", "real"),
    "ceil": (np.ceil, "CeilBackward0", "real"),
    "round": (np.round, "RoundBackward0", "real"),
    "softplus": (lambda x: np.logaddexp(0, x), "SoftplusBackward0", "real"),
}
EAGER_INPUTS = {"real": [-1.7, -0.5, 0.3, 2.5], "positive": [0.3, 0.5, 1.5, 2.5],
                "unit": [-0.8, -0.5, 0.3, 0.7]}


@pytest.mark.parametrize("name", list(UNARY))
def test_eager_unary_function_and_method(name):
    reference, grad_fn, domain = UNARY[name]
    data = np.array(EAGER_INPUTS[domain])
    x = fg.tensor(data, dtype=fg.float64, requires_grad=True)
    for y in (getattr(fg, name)(x), getattr(x, name)()):
        assert type(y.grad_fn).__name__ == grad_fn
        np.testing.assert_allclose(y.detach().numpy(), reference(data), rtol=1e-14)
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", ["arctan2", "atan2", "hypot"])
def test_eager_binary_function_and_method(name):
    a = fg.tensor([1.0, -2.0, 0.5], dtype=fg.float64, requires_grad=True)
    b = fg.tensor([0.5, 1.5, -3.0], dtype=fg.float64, requires_grad=True)
    reference = np.hypot if name == "hypot" else np.arctan2
    for y in (getattr(fg, name)(a, b), getattr(a, name)(b)):
        assert type(y.grad_fn).__name__ == ("HypotBackward0" if name == "hypot" else "Atan2Backward0")
        np.testing.assert_allclose(y.detach().numpy(), reference(a.detach().numpy(),
                                                                b.detach().numpy()), rtol=1e-14)
    y.sum().backward()
    radius2 = a.detach().numpy() ** 2 + b.detach().numpy() ** 2
    if name == "hypot":
        np.testing.assert_allclose(a.grad.numpy(), a.detach().numpy() / np.sqrt(radius2))
    else:
        np.testing.assert_allclose(b.grad.numpy(), -a.detach().numpy() / radius2)


def test_clip_spellings_share_clamps_gradient_at_the_bounds():
    data = [0.6, -0.7, 0.0, 1.0, -2.0]
    outputs = []
    for spell in (lambda x: fg.clip(x, -0.7, 0.6), lambda x: x.clip(-0.7, 0.6),
                  lambda x: fg.clamp(x, min=-0.7, max=0.6), lambda x: x.clamp(-0.7, 0.6)):
        x = fg.tensor(data, requires_grad=True)
        y = spell(x)
        assert type(y.grad_fn).__name__ == "ClampBackward1"
        y.sum().backward()
        outputs.append((y.tolist(), x.grad.tolist()))
    assert outputs == [([pytest.approx(v) for v in [0.6, -0.7, 0.0, 0.6, -0.7]],
                        [1.0, 1.0, 1.0, 0.0, 0.0])] * 4
    assert fg.clip(fg.tensor([-1.0, 3.0]), None, 2.0).tolist() == [-1.0, 2.0]


def test_clip_with_tensor_bounds_differentiates_the_bounds():
    x = fg.tensor([0.0, 1.0, 2.0], requires_grad=True)
    low = fg.tensor([0.5, 0.5, 0.5], requires_grad=True)
    high = fg.tensor([1.5, 1.5, 1.5], requires_grad=True)
    y = x.clip(low, high)
    assert type(y.grad_fn).__name__ == "ClampBackward0"   # PyTorch's clamp.Tensor overload
    y.sum().backward()
    assert y.tolist() == [0.5, 1.0, 1.5]
    assert x.grad.tolist() == [0.0, 1.0, 0.0]
    assert low.grad.tolist() == [1.0, 0.0, 0.0] and high.grad.tolist() == [0.0, 0.0, 1.0]
