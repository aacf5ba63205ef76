"""The layout ops of issue 11 (item 5): concatenate, stack, split, expand_dims, squeeze,
flip, repeat, tile and pad, compiled fused (value and gradients against HIPS autograd and
the NumPy interpreter) in one function per dtype; the eager spellings with PyTorch's
semantics (cat, stack, split, chunk, x.repeat = tile, repeat_interleave, flip, squeeze,
unsqueeze); and the errors for bad axes and shapes.
"""
from __future__ import annotations

import types

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

AUTOGRAD = types.SimpleNamespace(
    concatenate=anp.concatenate, stack=anp.stack, split=anp.split, expand_dims=anp.expand_dims,
    squeeze=anp.squeeze, flip=lambda x, axis=None: _flip_by_slicing(x, axis), repeat=anp.repeat, tile=lambda x, reps: _tile_by_concatenation(x, reps),
    pad=lambda x, w, constant_values=0: anp.pad(x, w, "constant", constant_values=constant_values))

def _flip_by_slicing(x, axis):
    """HIPS autograd has no VJP for np.flip; its basic indexing has one."""
    axes = range(x.ndim) if axis is None else [axis % x.ndim]
    return x[tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(x.ndim))]


def _tile_by_concatenation(x, reps):
    """HIPS autograd's VJP of np.tile is wrong when reps is shorter than x.ndim (tiling a
    (2, 3, 2) array by 2: checked by hand); concatenation's is right."""
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    reps = (1,) * (x.ndim - len(reps)) + reps
    for axis, r in enumerate(reps):
        x = anp.concatenate([x] * r, axis=axis)
    return x


WEIGHTS = np.random.default_rng(5).standard_normal(64)


def all_layout_source(m, weights):
    """Every layout op in one function; each result weighted so every gradient entry counts."""
    def all_layout(x, y):                       # x: (2, 3, 4), y: (2, 1, 4)
        pieces = m.split(x, [1, 3], axis=2)     # (2,3,1), (2,3,2), (2,3,1)
        halves = m.split(x, 2, axis=0)          # two (1,3,4)
        terms = [
            m.concatenate([x, y, x * y], axis=1),                 # (2, 7, 4)
            m.stack([pieces[0], pieces[2] * 2.0], axis=-1),       # (2, 3, 1, 2)
            m.concatenate(halves[::-1], axis=0) * x,
            m.squeeze(m.expand_dims(pieces[1], 0), 0) ** 2,
            m.flip(x, 1) * x + m.flip(y),
            m.repeat(y, 3, axis=1) * x,
            m.tile(y, (1, 3, 1)) * x + m.tile(pieces[1], 2),
            m.pad(x * y, ((0, 1), (2, 0), (1, 1)), constant_values=0.5),
            m.pad(y, 1),
            m.squeeze(y, axis=1),
        ]
        total = 0.0
        for i, t in enumerate(terms):
            flat = t.reshape(-1)
            n = flat.shape[0]
            w = np.resize(weights, n)           # a host constant for this term's size
            total = total + (flat * w).sum() * (i + 1)
        return total
    return all_layout


COMPILED = {dtype: fg.compile_grad(all_layout_source(fg, WEIGHTS.astype(dtype)))
            for dtype in (F32, F64)}


def inputs(dtype):
    rng = np.random.default_rng(11)
    return rng.standard_normal((2, 3, 4)).astype(dtype), rng.standard_normal((2, 1, 4)).astype(dtype)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_layout_ops_fused_match_autograd_and_the_interpreter(dtype, interpret, assert_all_close,
                                                             flatten):
    args = inputs(dtype)
    results = flatten(COMPILED[dtype](*args))
    assert [r.dtype for r in results] == [dtype] * 3
    assert_all_close(results, interpret(COMPILED[dtype], *args), dtype, what="vs interpreter")
    reference = all_layout_source(AUTOGRAD, WEIGHTS)
    args64 = [a.astype(F64) for a in args]
    expected = [np.asarray(reference(*args64))]
    expected += [autograd.grad(reference, i)(*args64) for i in range(2)]
    assert_all_close(results, expected, dtype, what="vs autograd")


# ---------------------------------------------------------------- eager, PyTorch's semantics

def test_eager_cat_stack_and_their_gradients():
    a = fg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    b = fg.tensor([[5.0, 6.0]], requires_grad=True)
    c = fg.cat([a, b], dim=0)
    assert c.grad_fn.name() == "CatBackward0"
    np.testing.assert_array_equal(c.detach().numpy(), [[1, 2], [3, 4], [5, 6]])
    s = fg.stack([a, a * 2], dim=1)
    assert tuple(s.shape) == (2, 2, 2) and s.grad_fn.name() == "StackBackward0"
    np.testing.assert_array_equal(s.detach().numpy()[:, 1], [[2, 4], [6, 8]])
    (c * fg.tensor([[1.0], [2.0], [3.0]])).sum().backward()
    s.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [[4, 4], [5, 5]])   # 1 or 2 from cat, 3 from stack
    np.testing.assert_array_equal(b.grad.numpy(), [[3, 3]])


def test_eager_split_chunk_are_torch_sizes_and_fg_split_asks_which_split():
    x = fg.arange(10.0).requires_grad_()
    pieces = fg.split(x, split_size_or_sections=4)
    assert [tuple(p.shape) for p in pieces] == [(4,), (4,), (2,)]          # pieces of 4
    assert [tuple(p.shape) for p in x.split([3, 7])] == [(3,), (7,)]       # sizes
    assert [tuple(p.shape) for p in x.chunk(3)] == [(4,), (4,), (2,)]
    assert [tuple(p.shape) for p in fg.split(x, 5, 0)] == [(2,)] * 5       # NumPy: 5 sections
    assert [tuple(p.shape) for p in fg.split(x, [2, 7], axis=0)] == [(2,), (5,), (3,)]  # indices
    assert [tuple(p.shape) for p in fg.split(x, 5, dim=0)] == [(5,), (5,)]  # PyTorch: sizes
    with pytest.raises(TypeError, match="could be either"):
        fg.split(x, 2)      # pieces of 2 (PyTorch) or 2 pieces (NumPy): not guessed
    first, _, last = x.chunk(3)
    (first.sum() + 3 * last.sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 1, 1, 1, 0, 0, 0, 0, 3, 3])


def test_eager_repeat_is_tile_and_repeat_interleave_is_numpy_repeat():
    x = fg.tensor([[1.0, 2.0]], requires_grad=True)
    r = x.repeat(2, 1, 2)                                   # torch: whole copies, new lead axis
    assert r.grad_fn.name() == "RepeatBackward0"
    np.testing.assert_array_equal(r.detach().numpy(), np.tile([[1.0, 2.0]], (2, 1, 2)))
    i = x.repeat_interleave(3, dim=1)
    np.testing.assert_array_equal(i.detach().numpy(), [[1, 1, 1, 2, 2, 2]])
    np.testing.assert_array_equal(fg.repeat(x, 2).detach().numpy(), [1, 1, 2, 2])  # flattened
    (r.sum() + (i * fg.arange(6.0)).sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[4 + 3, 4 + 12]])


def test_eager_flip_squeeze_unsqueeze_pad():
    x = fg.arange(6.0).reshape(1, 2, 3).requires_grad_()
    f = fg.flip(x, dims=(1, 2))
    assert f.grad_fn.name() == "FlipBackward0"
    np.testing.assert_array_equal(f.detach().numpy(), np.arange(6.0).reshape(1, 2, 3)[:, ::-1, ::-1])
    assert tuple(x.squeeze(0).shape) == (2, 3)
    assert tuple(x.squeeze(1).shape) == (1, 2, 3)          # torch: a size that is not 1 stays
    assert tuple(x.squeeze((0, 1)).shape) == (2, 3)
    assert tuple(fg.squeeze(x, axis=0).shape) == (2, 3)
    assert tuple(x.unsqueeze(-1).shape) == (1, 2, 3, 1)
    assert tuple(fg.expand_dims(x, (0, 2)).shape) == (1, 1, 1, 2, 3)
    p = fg.pad(x, ((0, 0), (1, 0), (0, 2)), constant_values=-1.0)
    np.testing.assert_array_equal(p.detach().numpy(), np.pad(np.arange(6.0).reshape(1, 2, 3),
                                                             ((0, 0), (1, 0), (0, 2)),
                                                             constant_values=-1.0))
    (f * fg.arange(6.0).reshape(1, 2, 3)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.arange(6.0)[::-1].reshape(1, 2, 3))


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("call, message", [
    (lambda x: fg.concatenate([x, x[:, :1]], axis=0), "concatenate: sizes must match except "
                                                      "along axis 0, got f64[2,3], f64[2,1]"),
    (lambda x: fg.concatenate([x, x[0]]), "concatenate: arrays must have the same number"),
    (lambda x: fg.cat([x, x], dim=2), "concatenate: axis 2 is out of range"),
    (lambda x: fg.stack([x, x.T]), "stack: all input arrays must have the same shape, got "
                                   "f64[2,3], f64[3,2]"),
    (lambda x: fg.split(x, 2, axis=1), "split: array split does not result in an equal "
                                       "division: 2 sections of axis 1 of f64[2,3]"),
    (lambda x: fg.split(x, split_size_or_sections=[1, 1], dim=1), "split: sizes (1, 1) must "
                                                                  "sum to 3"),
    (lambda x: fg.flip(x, 2), "flip: axis 2 is out of range for an array of 2 dimensions"),
    (lambda x: fg.expand_dims(x, 3), "expand_dims: axis 3 is out of range"),
    (lambda x: fg.pad(x, ((1, 1), (1, 1), (1, 1))), "pad: pad_width ((1, 1), (1, 1), (1, 1)) "
                                                    "does not fit f64[2,3]"),
    (lambda x: fg.pad(x, -1), "pad: pad widths must be non-negative"),
    (lambda x: x.repeat(2), "repeat: number of repeat dims 1 can not be smaller"),
    (lambda x: fg.tile(x, (-1, 1)), "tile: repetitions must be non-negative"),
])
def test_bad_axes_and_shapes_name_the_op_and_the_shapes(call, message):
    x = fg.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError) as error:      # fusegrad.ShapeError is a ValueError
        call(x)
    assert message in str(error.value)


def test_traced_layout_error_names_the_users_line():
    def f(x):
        return fg.concatenate([x, x.T], axis=0).sum()   # the line the error names
    with pytest.raises(fg.ShapeError, match=r"(?s)concatenate: .*test_layout.py:\d+"):
        fg.compile_grad(f)(np.ones((2, 3)))
