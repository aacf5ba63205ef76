"""The host's faster ways to compute a node (runtime/host.py) give the primitive's
own `impl` bit for bit: every elementwise primitive split across threads, and the
branch-free where and relu against NumPy's where."""
from __future__ import annotations

import numpy as np
import pytest

from fusegrad.ir.errors import FusegradError
from fusegrad.ir.graph import Node, Value
from fusegrad.ir.interpreter import conformed, quiet, loud
from fusegrad.ir.primitive import ELEMENTWISE, REDUCTION, REGISTRY
from fusegrad.ir.primitives import _relu_impl, _where_impl
from fusegrad.runtime import host

ELEMENTWISE_PRIMITIVES = sorted((p for p in REGISTRY.values()
                                 if p.kind == ELEMENTWISE and p.name not in host._NOT_SPLIT),
                                key=lambda p: p.name)
PARAMS = {"cast": [{"dtype": np.dtype(np.float64)}, {"dtype": np.dtype(np.int32)}],
          "integer_pow": [{"n": 2}, {"n": 3}, {"n": -1}, {"n": 0}]}
ROWS, COLUMNS = 37, 24   # rows not a multiple of the threads; blocks not aligned


def _values(dtype, shape, rng) -> np.ndarray:
    """Random values with the awkward ones among them: NaN, infinities, -0.0, 0."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if dtype.kind in "iu":
        return rng.integers(-9 if dtype.kind == "i" else 0, 10, shape).astype(dtype)
    values = (rng.standard_normal(shape) * 3).astype(dtype)
    flat = values.reshape(-1)
    flat[:7] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 0.5, -2.5][:flat.size]
    return values


def _cases(prim):
    """(inputs' shapes and dtypes, params) the primitive accepts."""
    arity = {"where": 3}.get(prim.name, prim.impl.nin if isinstance(prim.impl, np.ufunc) else 1)
    if prim.name in ("hypot", "arctan2", "floor_divide", "remainder", "maximum", "minimum"):
        arity = 2
    shapes = [[(ROWS, COLUMNS)] * arity]
    if arity >= 2:   # broadcast: a row, a column, a scalar
        shapes += [[(ROWS, COLUMNS), (COLUMNS,)] + [(ROWS, COLUMNS)] * (arity - 2),
                   [(ROWS, 1)] + [(ROWS, COLUMNS)] * (arity - 1),
                   [(ROWS, COLUMNS)] * (arity - 1) + [()]]
    for dtype in (np.float32, np.float64, np.int32):
        for shape_list in shapes:
            dtypes = [np.bool_] + [dtype] * (arity - 1) if prim.name == "where" else [dtype] * arity
            for params in PARAMS.get(prim.name, [{}]):
                values = [Value(s, np.dtype(d)) for s, d in zip(shape_list, dtypes)]
                try:
                    prim.infer(*values, **params)
                except (FusegradError, TypeError):
                    continue
                yield values, dtypes, params


@pytest.mark.parametrize("prim", ELEMENTWISE_PRIMITIVES, ids=lambda p: p.name)
def test_split_elementwise_is_the_impl_bit_for_bit(prim, monkeypatch):
    monkeypatch.setattr(host, "thread_count", lambda: 2)
    monkeypatch.setattr(host, "PARALLEL_MIN_ELEMENTS", 64)
    rng = np.random.default_rng(abs(hash(prim.name)) % 2**32)
    checked = 0
    for values, dtypes, params in _cases(prim):
        shape, dtype = prim.infer(*values, **params)
        node = Node(prim, tuple(values), tuple(sorted(params.items())), (Value(shape, dtype),))
        split = host.host_impl(node)
        assert split is not None, f"{prim.name} on {[v.shape for v in values]} is not split"
        arrays = [_values(d, v.shape, rng) for v, d in zip(values, dtypes)]
        before = [a.copy() for a in arrays]
        token = quiet()   # as the evaluators run them
        try:
            try:
                expected = conformed(prim.impl(*arrays, **params), dtype, shape)
            except ValueError as error:   # (int ** -1): the split raises it too
                with pytest.raises(type(error)):
                    split(*arrays, **params)
                continue
            got = conformed(split(*arrays, **params), dtype, shape)
        finally:
            loud(token)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes(), (prim.name, dtypes, params)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(arrays, before))
        checked += 1
    assert checked, f"no case of {prim.name} was checked"


REDUCTIONS = sorted((p for p in REGISTRY.values() if p.kind == REDUCTION), key=lambda p: p.name)


@pytest.mark.parametrize("prim", REDUCTIONS, ids=lambda p: p.name)
def test_split_row_reductions_are_the_impl_bit_for_bit(prim, monkeypatch):
    monkeypatch.setattr(host, "thread_count", lambda: 2)
    monkeypatch.setattr(host, "PARALLEL_MIN_ELEMENTS", 64)
    rng = np.random.default_rng(3)
    for shape, axes in [((ROWS, COLUMNS), (1,)), ((ROWS, 6, 4), (1, 2)), ((ROWS, 6, 4), (2,)),
                        ((ROWS, 6, 4), (1,))]:
        for dtype in (np.float32, np.float64, np.int32):
            for keepdims in (False, True):
                x = Value(shape, np.dtype(dtype))
                out_shape, out_dtype = prim.infer(x, axes=axes, keepdims=keepdims)
                node = Node(prim, (x,), (("axes", axes), ("keepdims", keepdims)),
                            (Value(out_shape, out_dtype),))
                split = host.host_impl(node)
                assert split is not None
                array = _values(dtype, shape, rng)
                expected = conformed(prim.impl(array, axes=axes, keepdims=keepdims), out_dtype,
                                     out_shape)
                got = conformed(split(array, axes=axes, keepdims=keepdims), out_dtype, out_shape)
                assert got.tobytes() == expected.tobytes(), (shape, axes, dtype, keepdims)
    x = Value((ROWS, COLUMNS), np.dtype(np.float32))   # a column sum: the rows are reduced
    node = Node(prim, (x,), (("axes", (0,)), ("keepdims", False)), (Value((COLUMNS,), x.dtype),))
    assert host.host_impl(node) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_whole_sums_split_in_two_are_numpys_bit_for_bit(dtype, monkeypatch):
    """A large whole sum is cut where NumPy's pairwise sum cuts it: the same bits, with
    NaN, infinities and overflow among the terms; strided arrays are summed whole."""
    monkeypatch.setattr(host, "thread_count", lambda: 2)
    monkeypatch.setattr(host, "PARALLEL_MIN_ELEMENTS", 1 << 12)
    prim, rng = REGISTRY["reduce_sum"], np.random.default_rng(5)
    for shape in [(4099,), (1 << 13) + 13, (61, 131), (7, 5, 300)]:
        shape = shape if isinstance(shape, tuple) else (shape,)
        x = Value(shape, np.dtype(dtype))
        attrs = {"axes": tuple(range(len(shape))), "keepdims": False}
        split = host.host_impl(Node(prim, (x,), tuple(attrs.items()), (Value((), x.dtype),)))
        assert split is not None
        big = np.finfo(dtype).max / 4
        for values in (_values(dtype, shape, rng)[..., ::-1].copy(),   # with NaN, inf
                       (rng.standard_normal(shape) * 1e3).astype(dtype),
                       np.full(shape, big, dtype)):                    # overflows
            with np.errstate(over="ignore", invalid="ignore"):
                expected = conformed(prim.impl(values, **attrs), x.dtype, ())
                got = conformed(split(values, **attrs), x.dtype, ())
                strided = conformed(split(values.T, **attrs), x.dtype, ())
                assert strided.tobytes() == conformed(prim.impl(values.T, **attrs), x.dtype,
                                                      ()).tobytes()
            assert got.tobytes() == expected.tobytes(), (shape, values.reshape(-1)[:3])
    half = Value((64, 64), np.dtype(np.float16))   # float16 sums in float32: not split
    node = Node(prim, (half,), (("axes", (0, 1)), ("keepdims", False)), (Value((), half.dtype),))
    assert host.host_impl(node) is None


def test_one_thread_set_after_preparing_runs_the_node_whole(monkeypatch):
    monkeypatch.setattr(host, "thread_count", lambda: 2)
    monkeypatch.setattr(host, "PARALLEL_MIN_ELEMENTS", 64)
    x = Value((ROWS, COLUMNS), np.dtype(np.float32))
    split = host.host_impl(Node(REGISTRY["exp"], (x,), (), (Value(x.shape, x.dtype),)))
    monkeypatch.setattr(host, "thread_count", lambda: 1)
    monkeypatch.setattr(host, "run_parallel", lambda *a, **k: pytest.fail("ran on the pool"))
    array = np.random.default_rng(0).standard_normal((ROWS, COLUMNS)).astype(np.float32)
    assert split(array).tobytes() == np.exp(array).tobytes()


def test_small_or_one_row_nodes_are_not_split(monkeypatch):
    monkeypatch.setattr(host, "thread_count", lambda: 2)
    prim = REGISTRY["tanh"]
    small = Value((ROWS, COLUMNS), np.dtype(np.float32))
    assert host.host_impl(Node(prim, (small,), (), (Value(small.shape, small.dtype),))) is None
    monkeypatch.setattr(host, "PARALLEL_MIN_ELEMENTS", 64)
    row = Value((1, 4096), np.dtype(np.float32))
    assert host.host_impl(Node(prim, (row,), (), (Value(row.shape, row.dtype),))) is None


@pytest.mark.parametrize("name", ["exp", "tanh", "sin", "add", "div", "where", "relu"])
def test_split_of_strided_and_broadcast_views_is_the_impl_bit_for_bit(name, monkeypatch):
    # Blocks of rows keep every operand's strides: NumPy runs the same loops on them.
    monkeypatch.setattr(host, "thread_count", lambda: 2)
    monkeypatch.setattr(host, "PARALLEL_MIN_ELEMENTS", 64)
    prim, rng = REGISTRY[name], np.random.default_rng(4)
    transposed = _values(np.float32, (COLUMNS, ROWS), rng).T
    row_max = np.broadcast_to(_values(np.float32, (ROWS, 1), rng), (ROWS, COLUMNS))
    every_other = _values(np.float32, (ROWS, 2 * COLUMNS), rng)[:, ::2]
    operands = [transposed, row_max, every_other]
    arity = 3 if name == "where" else (prim.impl.nin if isinstance(prim.impl, np.ufunc) else 1)
    for first in range(len(operands)):
        arrays = [operands[(first + k) % len(operands)] for k in range(arity)]
        if name == "where":
            arrays[0] = arrays[0] > 0
        values = [Value(a.shape, a.dtype) for a in arrays]
        shape, dtype = prim.infer(*values)
        split = host.host_impl(Node(prim, tuple(values), (), (Value(shape, dtype),)))
        token = quiet()
        try:
            expected = conformed(prim.impl(*arrays), dtype, shape)
            assert conformed(split(*arrays), dtype, shape).tobytes() == expected.tobytes()
        finally:
            loud(token)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.int64,
                                   np.uint16, np.bool_, np.complex64])
def test_where_selects_bits_as_numpy_does(dtype):
    rng = np.random.default_rng(1)
    a = _values(dtype, (20, 10), rng) if dtype != np.complex64 else \
        (rng.standard_normal((20, 10)) + 1j).astype(dtype)
    b = a[::-1].copy()
    cond = rng.random((20, 10)) > 0.5
    zero, minus_zero = np.zeros((), dtype), np.asarray(-0.0).astype(dtype)
    cases = [(cond, a, b), (cond, a, zero), (cond, zero, b), (cond, a, minus_zero),
             (cond[:, :1], a, b[0]), (cond[0], a, b), (cond, a[0], zero),
             (np.array(True), a, b), (cond[:, ::2], a[:, ::2], b[0, :5])]
    for c, x, y in cases:
        expected = np.where(c, x, y)
        got = _where_impl(c, x, y)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()
        assert not np.shares_memory(got, x) and not np.shares_memory(got, y)
        out = np.empty(expected.shape, expected.dtype)
        assert _where_impl(c, x, y, out=out) is not None and out.tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32])
@pytest.mark.parametrize("shape", [(50,), (2, 3 << 13)], ids=["small", "filled-with-zeros"])
def test_relu_is_zero_where_not_positive_and_keeps_nan(dtype, shape):
    values = _values(dtype, shape, np.random.default_rng(2))
    # (From 2^14 elements a float result is filled with zeros first.)
    for x in (values, values[..., ::2], values.T):
        expected = np.where(x <= 0, 0, x).astype(dtype)   # the kernels' spelling
        assert _relu_impl(x).tobytes() == expected.tobytes()
        out = np.empty(x.shape, dtype)
        assert _relu_impl(x, out=out) is out and out.tobytes() == expected.tobytes()
    for value in values.reshape(-1)[:7]:   # 0-d arrays
        assert _relu_impl(np.asarray(value)).tobytes() == np.where(value <= 0, 0, value).astype(dtype).tobytes()
