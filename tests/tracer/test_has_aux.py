"""compile_grad(has_aux=True): ((value, aux), grads), aux computed by the same graph."""
from typing import NamedTuple

import numpy as np
import pytest

import fusegrad as fg


class Stats(NamedTuple):
    probs: object
    top: object


def _classifier(w, x, labels_onehot):
    logits = x @ w
    p = fg.softmax(logits, axis=1)
    loss = -(labels_onehot * fg.log(p)).sum() / x.shape[0]
    # arrays, an integer array, a NamedTuple, a number and an input passed back
    return loss, {"stats": Stats(p, fg.argmax(logits, axis=1)), "max": fg.max(p),
                  "n": 3, "w": w}


CLASSIFIER = fg.compile_grad(_classifier, wrt=0, has_aux=True)
CLASSIFIER_UNFUSED = fg.compile_grad(_classifier, wrt=0, has_aux=True, fuse=False)


def _data(dtype):
    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=(5, 3)).astype(dtype)
    labels = np.eye(4, dtype=dtype)[[0, 2, 1, 3, 3]]
    return w, x, labels


def _reference(w, x, labels):
    logits = x @ w
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    loss = -(labels * np.log(p)).sum() / x.shape[0]
    return loss, p, logits.argmax(1), x.T @ (p - labels) / x.shape[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_aux_pytree_comes_back_beside_value_and_gradient(dtype):
    w, x, labels = _data(dtype)
    (value, aux), gw = CLASSIFIER(w, x, labels)
    loss, p, top, grad = _reference(w.astype(np.float64), x.astype(np.float64), labels)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(value, loss, **tol)
    np.testing.assert_allclose(gw, grad, **tol)
    assert set(aux) == {"stats", "max", "n", "w"} and isinstance(aux["stats"], Stats)
    np.testing.assert_allclose(aux["stats"].probs, p, **tol)
    assert aux["stats"].probs.dtype == dtype and aux["stats"].top.dtype == np.int64
    np.testing.assert_array_equal(aux["stats"].top, top)
    np.testing.assert_allclose(aux["max"], p.max(), **tol)
    assert aux["n"] == 3
    np.testing.assert_array_equal(aux["w"], w)
    assert aux["w"] is not w   # an input handed back is a copy, never the caller's array
    if dtype == np.float64:
        (v2, aux2), g2 = CLASSIFIER_UNFUSED(w, x, labels)
        np.testing.assert_allclose(v2, value, rtol=1e-12)
        np.testing.assert_allclose(g2, gw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(aux2["stats"].probs, aux["stats"].probs, rtol=1e-12)


def test_aux_values_are_outputs_of_the_same_kernels():
    # tanh(x) feeds both the loss and the aux: one fused graph, no extra kernel.
    def loss(x):
        y = fg.tanh(x)
        return (y * y).sum(), y
    x = np.linspace(-1, 1, 6)
    with_aux = fg.compile_grad(loss, has_aux=True).trace(x)
    without = fg.compile_grad(lambda x: loss(x)[0]).trace(x)
    assert with_aux.executable.kernel_count == without.executable.kernel_count
    assert len(with_aux.joint.outputs) == len(without.joint.outputs) + 1
    assert len(with_aux.forward.outputs) == 2


def test_dump_and_repr():
    w, x, labels = _data(np.float64)
    text = CLASSIFIER.dump(w, x, labels)
    assert "forward IR of _classifier" in text and "# backward" in text
    assert "has_aux=True" in repr(CLASSIFIER)


def test_a_result_that_is_not_a_pair_is_a_clear_error():
    x = np.ones(3)
    with pytest.raises(fg.TraceError, match=r"must return a pair \(loss, aux\) with has_aux=True, "
                                            r"got a Tensor"):
        fg.compile_grad(lambda x: x.sum(), has_aux=True)(x)
    with pytest.raises(fg.TraceError, match="got a tuple of length 3"):
        fg.compile_grad(lambda x: (x.sum(), x, x), has_aux=True)(x)
    with pytest.raises(fg.ShapeError, match="must return a scalar"):
        fg.compile_grad(lambda x: (x * 2, x), has_aux=True)(x)


def test_aux_with_pytree_arguments_and_an_eager_tensor():
    @fg.compile_grad(has_aux=True)
    def loss(params, x):
        h = x @ params["w"] + params["b"]
        return (h ** 2).mean(), [h, fg.tensor([1.0, 2.0])]
    params = {"w": np.ones((2, 3)), "b": np.zeros(3)}
    x = np.arange(4.0).reshape(2, 2)
    (value, (h, const)), (gp, gx) = loss(params, x)
    np.testing.assert_allclose(h, x @ params["w"])
    np.testing.assert_allclose(value, (h ** 2).mean())
    np.testing.assert_allclose(gp["b"], (2 * h / h.size).sum(0))
    np.testing.assert_array_equal(const, [1.0, 2.0])
