"""runtime/buffers.py: large kernel outputs are recycled, but only once nothing else
refers to them, so no array a caller can still reach is ever written again."""
from __future__ import annotations

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.runtime import buffers

F32 = np.dtype(np.float32)
BIG = (buffers.MIN_BYTES // 4,)  # float32 elements in the smallest pooled array


@pytest.fixture(autouse=True)
def empty_pool():
    buffers.clear()
    yield
    buffers.clear()


def test_an_array_is_reused_once_dropped():
    a = buffers.empty(BIG, F32)
    address = a.ctypes.data
    assert buffers.empty(BIG, F32).ctypes.data != address  # `a` is still held
    del a
    assert buffers.empty(BIG, F32).ctypes.data == address


def test_a_view_keeps_its_array():
    a = buffers.empty(BIG, F32)
    address = a.ctypes.data
    view = a[::2]
    del a
    assert buffers.empty(BIG, F32).ctypes.data != address
    del view
    assert buffers.empty(BIG, F32).ctypes.data == address


def test_small_arrays_and_other_shapes_are_not_pooled():
    small = buffers.empty((4,), F32)
    assert buffers.held_bytes() == 0
    a = buffers.empty(BIG, F32)
    address = a.ctypes.data
    del a, small
    assert buffers.empty(BIG, np.dtype(np.int32)).ctypes.data != address
    assert buffers.empty((BIG[0] // 2, 2), F32).ctypes.data != address


def test_the_pool_stays_under_its_limit(monkeypatch):
    monkeypatch.setattr(buffers, "LIMIT_BYTES", 2 * buffers.MIN_BYTES)
    held = [buffers.empty(BIG, F32) for _ in range(3)]  # the third is not kept
    assert buffers.held_bytes() == 2 * buffers.MIN_BYTES
    del held
    other = buffers.empty((BIG[0] // 2, 2), F32)  # lets an unreferenced one go
    assert buffers.held_bytes() == 2 * buffers.MIN_BYTES
    assert other.shape == (BIG[0] // 2, 2)


def test_results_of_earlier_calls_are_never_overwritten():
    # Both gradients computed by the kernel (d/dy of x * y would be a copy of x).
    f = fg.compile_grad(lambda x, y: (x * y * y + fg.exp(x)).sum())
    rng = np.random.default_rng(0)
    first = [rng.standard_normal(BIG, dtype=np.float32) for _ in range(2)]
    second = [rng.standard_normal(BIG, dtype=np.float32) for _ in range(2)]
    reference = [g.copy() for g in f(*second)[1]]
    _, kept = f(*first)
    expected = [k.copy() for k in kept]
    for _ in range(2):
        _, grads = f(*second)
    np.testing.assert_array_equal(kept[0], expected[0])
    np.testing.assert_array_equal(kept[1], expected[1])
    # Dropped results are reused, and the new ones are right.
    addresses = {g.ctypes.data for g in kept + grads}
    del kept, grads
    _, grads = f(*second)
    assert {g.ctypes.data for g in grads} <= addresses
    np.testing.assert_array_equal(grads[0], reference[0])
    np.testing.assert_array_equal(grads[1], reference[1])
