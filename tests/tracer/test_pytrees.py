"""Pytree arguments of `compile_grad`: nested dicts, lists, tuples and
NamedTuples of arrays are traced leaf by leaf, their gradients come back in the same
structure, and the cache key is the structure plus the leaves' shapes and dtypes,
never a `repr`. Also wrt= by name and keyword arguments at call time.

Few graphs are compiled: most tests share `linear`, whose kernels compile once.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

import fusegrad as fg

RNG = np.random.default_rng(0)
X = RNG.standard_normal((5, 3))
W = RNG.standard_normal(3)
B = np.array(0.5)


def linear_loss(params, x):
    return ((x @ params["w"] + params["b"]) ** 2).mean()


def linear_grads(w, b, x):
    """Value and gradients of linear_loss, by hand."""
    r = x @ w + b
    n = r.size
    return (r ** 2).mean(), 2 * x.T @ r / n, 2 * r.sum() / n, 2 * np.outer(r, w) / n


def test_dict_argument_gets_its_gradients_as_a_dict():
    # The dict was a constant of the trace: no gradient for w or b at all.
    value, (g_params, gx) = fg.compile_grad(linear_loss)({"w": W, "b": B}, X)
    expected, gw, gb, gx_expected = linear_grads(W, B, X)
    assert isinstance(g_params, dict) and list(g_params) == ["w", "b"]
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    np.testing.assert_allclose(g_params["w"], gw, rtol=1e-12)
    np.testing.assert_allclose(g_params["b"], gb, rtol=1e-12)
    assert g_params["b"].shape == ()
    np.testing.assert_allclose(gx, gx_expected, rtol=1e-12)


def test_a_changed_large_array_in_a_dict_is_not_a_cached_constant():
    # NumPy shortens the repr of arrays over 1,000 elements, and the repr was the
    # cache key: a changed w silently reused the trace that had the old w inside.
    traces = []

    def loss(params, x):
        traces.append(1)
        return (x * params["w"]).sum()

    f = fg.compile_grad(loss, wrt=1)
    x = np.linspace(-1.0, 1.0, 2000)
    w = np.ones(2000)
    assert f({"w": w}, x)[0] == pytest.approx(x.sum())
    w2 = w.copy()
    w2[1000] = 5.0   # the same shortened repr as w
    assert repr({"w": w2}) == repr({"w": w})
    value, gx = f({"w": w2}, x)
    assert value == pytest.approx((x * w2).sum())
    np.testing.assert_array_equal(gx, w2)
    assert len(traces) == 1   # same structure, shapes and dtypes: the same trace


class Layer(NamedTuple):
    w: np.ndarray
    b: np.ndarray


def test_nested_structures_namedtuples_and_leaves_without_gradients():
    def loss(layers, data):
        h = data["x"]
        for layer in layers:
            h = fg.tanh(h @ layer.w + layer.b)
        weights = data["weights"] * data["mask"]      # an integer array: no gradient
        return (h.sum(1) * weights).sum() * data["scale"]

    layers = [Layer(RNG.standard_normal((3, 4)), np.zeros(4)),
              Layer(RNG.standard_normal((4, 2)), np.full(2, 0.1))]
    data = {"x": X, "weights": [1.0, 2.0, 0.5, 1.0, 3.0], "mask": np.array([1, 1, 0, 1, 1]),
            "scale": 2.0}
    value, (g_layers, g_data) = fg.compile_grad(loss)(layers, data)

    assert isinstance(g_layers, list) and all(type(g) is Layer for g in g_layers)
    assert list(g_data) == ["x", "weights", "mask", "scale"]
    assert g_data["mask"] is None and g_data["scale"] is None
    assert g_data["weights"].shape == (5,)  # a list of numbers is an array, as in NumPy
    h1 = np.tanh(X @ layers[0].w + layers[0].b)
    h2 = np.tanh(h1 @ layers[1].w + layers[1].b)
    weights = np.array(data["weights"]) * data["mask"]
    np.testing.assert_allclose(value, (h2.sum(1) * weights).sum() * 2.0, rtol=1e-12)
    np.testing.assert_allclose(g_data["weights"], h2.sum(1) * data["mask"] * 2.0, rtol=1e-12)
    d2 = (1 - h2 ** 2) * (weights * 2.0)[:, None]
    np.testing.assert_allclose(g_layers[1].b, d2.sum(0), rtol=1e-12)
    np.testing.assert_allclose(g_layers[1].w, h1.T @ d2, rtol=1e-12)
    assert fg.gradcheck(loss, layers, data)


def test_cache_key_is_structure_shapes_dtypes_and_constants():
    traces = []

    def loss(params, x):
        traces.append(1)
        return ((x @ params["w"] + params["b"]) * params.get("scale", 1.0)).sum()

    f = fg.compile_grad(loss)
    f({"w": W, "b": B}, X)
    f({"w": W + 1, "b": np.array(-1.0)}, X)             # new values: same trace
    assert len(traces) == 1
    f({"b": B, "w": W}, X)                              # another key order: its own trace
    f({"w": W, "b": B, "scale": 2.0}, X)                # another structure
    f({"w": W, "b": B, "scale": 3.0}, X)                # another constant
    f({"w": W.astype(np.float32), "b": B}, X)           # another dtype
    f({"w": W, "b": np.zeros(5)}, X)                    # another shape
    assert len(traces) == 6
    value, (g, _) = f({"w": W, "b": B, "scale": 3.0}, X)
    assert len(traces) == 6 and g["scale"] is None
    np.testing.assert_allclose(value, 3.0 * (X @ W + B).sum(), rtol=1e-12)


def test_wrt_by_position_and_by_name():
    params = {"w": W, "b": B}
    _, g = fg.compile_grad(linear_loss, wrt=0)(params, X)
    assert isinstance(g, dict) and set(g) == {"w", "b"}
    _, g = fg.compile_grad(linear_loss, wrt="params")(params, X)
    assert isinstance(g, dict)
    _, grads = fg.compile_grad(linear_loss, wrt=("x", "params"))(params, X)
    assert isinstance(grads, tuple) and grads[0].shape == X.shape and isinstance(grads[1], dict)
    with pytest.raises(fg.FusegradError, match="no argument named 'weights'.*params, x"):
        fg.compile_grad(linear_loss, wrt="weights")(params, X)


def test_wrt_none_skips_arguments_without_floating_arrays():
    def loss(params, x, counts):
        return (x @ params["w"] * counts["n"]).sum()
    value, grads = fg.compile_grad(loss)({"w": W}, X, {"n": np.arange(5)})
    assert len(grads) == 2
    np.testing.assert_allclose(grads[0]["w"], X.T @ np.arange(5.0), rtol=1e-12)
    with pytest.raises(fg.DTypeError, match=r"argument 2 \(counts\), an array of int64"):
        fg.compile_grad(loss, wrt=2)({"w": W}, X, {"n": np.arange(5)})


def test_keyword_arguments_at_call_time_share_the_trace():
    traces = []

    def loss(params, x, *, scale=1.0, shift=None):
        traces.append(1)
        out = linear_loss(params, x) * scale
        return out if shift is None else out + (shift ** 2).sum()

    f = fg.compile_grad(loss)
    params = {"w": W, "b": B}
    positional = f(params, X)
    by_name = f(params, x=X)
    reordered = f(x=X, params=params)
    assert len(traces) == 1
    for result in (by_name, reordered):
        np.testing.assert_array_equal(result[0], positional[0])
        np.testing.assert_array_equal(result[1][1], positional[1][1])
    # A keyword-only array is an argument like the others, in call order.
    value, (g_params, gx, g_shift) = f(params, X, scale=2.0, shift=np.array([1.0, -2.0]))
    np.testing.assert_allclose(value, 2 * positional[0] + 5.0, rtol=1e-12)
    np.testing.assert_allclose(g_shift, [2.0, -4.0], rtol=1e-12)
    _, g = fg.compile_grad(loss, wrt="shift")(params, X, shift=np.array([3.0]))
    np.testing.assert_allclose(g, [6.0], rtol=1e-12)
    with pytest.raises(TypeError, match="unexpected keyword argument 'y'"):
        f(params, X, y=1)


def test_unhashable_constants_are_refused_naming_the_argument():
    # A set is neither an array nor a pytree: keyed by its repr, it could have
    # silently reused a trace.
    with pytest.raises(TypeError, match=r"argument 0 \(params\['options'\]\) is a set") as caught:
        fg.compile_grad(linear_loss)({"w": W, "b": B, "options": {1, 2}}, X)
    assert isinstance(caught.value, fg.FusegradError)


def test_leaf_names_in_the_dump_are_identifiers():
    dump = fg.compile_grad(linear_loss).dump({"w": W, "b": B}, X)
    assert "params_w:f64[3]" in dump and "params_b:f64[]" in dump
