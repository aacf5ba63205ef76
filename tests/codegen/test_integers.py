"""Integer arithmetic in kernels wraps around in the IR's dtype, as NumPy's does
(issue 9, item 3): compiled (fused and unfused), eager and the NumPy interpreter
agree bit for bit with NumPy itself, over a table of ops and every integer width.

Numba computes integer arithmetic in 64 bits (uint8 - uint8 is a uint64), so a
value that wraps in NumPy did not wrap in a kernel, and whatever read it (a cast to
float, a comparison, a sum) saw the wide value. Each dtype's table is one graph,
compiled once; every pair of the extreme values is one element of it.
"""
from __future__ import annotations

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import ir
from fusegrad.codegen import SourceNames, emit, plan_kernels
from fusegrad.ir import ops
from fusegrad.ir import primitives as P
from fusegrad.ir.graph import Value
from fusegrad.runtime import compile_graph

DTYPES = ["uint8", "int8", "int32", "uint32", "int64", "uint64"]
F64 = np.dtype(np.float64)


def extremes(dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    values = {0, 1, 2, 3, 100, info.max, info.max - 1, info.min, info.min + 1,
              info.max // 2 + 1, 46341}  # 46341**2 overflows int32
    if info.min < 0:
        values |= {-1, -2, -100}
    return np.array(sorted(v for v in values if info.min <= v <= info.max), dtype=dtype)


def signed(dtype) -> bool:
    return np.dtype(dtype).kind == "i"


# name -> (fusegrad ops on Values x, y; NumPy on arrays x, y). Each result is also
# cast to float64 (below): the cast reads the value a kernel holds before storing it.
TABLE = {
    "x+y": (ops.add, np.add),
    "x-y": (ops.sub, np.subtract),
    "x*y": (ops.mul, np.multiply),
    "x+100": (lambda x, y: x + 100, lambda x, y: x + 100),
    "x-1": (lambda x, y: x - 1, lambda x, y: x - 1),
    "x*2": (lambda x, y: x * 2, lambda x, y: x * 2),
    "x*x": (lambda x, y: ops.integer_pow(x, 2), lambda x, y: x * x),
    "x**3": (lambda x, y: ops.integer_pow(x, 3), lambda x, y: x * x * x),
    "x**7": (lambda x, y: ops.integer_pow(x, 7), lambda x, y: x ** 7),
    "-x": (lambda x, y: -x, lambda x, y: -x),
    "abs(x-y)": (lambda x, y: ops.abs(x - y), lambda x, y: np.abs(x - y)),
    "sign(x-y)": (lambda x, y: ops.sign(x - y), lambda x, y: np.sign(x - y)),
    "relu(x-y)": (lambda x, y: ops.relu(x - y),
                  lambda x, y: np.where(x - y <= 0, 0, x - y).astype(x.dtype)),
    "max(x+1,y)": (lambda x, y: ops.maximum(x + 1, y), lambda x, y: np.maximum(x + 1, y)),
    "min(x-1,y)": (lambda x, y: ops.minimum(x - 1, y), lambda x, y: np.minimum(x - 1, y)),
    "x+1<y": (lambda x, y: ops.lt(x + 1, y), lambda x, y: x + 1 < y),
    "x*y==0": (lambda x, y: ops.eq(x * y, 0), lambda x, y: x * y == 0),
    "where": (lambda x, y: ops.where(ops.gt(x, y), x - y, y * 3),
              lambda x, y: np.where(x > y, x - y, y * 3)),
    "(x-1)/2": (lambda x, y: ops.div(x - 1, 2),
                lambda x, y: ((x - 1).astype(np.float32) / np.float32(2))),
    "(x*y)*0.5": (lambda x, y: ops.mul(x * y, 0.5),
                  lambda x, y: (x * y).astype(np.float32) * np.float32(0.5)),
}


def _numpy(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return TABLE[name][1](x, y)


def grid(dtype) -> list[np.ndarray]:
    """x and y: every pair of extreme values."""
    return list(np.meshgrid(extremes(dtype), extremes(dtype), indexing="ij"))


def table_graph(dtype, names=tuple(TABLE)):
    """The ops `names` of TABLE on x and y, each with its float64 cast, and integer
    sums of x * y over rows and over everything, in x's dtype."""
    size = len(extremes(dtype))
    x, y = (Value((size, size), np.dtype(dtype), name) for name in "xy")
    outputs = []
    with ir.building() as builder:
        for name in names:
            result = TABLE[name][0](x, y)
            outputs += [result, ops.cast(result, F64)]
        product = ops.mul(x, y)
        # The primitive itself, in the IR's dtype: ops.reduce_sum widens narrow
        # integers first, as NumPy does, and the kernels must still wrap without it.
        outputs += [P.reduce_sum.bind(product, axes=(1,), keepdims=False),
                    P.reduce_sum.bind(product, axes=(0, 1), keepdims=False)]
    return builder.finish((x, y), tuple(outputs))


def expected(dtype, names=tuple(TABLE)) -> list[np.ndarray]:
    x, y = grid(dtype)
    result = []
    for name in names:
        value = _numpy(name, x, y)
        result += [value, value.astype(F64)]
    with np.errstate(over="ignore"):
        product = x * y
    return result + [product.sum(1, dtype=dtype), product.sum(dtype=dtype)]


def labels(names) -> list[str]:
    return [f"{name}{cast}" for name in names for cast in ("", " as f64")] + \
        ["sum(x*y, 1)", "sum(x*y)"]


def assert_bitwise(actual: list, wanted: list, what: str, names=tuple(TABLE)) -> None:
    assert len(actual) == len(wanted)
    for label, a, b in zip(labels(names), actual, wanted):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype, f"{what}, {label}: dtype {a.dtype} != {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=f"{what}, {label}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_interpreter_wraps_like_numpy(dtype):
    assert_bitwise(ir.evaluate(table_graph(dtype), grid(dtype)), expected(dtype), "interpreter")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_kernel_wraps_like_numpy(dtype):
    executable = compile_graph(ir.optimize(table_graph(dtype)))
    assert executable.kernel_count == len(executable.steps)  # nothing left to NumPy
    assert_bitwise(executable(grid(dtype)), expected(dtype), "fused")


def test_unfused_kernels_wrap_like_numpy():
    # One kernel per primitive: the ops that wrap, in the widest signed dtype.
    names = ("x-y", "x*y", "x**7", "-x", "abs(x-y)")
    executable = compile_graph(ir.optimize(table_graph("int64", names)), fuse=False)
    assert_bitwise(executable(grid("int64")), expected("int64", names), "unfused", names)


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_integer_statements_are_cast_back_to_their_dtype(target):
    """The emitter is shared: CUDA's source casts as the CPU's does, and float
    statements keep their plain spelling."""
    u = Value((4,), np.dtype(np.uint8), "u")
    i = Value((4,), np.dtype(np.int32), "i")
    x = Value((4,), np.dtype(np.float32), "x")
    with ir.building() as builder:
        out = ops.cast(u - 1, np.float32) + ops.cast(i * i, np.float32) + x * x
    graph = builder.finish((u, i, x), (out,))
    plan = plan_kernels(graph)
    (kernel,) = plan.steps
    source = emit(kernel, SourceNames(graph), plan, target)
    assert "np.uint8(u[i0] - np.uint8(1))" in source
    # Signed arithmetic in unsigned 64 bits: Numba's signed overflow is undefined.
    assert "np.int32(np.uint64(i[i0]) * np.uint64(i[i0]))" in source
    assert "= x[i0] * x[i0]" in source


def test_eager_wraps_like_numpy():
    u = np.array([0, 1, 255], np.uint8)
    i = np.array([-128, 100, 127], np.int8)
    assert_same = np.testing.assert_array_equal
    assert_same((fg.tensor(u) - 1).numpy(), u - 1)
    assert (fg.tensor(u) - 1).numpy().dtype == np.uint8
    assert_same((fg.tensor(i) * 2).numpy(), i * 2)
    assert_same(((fg.tensor(u) + 100).float()).numpy(), (u + 100).astype(np.float32))


def test_out_of_range_integer_constants_are_refused():
    """NumPy 2 refuses `uint8_array + 300` (NEP 50); a kernel would wrap it to 44."""
    u = Value((3,), np.dtype(np.uint8), "u")
    with ir.building(), pytest.raises(ir.DTypeError, match="300 out of bounds for uint8"):
        ops.add(u, 300)
    with ir.building(), pytest.raises(ir.DTypeError, match="-1 out of bounds for uint8"):
        ops.mul(u, -1)


def test_integer_to_negative_power_is_refused():
    i = Value((3,), np.dtype(np.int32), "i")
    with ir.building(), pytest.raises(ir.DTypeError, match="negative integer powers"):
        ops.power(i, -1)


def test_compile_grad_sees_the_wrapped_value():
    """The issue's report: `(u - 1)` at u = 0 (uint8) is 255 for what reads it, not 2**64 - 1."""
    u = np.array([0, 1, 200], np.uint8)
    x = np.array([1.0, 2.0, 3.0], np.float32)
    value, grad = fg.compile_grad(lambda u, x: ((u - 1).float() * x).sum(), wrt=1)(u, x)
    np.testing.assert_array_equal(grad, (u - 1).astype(np.float32))
    assert value == np.float32(255 * 1 + 0 * 2 + 199 * 3)
