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
