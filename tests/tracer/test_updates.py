"""Functional updates (issue 11, item 3): ``total += loss``, ``h *= 0.5``, ``h[0] = v``,
``h[:, 1:] += d`` and JAX's ``h.at[idx].set/add/multiply(v)`` inside compile_grad and in
the eager API. Traced, an in-place op gives the tensor a new IR value and never writes
to a caller's array; eager, it is recorded (PyTorch's CopySlices) where PyTorch allows
it and refused with PyTorch's error on leaves that require grad.

Oracle: the same updates written out of place for HIPS autograd (concatenations and
masks), the NumPy interpreter of the joint graph, and finite differences.
"""
from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

ROWS = np.array([1, 1, 3])   # .at[ROWS].add: the repeated row accumulates twice
WEIGHTS = np.random.default_rng(8).uniform(0.5, 1.5, (5, 4))


def updated(weights):
    def updates(x, v, d):
        h = x * 1.0
        h[0] = v                              # a row set
        h[:, 1:] += d                         # a broadcast add into a slice
        h[1, ::-2] = 2.0 * v[:2]              # a negative step
        h *= 0.5
        h = h.at[2:, 0].multiply(v[:3])
        h = h.at[ROWS].add(d[0])
        total = 0.0
        for row in range(5):                  # total += loss_t, rebinding
            total += (fg.tanh(h[row]) * weights[row]).sum()
        return total
    return updates


def updated_out_of_place(x, v, d):
    """`updates` for autograd, without assignment."""
    h = anp.concatenate([v[None], x[1:]])
    h = anp.concatenate([h[:, :1], h[:, 1:] + d], axis=1)
    row = anp.stack([h[1, 0], 2.0 * v[1], h[1, 2], 2.0 * v[0]])
    h = anp.concatenate([h[:1], row[None], h[2:]]) * 0.5
    h = anp.concatenate([(h[:, 0] * anp.concatenate([anp.ones(2), v[:3]]))[:, None], h[:, 1:]], 1)
    h = h + np.bincount(ROWS, minlength=5)[:, None] * d[0]
    return (anp.tanh(h) * WEIGHTS).sum()


COMPILED = {d: fg.compile_grad(updated(WEIGHTS.astype(d))) for d in (F32, F64)}


def inputs(dtype):
    rng = np.random.default_rng(1)
    return tuple(rng.standard_normal(s).astype(dtype) for s in ((5, 4), (4,), (3,)))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_updates_match_autograd_and_the_interpreter(dtype, interpret, assert_all_close, flatten):
    args = inputs(dtype)
    copies = [a.copy() for a in args]
    results = flatten(COMPILED[dtype](*args))
    for a, c in zip(args, copies):
        np.testing.assert_array_equal(a, c)   # the caller's arrays are not written
    assert [r.dtype for r in results] == [dtype] * 4
    assert_all_close(results, interpret(COMPILED[dtype], *args), dtype, what="vs interpreter")
    args64 = [a.astype(F64) for a in args]
    expected = [updated_out_of_place(*args64)]
    expected += [autograd.grad(updated_out_of_place, i)(*args64) for i in range(3)]
    assert_all_close(results, expected, dtype, what="vs autograd")


def test_updates_fused_equal_unfused_and_gradcheck(assert_all_close, flatten):
    args = inputs(F64)
    unfused = fg.compile_grad(updated(WEIGHTS), fuse=False)
    assert_all_close(flatten(unfused(*args)), flatten(COMPILED[F64](*args)), F64)
    assert fg.gradcheck(updated(WEIGHTS), *args)


def test_in_place_ops_on_arguments_rebind_without_writing_the_caller_array():
    def f(x):
        x *= 2.0
        x[0] = 0.0
        x -= 1.0
        return (x * x).sum()
    x = np.arange(4.0)
    value, (g,) = fg.compile_grad(f)(x)
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert value == 1.0 + 1.0 + 9.0 + 25.0
    assert g.tolist() == [0.0, 4.0, 12.0, 20.0]   # d/dx (2x - 1)^2, none where overwritten


def test_an_in_place_op_changes_the_object_as_in_numpy():
    # `y = x` names one array in NumPy (and one tensor in PyTorch): x sees the update.
    def f(x):
        y = x
        y += 1.0
        return (x * y).sum()
    value, (g,) = fg.compile_grad(f)(np.array([1.0, 2.0]))
    assert value == 4.0 + 9.0 and g.tolist() == [4.0, 6.0]


def test_jax_at_spellings_return_new_values():
    def f(x, i):
        a = x.at[i].add(1.0)                 # repeated indices accumulate, as JAX
        b = x.at[1:].set(a[:2] * 3)
        c = x.at[0].multiply(a[0])
        return (a * b * c).sum() + x.at[i].get().sum()
    x, i = np.array([1.0, 2.0, 3.0]), np.array([0, 0, 2])
    a = x + np.array([2.0, 0.0, 1.0])
    b = np.array([x[0], 3 * a[0], 3 * a[1]])
    c = np.array([x[0] * a[0], x[1], x[2]])
    value, _ = fg.compile_grad(f, wrt=0)(x, i)
    assert np.isclose(value, (a * b * c).sum() + x[i].sum())
    assert fg.gradcheck(f, x, i)


def set_rows(x, v, i):
    h = x * 1.0
    h[i] = v                    # a repeated row keeps one write (the last, in NumPy)
    h[1:, i[:2]] += 3 * v[:2, :2]
    return (h * WEIGHTS[:3]).sum()


SET_ROWS = fg.compile_grad(set_rows)


def test_set_at_index_arrays_keeps_one_write_and_its_gradient():
    rng = np.random.default_rng(5)
    x, v, i = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), np.array([2, 2, 0])
    value, (gx, gv) = SET_ROWS(x, v, i)
    h = x.copy()
    h[i] = v
    h[1:, i[:2]] += 3 * v[:2, :2]
    assert np.isclose(value, (h * WEIGHTS[:3]).sum())
    w = WEIGHTS[:3]
    np.testing.assert_allclose(gx, np.where(np.isin(np.arange(3), i)[:, None], 0.0, w))
    expected = w[i] * np.array([[0.0], [1.0], [1.0]])     # v[0]'s write to row 2 is lost
    # h[1:, [2, 2]] += ... reads column 2 twice and writes it twice: the last write wins
    expected[:2, 1] += 3 * w[1:, 2]
    np.testing.assert_allclose(gv, expected)
    assert fg.gradcheck(set_rows, x, v, i)
    xt, vt = fg.tensor(x, requires_grad=True), fg.tensor(v, requires_grad=True)
    set_rows(xt, vt, fg.tensor(i)).backward()             # eager: the same graph, recorded
    np.testing.assert_allclose(vt.grad.numpy(), expected)


@pytest.mark.parametrize("call, error, message", [
    (lambda h, i: h.at[i].multiply(2.0), fg.UnsupportedError, r"multiply at integer index"),
    (lambda h, i: h.__iadd__(fg.ones(2, 4)), fg.ShapeError, "doesn't match the broadcast"),
    (lambda h, i: h.long().__imul__(0.5), fg.DTypeError, "can't be cast"),
], ids=["multiply-at-index-array", "broadcast-grows", "float-into-int"])
def test_updates_that_cannot_be_made_correct_are_clear_errors(call, error, message):
    def f(x, i):
        h = x * 1.0
        call(h, i)
        return h.sum()
    with pytest.raises(error, match=message):
        fg.compile_grad(f, wrt=0)(np.ones(4), np.array([0, 0]))


def test_an_eager_tensor_cannot_take_a_traced_value():
    outside = fg.zeros(3)

    def f(x):
        outside[0] = x[0]
        return x.sum()
    with pytest.raises(fg.TraceError, match="created outside the traced function"):
        fg.compile_grad(f)(np.ones(3))
    assert outside.tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------- eager

def test_eager_updates_are_recorded():
    x = fg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    v = fg.tensor([10.0, 20.0], requires_grad=True)
    h = x * 2
    h[:, 1:] += v
    h[0, 0] = v[1]
    assert h.grad_fn.name() == "CopySlices"
    (h * h).sum().backward()
    expected = np.arange(6.0).reshape(2, 3) * 2 + np.array([0.0, 10.0, 20.0])
    expected[0, 0] = 20.0
    np.testing.assert_array_equal(h.detach().numpy(), expected)
    np.testing.assert_array_equal(x.grad.numpy(), 4 * expected * np.array([[0, 1, 1], [1, 1, 1]]))
    np.testing.assert_array_equal(v.grad.numpy(), 2 * expected[:, 1:].sum(0) + [0, 2 * 20.0])


def test_eager_leaves_that_require_grad_refuse_in_place_updates():
    x = fg.ones(3, requires_grad=True)
    for update in (lambda: x.__setitem__(0, 2.0), lambda: x.__iadd__(1.0)):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
            update()
    plain = fg.zeros(3)
    plain[1:] = fg.tensor([1.0, 2.0])   # no gradient anywhere: written in place
    plain += 1
    assert plain.tolist() == [1.0, 2.0, 3.0] and plain.grad_fn is None
    y = x.at[0].set(5.0)                  # functional: x is unchanged
    assert y.tolist() == [5.0, 1.0, 1.0] and x.tolist() == [1.0, 1.0, 1.0]


def test_a_number_assigned_through_a_traced_mask_is_a_select():
    def f(x):
        h = x * 1.0
        h[h < 0] = 0.0                    # x[mask] = number: fg.where(mask, 0, x)
        h[h[:, 0] > 1] = 7.0              # a mask over the leading axis: whole rows
        h = h.at[h > 1].multiply(0.5)
        return (h * h).sum()
    x = np.array([[-1.0, 0.5, 2.0], [3.0, -2.0, 0.2]])
    value, (g,) = fg.compile_grad(f)(x)
    h = x.copy()
    h[h < 0] = 0.0
    h[h[:, 0] > 1] = 7.0
    h[h > 1] *= 0.5
    assert value == (h * h).sum()
    np.testing.assert_array_equal(g, [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    with pytest.raises(fg.TraceError, match=r"fg\.where\(mask, values, x\)"):
        fg.compile_grad(lambda x: x.at[x > 0].set(x[::-1]).sum())(x[0])


def rnn_into_a_buffer(w, x):
    """The NumPy habit: preallocate, then fill row by row (fg.zeros made inside a traced
    function is local to it, so it may take traced values)."""
    hs = fg.zeros(4, 3, dtype=fg.float64)
    hs[0] = x
    for t in range(1, 4):
        hs[t] = fg.tanh(hs[t - 1] @ w)
    return (hs ** 2).sum()


def test_filling_a_buffer_row_by_row_traced_and_eager():
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((3, 3)) * 0.5, rng.standard_normal(3)

    def reference(w, x):
        h, total = x, anp.sum(x ** 2)
        for _ in range(3):
            h = anp.tanh(anp.dot(h, w))
            total = total + anp.sum(h ** 2)
        return total
    value, (gw, gx) = fg.compile_grad(rnn_into_a_buffer)(w, x)
    assert np.isclose(value, reference(w, x))
    np.testing.assert_allclose(gw, autograd.grad(reference, 0)(w, x), rtol=1e-10)
    np.testing.assert_allclose(gx, autograd.grad(reference, 1)(w, x), rtol=1e-10)
    # Eager, each hs[t] = ... is recorded (PyTorch raises here: the matmul saved hs[t - 1],
    # which the next assignment changes; fusegrad recomputes it from its inputs).
    wt, xt = fg.tensor(w, requires_grad=True), fg.tensor(x, requires_grad=True)
    rnn_into_a_buffer(wt, xt).backward()
    np.testing.assert_allclose(wt.grad.numpy(), gw, rtol=1e-10)
    np.testing.assert_allclose(xt.grad.numpy(), gx, rtol=1e-10)


def test_eager_assignment_refuses_to_change_a_recorded_view():
    x, w = fg.tensor([1.0, 2.0, 3.0], requires_grad=True), fg.tensor(5.0, requires_grad=True)
    base = x * 2
    view = base[0:2]
    with pytest.raises(fg.UnsupportedError, match=r"view of another tensor .*clone\(\)"):
        view[0] = w          # PyTorch would rewrite base's grad_fn; fusegrad cannot
    with pytest.raises(fg.UnsupportedError, match=r"would change a view of it"):
        base[1] = w          # `view` sees the change, but its gradient would not
    base[2] = w              # outside the view: fine
    del view
    grand = base[0:3][0:2]   # a view of a view of base
    with pytest.raises(fg.UnsupportedError, match=r"view of another tensor"):
        grand[0] = w
    del grand
    base[0] = w
    (base * base).sum().backward()
    assert x.grad.tolist() == [0.0, 16.0, 0.0] and w.grad.item() == 20.0


def test_eager_in_place_ops_on_a_slice_write_through_the_base():
    # base[0:2].mul_(3) changes base: its gradient must say so (it silently did not).
    def grad_of(program):
        x = fg.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
        program(x).backward()
        return x.grad.tolist()

    def scaled(x):
        base = x * 2
        base[0:2].mul_(3)
        assert base.grad_fn.name() == "CopySlices"
        return base.sum()

    def shifted(x):
        base = x * 2
        view = base[0:2]
        view.add_(1)                      # base is [3, 5, 6, 8] now, view [3, 5]
        return (base * base).sum() + (view * view).sum()

    assert grad_of(scaled) == [6.0, 6.0, 2.0, 2.0]
    assert grad_of(shifted) == [24.0, 40.0, 24.0, 32.0]
    x = fg.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    base = x * 2
    views = base[0:2], base[1:3]          # both alive: the first overlaps the second
    with pytest.raises(fg.UnsupportedError, match=r"would change a view of it"):
        views[1].mul_(3)                  # the first one's gradient would not see it
