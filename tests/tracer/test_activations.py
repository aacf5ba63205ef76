"""erf, erfc, gelu and log_softmax (issue 11, item 6): compiled fused and unfused, in
float32 and float64, against HIPS autograd (with a hand-written erf, since autograd's
needs SciPy), the NumPy interpreter and central differences; PyTorch's formulas and
gradients; stability; the eager spellings.
"""
from __future__ import annotations

import math
import types

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.extend import defvjp, primitive

import fusegrad as fg

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
SQRT_2PI = math.sqrt(2 * math.pi)


@primitive
def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


defvjp(_erf, lambda y, x: lambda g: g * 2 / math.sqrt(math.pi) * anp.exp(-x * x))


def _log_softmax(x, axis):
    shifted = x - anp.max(x, axis=axis, keepdims=True)
    return shifted - anp.log(anp.sum(anp.exp(shifted), axis=axis, keepdims=True))


def _gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + anp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


AUTOGRAD = types.SimpleNamespace(erf=_erf, erfc=lambda x: 1 - _erf(x), gelu=_gelu,
                                 log_softmax=lambda x, axis=-1: _log_softmax(x, axis))
WEIGHTS = np.random.default_rng(4).standard_normal((3, 5))


def activations_source(m, weights):
    """Every new op in one loss, so that they compile together into fused kernels."""
    def activations(x, y):
        terms = (m.erf(x) * y + 0.5 * m.erfc(y) + m.gelu(x * y) + m.gelu(3 * x, approximate="tanh")
                 + m.log_softmax(x + y, axis=1) * y - m.log_softmax(2 * x, axis=0))
        return (terms * weights).sum()
    return activations


COMPILED = {dtype: fg.compile_grad(activations_source(fg, WEIGHTS.astype(dtype)))
            for dtype in (F32, F64)}


def few_source(x, y):  # erf (in gelu) and log_softmax, unfused: a kernel per primitive
    return (fg.gelu(x * y) + fg.log_softmax(x, dim=0) * y).sum()


FEW_FUSED, FEW_UNFUSED = fg.compile_grad(few_source), fg.compile_grad(few_source, fuse=False)


def activations_inputs(dtype):
    rng = np.random.default_rng(8)
    x, y = rng.uniform(-2.5, 2.5, (2, 3, 5))  # both sides of erf's switch at |x| = 1
    return x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_fused_match_autograd_and_the_interpreter(dtype, interpret, assert_all_close, flatten):
    args = activations_inputs(dtype)
    results = flatten(COMPILED[dtype](*args))
    assert [r.dtype for r in results] == [dtype] * 3
    assert_all_close(results, interpret(COMPILED[dtype], *args), dtype, what="vs interpreter")
    reference = activations_source(AUTOGRAD, WEIGHTS.astype(dtype).astype(F64))
    args64 = [a.astype(F64) for a in args]
    expected = [np.asarray(reference(*args64))]
    expected += [autograd.grad(reference, i)(*args64) for i in range(2)]
    assert_all_close(results, expected, dtype, what="vs autograd")


def test_fused_equals_unfused(flatten, assert_all_close):
    args = activations_inputs(F32)
    assert_all_close(flatten(FEW_FUSED(*args)), flatten(FEW_UNFUSED(*args)), F32,
                     what="fused vs unfused")


def test_gradients_match_central_differences():
    assert fg.gradcheck(COMPILED[F64], *activations_inputs(F64))


# ---------------------------------------------------------------- PyTorch's formulas

EDGES = np.array([-np.inf, -40.0, -5.0, -3.9, -1.0, -0.5, -1e-30, -0.0, 0.0, 1e-30, 0.7, 1.0,
                  3.0, 4.5, 40.0, np.inf, np.nan])


def _per_element(function, x):
    return np.array([function(v) for v in x.astype(F64)]).astype(x.dtype)


def _assert_near(got, expected, x, dtype):
    """Within 4 ulps of the result or of the input: 1 + erf and 1 + tanh cancel for
    negative x, where every implementation's error is a few ulps of 1 (times x)."""
    got, expected = got.astype(F64), expected.astype(F64)
    eps = np.finfo(dtype).eps
    same = (got == expected) | (np.isnan(got) & np.isnan(expected))
    with np.errstate(invalid="ignore"):
        near = np.abs(got - expected) <= 4 * eps * (np.abs(expected) + np.abs(x.astype(F64)))
    assert (same | near).all(), (x[~(same | near)], got[~(same | near)], expected[~(same | near)])


def edges_source(x, w):
    """The gradient with respect to w is the four functions' values at x, from the
    kernels (w is ones): compile_grad's way to return an array."""
    values = fg.stack([fg.erf(x), fg.erfc(x), fg.gelu(x), fg.gelu(x, approximate="tanh")])
    return (values * w).sum()


EDGES_COMPILED = fg.compile_grad(edges_source, wrt=1)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_values_at_the_edges_as_math_and_pytorch(dtype):
    """erf and erfc as math's (float32: the vectorized kernel), and both GELUs as
    PyTorch's kernels compute them, operation for operation in the dtype: infinities,
    NaN (gelu(-inf) is -inf * 0) and the sign of zero included; in a compiled kernel
    and eagerly (where the interpreter's libm ufunc runs)."""
    x = EDGES.astype(dtype)
    _, compiled = EDGES_COMPILED(x, np.ones((4,) + x.shape, dtype))
    t = fg.tensor(x)
    eager = np.stack([v.numpy() for v in (fg.erf(t), fg.erfc(t), fg.gelu(t),
                                          fg.gelu(t, approximate="tanh"))])
    with np.errstate(all="ignore"):
        scaled_erf = _per_element(math.erf, x * dtype.type(math.sqrt(0.5)))
        torch_gelu = x * dtype.type(0.5) * (1 + scaled_erf)
        inner = dtype.type(math.sqrt(2 / math.pi)) * (x + dtype.type(0.044715) * (x * x * x))
        torch_tanh = dtype.type(0.5) * x * (1 + np.tanh(inner))
    for erf, erfc, gelu, gelu_tanh in (compiled, eager):
        assert {a.dtype for a in (erf, erfc, gelu, gelu_tanh)} == {dtype}
        np.testing.assert_allclose(erf, _per_element(math.erf, x), rtol=np.finfo(dtype).eps,
                                   atol=0)
        np.testing.assert_allclose(erfc, _per_element(math.erfc, x), rtol=np.finfo(dtype).eps,
                                   atol=0)
        _assert_near(gelu, torch_gelu, x, dtype)
        _assert_near(gelu_tanh, torch_tanh, x, dtype)
    # (a cotangent of stack is a sum with zeros, which loses the sign of a zero result)
    np.testing.assert_array_equal(np.signbit(eager[0, 6:10]), [True, True, False, False])


def test_gradients_are_pytorchs_backward_formulas():
    """GeluBackward0's two formulas (aten's GeluKernel), ErfBackward0's, in float64."""
    data = np.array([-6.0, -2.0, -0.5, 0.0, 0.3, 1.0, 2.5, 6.0])
    x = fg.tensor(data, dtype=fg.float64, requires_grad=True)
    erf_data = np.array([math.erf(v) for v in data / math.sqrt(2)])
    cdf, pdf = 0.5 * (1 + erf_data), np.exp(-0.5 * data * data) / SQRT_2PI
    beta, kappa = math.sqrt(2) * (2 / math.sqrt(math.pi)) * 0.5, 0.044715
    tanh_inner = np.tanh(beta * (data + kappa * data ** 3))
    tanh_grad = (0.5 * (1 + tanh_inner)
                 + 0.5 * data * (1 - tanh_inner ** 2) * beta * (1 + 3 * kappa * data * data))
    for spell, expected, grad_fn in [
            (lambda x: fg.gelu(x), cdf + data * pdf, "GeluBackward0"),
            (lambda x: fg.gelu(x, approximate="tanh"), tanh_grad, "GeluBackward0"),
            (lambda x: x.erf(), 2 / math.sqrt(math.pi) * np.exp(-data * data), "ErfBackward0"),
            (lambda x: fg.erfc(x), -2 / math.sqrt(math.pi) * np.exp(-data * data), "ErfcBackward0")]:
        x.grad = None
        y = spell(x)
        assert type(y.grad_fn).__name__ == grad_fn
        y.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-13, atol=1e-300)


def test_gelu_refuses_an_unknown_approximation():
    with pytest.raises(fg.UnsupportedError, match=r"gelu: approximate='erf'.*'none'.*'tanh'"):
        fg.gelu(fg.tensor([1.0]), approximate="erf")
    with pytest.raises(NotImplementedError, match="approximate=None"):
        fg.compile_grad(lambda x: fg.gelu(x, approximate=None).sum())(np.ones(2))


# ---------------------------------------------------------------- log_softmax

def test_log_softmax_is_stable_where_log_of_softmax_is_not():
    """exp(x - max) cannot overflow, and a probability that rounds to 0 keeps its log:
    log_softmax([1000, 0, -1000]) is [0, -1000, -2000], log(softmax) would be -inf.
    The gradient of sum(w * log_softmax(x)) is w - softmax(x) sum(w)."""
    x = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]], np.float32)
    w = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], np.float32)
    value, (gx,) = fg.compile_grad(lambda x: (fg.log_softmax(x, dim=1) * w).sum())(x)
    rows = fg.log_softmax(fg.tensor(x), dim=1).numpy()
    np.testing.assert_allclose(rows, [[0, -1000, -2000], [-math.log(3)] * 3], rtol=1e-6)
    assert value == pytest.approx(-(2000 + 6000) - 3.5 * math.log(3), rel=1e-6)
    np.testing.assert_allclose(gx, [[1 - 6, 2, 3], w[1] - 3.5 / 3], rtol=1e-6)


def test_log_softmax_and_softmax_spellings():
    data = np.random.default_rng(9).standard_normal((3, 4))
    expected = data - np.log(np.exp(data).sum(axis=0, keepdims=True))
    outputs = []
    for spell in (lambda x: fg.log_softmax(x, 0), lambda x: fg.log_softmax(x, dim=0),
                  lambda x: fg.log_softmax(x, axis=-2), lambda x: x.log_softmax(0),
                  lambda x: x.log_softmax(dim=0)):
        x = fg.tensor(data, requires_grad=True)
        y = spell(x)
        assert type(y.grad_fn).__name__ == "LogSoftmaxBackward0"
        (y * fg.tensor(data)).sum().backward()
        outputs.append((y.detach().numpy(), x.grad.numpy()))
    for y, grad in outputs:
        np.testing.assert_allclose(y, expected, rtol=1e-13)
        np.testing.assert_allclose(grad, outputs[0][1], rtol=1e-13)
    softmax = fg.tensor(data).softmax(dim=0).numpy()
    np.testing.assert_allclose(softmax, np.exp(expected), rtol=1e-13)
    everything = fg.log_softmax(fg.tensor(data), axis=None).numpy()  # all axes, as JAX
    np.testing.assert_allclose(everything, data - np.log(np.exp(data).sum()), rtol=1e-13)


def test_log_softmax_edges():
    assert fg.log_softmax(fg.tensor(np.zeros((2, 0))), dim=-1).shape == (2, 0)
    assert fg.log_softmax(fg.tensor(3.0), dim=0).item() == 0.0
    assert fg.log_softmax(fg.tensor([1, 2, 3])).dtype == fg.float32  # integers become floats
    nan = fg.log_softmax(fg.tensor([1.0, np.nan, 0.0])).numpy()
    assert np.isnan(nan).all()  # as PyTorch: a NaN spreads through the row's sum
    with pytest.raises(fg.ShapeError, match=r"log_softmax: axis 2 is out of range.*f32\[3\]"):
        fg.log_softmax(fg.tensor([1.0, 2.0, 3.0]), 2)


def test_public_spellings():
    for name in ("erf", "erfc", "gelu", "log_softmax", "softmax"):
        assert callable(getattr(fg, name))
    for method in ("erf", "erfc", "log_softmax", "softmax"):
        assert callable(getattr(fg.Tensor, method))


def test_compiling_them_in_a_threaded_kernel_warns_nothing(tmp_path, monkeypatch, recwarn):
    """erf is inlined into the kernel (too big for LLVM's inliner): it must leave
    Numba nothing to warn about in a parallel loop, as sin and cos do."""
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))  # compile, do not load
    f = fg.compile_grad(lambda x: (fg.erf(x) + fg.log1p(x * x) + fg.expm1(-x)).sum())
    x = np.linspace(-3, 3, 1 << 16, dtype=np.float32)  # big enough for the threaded kernel
    value, (gx,) = f(x)
    assert [str(w.message) for w in recwarn] == []
    expected = sum(math.erf(v) + math.log1p(v * v) + math.expm1(-v) for v in x.astype(F64))
    assert value == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(gx, 2 / math.sqrt(math.pi) * np.exp(-x.astype(F64) ** 2)
                               + 2 * x / (1 + x.astype(F64) ** 2) - np.exp(-x.astype(F64)),
                               rtol=1e-5, atol=1e-6)
