"""compile_grad's per-call fast path (calls of plain C-contiguous arrays) behaves as
the full lookup does: same trace, same numbers, for every kind of array argument."""
import numpy as np

import fusegrad as fg

SCALE = 3.0


@fg.compile_grad
def _loss(x, w):
    return ((x * w) ** 2).sum() * SCALE


def _expected(x, w):
    return SCALE * ((x * w) ** 2).sum(), (2 * SCALE * x * w * w, 2 * SCALE * x * x * w)


def _check(x, w):
    value, (gx, gw) = _loss(x, w)
    want, (wx, ww) = _expected(np.asarray(x, np.float64), np.asarray(w, np.float64))
    np.testing.assert_allclose(value, want, rtol=1e-6)
    np.testing.assert_allclose(gx, wx, rtol=1e-6)
    np.testing.assert_allclose(gw, ww, rtol=1e-6)
    return gx, gw


def test_every_kind_of_array_argument_shares_one_trace():
    base = np.linspace(-1, 1, 12, dtype=np.float32)
    w = np.linspace(0.5, 2, 6, dtype=np.float32)
    _check(base[:6].copy(), w)
    _check(base[::2], w)                          # not contiguous: copied by the lookup
    _check(base[:6].astype(">f4"), w)             # non-native byte order: converted
    readonly = base[:6].copy()
    readonly.flags.writeable = False
    _check(readonly, w)
    _check(base[:6].copy(), w)                    # and the fast path again
    assert len(_loss._cache) == 1


def test_outputs_never_alias_the_arguments():
    global SCALE
    x = np.ones(6, np.float32)
    w = np.full(6, 2.0, np.float32)
    _check(x, w)
    gx, gw = _check(x, w)
    assert not np.shares_memory(gx, x) and not np.shares_memory(gw, w)
    old = SCALE
    try:
        SCALE = 5.0                               # rebinding a name the function reads
        _check(x, w)                              # retraces, on the fast path too
    finally:
        SCALE = old
    _check(x, w)


def test_a_new_shape_or_dtype_is_a_new_trace():
    _check(np.ones(4, np.float32), np.ones(4, np.float32))
    _check(np.ones(4, np.float64), np.ones(4, np.float32))
    _check(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))
