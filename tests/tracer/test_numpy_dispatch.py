"""NumPy's functions applied to Tensors (issue 11, item 8): `np.exp(t)`, `np.sum(t, axis=1)`,
`ndarray + t` run as fusegrad's functions, traced (one compiled function holds them all;
value and gradients against HIPS autograd running the same source) and eager; what
fusegrad lacks is refused by name where NumPy cannot run it on data.
"""
from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg
from fusegrad.tracer.numpy_dispatch import NumpyFunctionError

RNG = np.random.default_rng(11)
X = RNG.standard_normal((3, 4))
W = RNG.standard_normal((4, 2))
MASK = RNG.standard_normal((3, 4)) > 0


def program(m):
    """NumPy's spellings only; `m` is numpy (traced by fusegrad) or autograd.numpy."""
    def loss(x, w):
        h = m.tanh(m.matmul(x, w)) + m.dot(x, w)                      # (3, 2)
        pos = m.maximum(x, 0.0) + m.clip(x, -0.5, 0.5) + m.where(MASK, x, 0.0)
        smooth = m.sqrt(m.exp(x) + 1.0) + m.log1p(m.multiply(x, x)) + m.floor(2.0 * x)
        keep = m.logical_and(m.equal(MASK, True), x > -1.0)
        rows = m.sum(m.where(keep, pos, smooth), axis=1, keepdims=True)  # (3, 1)
        cols = m.mean(m.transpose(h), axis=0)                           # (3,)
        flat = m.reshape(m.add(rows, 1.0), (3,))
        return m.sum(m.square(flat * cols)) + m.max(m.abs(x)) + m.var(h, axis=0).sum()
    return loss


@pytest.mark.filterwarnings("ignore:Output seems independent of input")
def test_numpy_functions_trace_and_differentiate():
    value, grads = fg.compile_grad(program(np))(X, W)
    reference = program(anp)
    np.testing.assert_allclose(value, reference(X, W), rtol=1e-12)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, autograd.grad(reference, i)(X, W), rtol=1e-10, atol=1e-12)


def _autograd_flip(a, axis=None):
    # autograd has no VJP for np.flip: the same reversal as a slice.
    return a[tuple(slice(None, None, -1) if axis is None or i == axis % a.ndim else slice(None)
                   for i in range(a.ndim))]


def layout_program(m):
    """NumPy's layout functions, NumPy's signatures and defaults (concatenate's
    axis=None flattens, split by sections and by indices, squeeze by axis)."""
    flip = m.flip if m is np else _autograd_flip
    flat_cat = (lambda xs: m.concatenate(xs, axis=None)) if m is np else (   # autograd: axis= only
        lambda xs: anp.concatenate([anp.ravel(a) for a in xs]))
    def loss(x, w):
        parts = m.split(x, 2, axis=1) + m.split(x, [1], axis=0)
        joined = m.concatenate([parts[0], flip(parts[1], 1)], axis=0)            # (6, 2)
        stacked = m.stack((joined, m.tile(w[:2], (3, 1))), axis=-1)                # (6, 2, 2)
        flat = flat_cat([x, w])                                                    # (20,)
        padded = m.pad(m.repeat(w, 2, axis=0), ((1, 0), (0, 2)), "constant", constant_values=0.5)
        column = m.squeeze(m.expand_dims(parts[2], 0), 0)                          # (2, 4)
        return (m.sum(stacked * stacked) + m.sum(m.sin(flat)) + m.sum(padded * padded)
                + m.sum(column * flip(column)) + m.sum(m.repeat(x, 2) * 0.5)
                + m.sum(x * m.ones_like(x) * m.full_like(x, 2.0) + m.zeros_like(x)))
    return loss


def test_numpy_layout_functions_trace_and_differentiate():
    value, grads = fg.compile_grad(layout_program(np))(X, W)
    reference = layout_program(anp)
    np.testing.assert_allclose(value, reference(X, W), rtol=1e-12)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, autograd.grad(reference, i)(X, W), rtol=1e-10, atol=1e-12)
    with pytest.raises(fg.ShapeError, match="only an axis of size 1"):
        fg.compile_grad(lambda x: np.squeeze(x, 0).sum())(X)


def test_numpy_functions_on_eager_tensors_record_gradients():
    x = fg.tensor(X, requires_grad=True)
    w = fg.tensor(W, requires_grad=True)
    out = program(np)(x, w)
    assert isinstance(out, fg.Tensor)
    out.backward()
    reference = program(anp)
    np.testing.assert_allclose(out.item(), reference(X, W), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), autograd.grad(reference, 0)(X, W), rtol=1e-10)
    np.testing.assert_allclose(w.grad.numpy(), autograd.grad(reference, 1)(X, W), rtol=1e-10)


def test_ndarray_operators_with_a_tensor_give_tensors():
    t = fg.tensor(X)
    for result, expected in [(X + t, X + X), (X * t, X * X), (X - t, 0 * X), (X / t, X / X),
                             (X == t, X == X), (X > t, X > X), (W.T @ fg.tensor(X.T), W.T @ X.T),
                             (np.add(1.0, t), 1.0 + X), (np.less(t, 0), X < 0)]:
        assert isinstance(result, fg.Tensor)
        np.testing.assert_array_equal(result.numpy(), expected)


def test_plain_eager_tensors_still_convert_and_fall_back_to_numpy():
    t = fg.tensor(X)
    assert np.asarray(t) is t.numpy()
    assert np.allclose(t, X)
    np.testing.assert_allclose(np.fft.fft(t), np.fft.fft(X))   # fusegrad has no fft: NumPy runs it
    assert np.shape(t) == (3, 4) and np.ndim(t) == 2 and np.size(t) == 12


@pytest.mark.parametrize("call, names", [
    (lambda x: np.fft.fft(x), ("numpy.fft.fft", "fusegrad has no fft")),
    (lambda x: np.linalg.svd(x), ("numpy.linalg.svd", "fusegrad has no svd")),
    (lambda x: np.median(x), ("numpy.median", "fusegrad has no median")),
    (lambda x: np.exp(x, out=np.empty((3, 4))), ("numpy.exp", "out")),
    (lambda x: np.sum(x, dtype=np.float32), ("numpy.sum", "dtype")),
    (lambda x: np.add.reduce(x), ("numpy.add.reduce",)),
])
def test_what_fusegrad_lacks_is_refused_by_name(call, names):
    def loss(x):
        return fg.sum(call(x))
    for run in (lambda: fg.compile_grad(loss)(X),
                lambda: call(fg.tensor(X, requires_grad=True))):
        with pytest.raises(fg.FusegradError) as info:
            run()
        # a missing function is a TypeError (as NumPy's); a refused argument, fusegrad's
        # NotImplementedError for spellings it does not support (out=)
        expected = fg.UnsupportedError if len(names) == 2 and names[1] in ("out", "dtype") \
            else NumpyFunctionError
        assert type(info.value) is expected
        for name in names:
            assert name in str(info.value)


def test_refusal_suggests_the_fusegrad_function(monkeypatch):
    # Were NumPy's squeeze not dispatched, the error would name fg.squeeze.
    from fusegrad.tracer import numpy_dispatch
    monkeypatch.delitem(numpy_dispatch.FUNCTIONS, np.squeeze)
    with pytest.raises(NumpyFunctionError, match=r"numpy\.squeeze .*use fg\.squeeze"):
        fg.compile_grad(lambda x: fg.sum(np.squeeze(x)))(X)
