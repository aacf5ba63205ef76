"""Loops that do not unroll (issue 11, item 12): `fg.scan` and `fg.fori_loop`.

Compiled: value and gradients against the same loop unrolled in Python (the oracle:
a graph of plain primitives), against central finite differences, fused == unfused
== the NumPy interpreter of the joint graph; pytree carries, reverse=True, xs=None
with length=, zero steps, nested scans, fori_loop, fg.grad of a scan inside the trace
(a second derivative through the backward scan); the errors. Eager: NumPy arrays
in, NumPy arrays out; tensors that require grad record the steps for backward().
The first-call time of a 1,000-step scan is measured in examples/scan_rnn.py (timings
are never asserted here).
"""
from __future__ import annotations

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.ir.errors import DTypeError, ShapeError, TraceError

T, D = 5, 3
RNG = np.random.default_rng(7)
W0 = RNG.standard_normal((D, D)) * 0.5
U0 = RNG.standard_normal((D, D)) * 0.5
B0 = RNG.standard_normal(D) * 0.1
XS0 = RNG.standard_normal((T, 1, D))
H0 = RNG.standard_normal((1, D))


def rnn_scan(W, U, b, xs, h0):
    def step(h, x):
        h = fg.tanh(h @ W + x @ U + b)
        return h, h.sum()
    h, ys = fg.scan(step, h0, xs)
    return (ys * ys).sum() + h.sum()


def rnn_unrolled(W, U, b, xs, h0):
    h, ys = h0, []
    for t in range(xs.shape[0]):
        h = fg.tanh(h @ W + xs[t] @ U + b)
        ys.append(h.sum())
    ys = fg.stack(ys)
    return (ys * ys).sum() + h.sum()


SCAN, UNROLLED = fg.compile_grad(rnn_scan), fg.compile_grad(rnn_unrolled)
SCAN_UNFUSED = fg.compile_grad(rnn_scan, fuse=False)


def rnn_args(dtype):
    return [a.astype(dtype) for a in (W0, U0, B0, XS0, H0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rnn_matches_the_unrolled_loop(dtype, interpret, assert_all_close, flatten):
    args = rnn_args(dtype)
    value, grads = SCAN(*args)
    expected = interpret(UNROLLED, *args)   # the oracle: no kernels to compile
    assert value.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_all_close([value, *grads], expected, dtype)
    if dtype == np.float64:   # one kernel per primitive: many compilations, one dtype
        assert_all_close(flatten(SCAN_UNFUSED(*args)), expected, dtype)
    assert_all_close(interpret(SCAN, *args), expected, dtype)


def test_rnn_gradients_match_finite_differences():
    assert fg.gradcheck(rnn_scan, *rnn_args(np.float64))


def test_the_dump_shows_each_body_under_its_scan_node():
    text = SCAN.dump(*rnn_args(np.float64))
    lines = text.splitlines()
    forward = next(i for i, line in enumerate(lines) if "= scan[" in line)
    assert "length=5" in lines[forward] and "reverse=False" in lines[forward]
    assert lines[forward + 1].strip().startswith("{ lambda W:f64[3,3] U:f64[3,3] b:f64[3]")
    assert "tanh" in lines[forward + 4] or any("tanh" in line for line in lines[forward:forward + 9])
    assert "reverse=True" in text   # the backward scan
    assert "lib1_scan" in text and "runs its compiled body once per step" in text
    assert "<body" not in text     # no object ids: two dumps are identical
    assert text == SCAN.dump(*rnn_args(np.float64))


# ---------------------------------------------------------------- pytrees, reverse, xs=None

def tree_scan(W, xs, h0):
    def step(carry, x):
        h = fg.tanh(carry["h"] @ W + x)
        return {"h": h, "acc": carry["acc"] + (h * h).sum(), "n": carry["n"] + 1}, (h, h.sum())
    carry, (hs, sums) = fg.scan(step, {"h": h0, "acc": 0.0, "n": 0}, xs, reverse=True)
    return carry["acc"] + (hs * hs).sum() + sums.sum() + carry["h"].sum() + carry["n"]


def tree_unrolled(W, xs, h0):
    h, acc, hs, sums = h0, 0.0, [], []
    for t in reversed(range(xs.shape[0])):
        h = fg.tanh(h @ W + xs[t])
        acc = acc + (h * h).sum()
        hs.insert(0, h)
        sums.insert(0, h.sum())
    return acc + (fg.stack(hs) ** 2).sum() + fg.stack(sums).sum() + h.sum() + xs.shape[0]


TREE_SCAN, TREE_UNROLLED = fg.compile_grad(tree_scan), fg.compile_grad(tree_unrolled)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pytree_carry_and_ys_in_reverse(dtype, assert_all_close, interpret):
    args = [W0.astype(dtype), XS0[:, 0].astype(dtype), H0[0].astype(dtype)]
    value, grads = TREE_SCAN(*args)
    # The Python float 0.0 in the carry is weakly typed: it takes the body's dtype.
    assert value.dtype == dtype
    assert_all_close([value, *grads], interpret(TREE_UNROLLED, *args), dtype)


def power_scan(W, h0):
    h, _ = fg.scan(lambda h, x: (fg.tanh(h @ W), None), h0, length=4)
    return h.sum()


def power_fori(W, h0):
    return fg.fori_loop(0, 4, lambda i, h: fg.tanh(h @ W) + 0 * i, h0).sum()


def power_unrolled(W, h0):
    h = h0
    for _ in range(4):
        h = fg.tanh(h @ W)
    return h.sum()


def test_xs_none_with_length_and_fori_loop(assert_all_close, flatten, interpret):
    args = [W0, H0[0]]
    expected = interpret(fg.compile_grad(power_unrolled), *args)
    assert_all_close(flatten(fg.compile_grad(power_scan)(*args)), expected)
    assert_all_close(flatten(fg.compile_grad(power_fori)(*args)), expected)
    assert fg.gradcheck(power_fori, *args)


def test_fori_loop_index_and_zero_trips():
    def f(x):
        # i is a 0-d int64 tensor: x + 1 + 2 + 3 for range(1, 4)
        total = fg.fori_loop(1, 4, lambda i, acc: acc + x * i, x)
        empty = fg.fori_loop(3, 1, lambda i, acc: acc * 0, x)   # no trips: the init
        return total.sum() + empty.sum()
    value, (grad,) = fg.compile_grad(f)(np.array([1.0, 2.0]))
    np.testing.assert_allclose(value, 7 * 3.0 + 3.0)
    np.testing.assert_allclose(grad, [8.0, 8.0])


def test_zero_steps_nested_scans_and_closed_over_arrays(interpret):
    table = np.array([0.5, -1.0])   # a NumPy array the body closes over: a constant

    def f(w, xs):
        def outer(c, row):
            inner, _ = fg.scan(lambda a, v: (a * w + v * table, None), c, row)
            return inner, inner.sum()
        c, ys = fg.scan(outer, fg.zeros(2, dtype=fg.float64), xs)
        none, empty = fg.scan(outer, c, xs[:0])
        return (ys * ys).sum() + none.sum() + empty.sum()

    def g(w, xs):
        c, ys = fg.zeros(2, dtype=fg.float64), []
        for row in range(xs.shape[0]):
            for v in range(xs.shape[1]):
                c = c * w + xs[row, v] * table
            ys.append(c.sum())
        return (fg.stack(ys) ** 2).sum() + c.sum()

    args = [np.array([0.9, -0.7]), RNG.standard_normal((3, 4, 2))]
    value, grads = fg.compile_grad(f)(*args)
    expected_value, *expected_grads = interpret(fg.compile_grad(g), *args)
    np.testing.assert_allclose(value, expected_value, rtol=1e-13)
    for a, b in zip(grads, expected_grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- errors

def test_carry_shape_and_dtype_mismatch_name_the_line():
    def shape(w, h0):
        h, _ = fg.scan(lambda h, x: ((h @ w).sum(), None), h0, length=2)  # the line
        return h.sum()

    def dtype(w, h0):
        h, _ = fg.scan(lambda h, x: ((h @ w).astype(np.float32), None), h0, length=2)
        return h.sum()

    with pytest.raises(ShapeError, match=r"returns carry as f64\[\], but it enters as "
                                         r"f64\[3\].*\n  traced at test_scan.py:\d+"):
        fg.compile_grad(shape)(W0, H0[0])
    with pytest.raises(DTypeError, match=r"returns carry as f32\[3\], but it enters as f64\[3\]"):
        fg.compile_grad(dtype)(W0, H0[0])


def test_structure_and_pair_errors():
    def structure(h0):
        c, _ = fg.scan(lambda c, x: ((c[0], c[1], c[0]), None), (h0, h0), length=2)
        return c[0].sum()

    def not_a_pair(h0):
        c, _ = fg.scan(lambda c, x: c * 2, h0, length=2)
        return c.sum()

    with pytest.raises(TraceError, match=r"another structure than init: "
                                         r"tuple\(array, array, array\) for tuple\(array, array\)"):
        fg.compile_grad(structure)(H0[0])
    with pytest.raises(TraceError, match=r"must return a pair \(carry, y\)"):
        fg.compile_grad(not_a_pair)(H0[0])
    with pytest.raises(TraceError, match="length="):
        fg.scan(lambda c, x: (c, x), H0[0])
    with pytest.raises(ShapeError, match="disagree on the number of steps: 5, 4"):
        fg.scan(lambda c, x: (c, x), H0[0], XS0, length=4)


def test_fori_loop_refuses_traced_bounds():
    def f(x):
        return fg.fori_loop(0, x.sum(), lambda i, v: v * 2, x).sum()
    with pytest.raises(TraceError, match=r"upper=a tensor of shape \(\): the bounds must be "
                                         r"Python ints.*\n  traced at test_scan.py"):
        fg.compile_grad(f)(np.ones(2))


# ---------------------------------------------------------------- eager

def test_eager_numpy_arrays_in_numpy_arrays_out():
    def step(h, x):
        h = np.tanh(h @ W0 + x)
        return h, (h.sum(), h)
    h, (sums, hs) = fg.scan(step, H0[0], XS0[:, 0], reverse=True)
    expected, rows = H0[0], []
    for t in reversed(range(T)):
        expected = np.tanh(expected @ W0 + XS0[t, 0])
        rows.insert(0, expected)
    assert type(h) is np.ndarray and type(hs) is np.ndarray and sums.shape == (T,)
    np.testing.assert_allclose(h, expected)
    np.testing.assert_allclose(hs, np.stack(rows))
    # fg functions on NumPy arrays give tensors; the results are NumPy arrays all the same
    h2, ys = fg.scan(lambda h, x: (fg.tanh(h @ W0 + x), None), H0[0], XS0[:, 0])
    assert type(h2) is np.ndarray and ys is None
    _, empty = fg.scan(lambda h, x: (h, h.sum()), H0[0], XS0[:0, 0])
    assert empty.shape == (0,) and empty.dtype == np.float64
    assert fg.fori_loop(0, 3, lambda i, v: v + i, 10) == 13


def test_eager_tensors_record_the_steps_for_backward():
    W = fg.tensor(W0, requires_grad=True)
    xs = fg.tensor(XS0, requires_grad=True)
    h, ys = fg.scan(lambda h, x: (fg.tanh(h @ W + x @ fg.tensor(U0) + fg.tensor(B0)), h.sum()),
                    fg.tensor(H0), xs)
    ((ys * ys).sum() + h.sum()).backward()
    _, (gW, _, _, gxs, _) = SCAN(*rnn_args(np.float64))
    # ys here are the sums of the carry entering each step; compare with the unrolled
    # recording instead, which is what eager scan is.
    W2 = fg.tensor(W0, requires_grad=True)
    h2, total = fg.tensor(H0), []
    for t in range(T):
        total.append(h2.sum())
        h2 = fg.tanh(h2 @ W2 + fg.tensor(XS0[t]) @ fg.tensor(U0) + fg.tensor(B0))
    ((fg.stack(total) ** 2).sum() + h2.sum()).backward()
    np.testing.assert_allclose(W.grad.numpy(), W2.grad.numpy(), rtol=1e-12)
    assert xs.grad.shape == (T, 1, D) and gW.shape == (D, D)


# ---------------------------------------------------------------- transforms

def test_gradient_penalty_through_a_scan(interpret):
    """fg.grad of a scan inside compile_grad: the backward scan is differentiated again
    (a scan of the backward body's VJP), and matches the unrolled loop's."""
    def power(W):
        h, _ = fg.scan(lambda h, _: (fg.tanh(h @ W), None), H0[0], length=3)
        return h.sum()

    def power_unrolled(W):
        h = H0[0]
        for _ in range(3):
            h = fg.tanh(h @ W)
        return h.sum()

    def penalty(f):
        return lambda W: (fg.grad(f)(W) ** 2).sum()

    value, (grad,) = fg.compile_grad(penalty(power))(W0)
    expected_value, expected_grad = interpret(fg.compile_grad(penalty(power_unrolled)), W0)
    np.testing.assert_allclose(value, expected_value, rtol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-14)
