"""`fg.compile_grad` end to end: values and gradients against HIPS autograd and the
NumPy interpreter of the joint graph, the call conventions of compile_grad, caching,
and awkward inputs.

Numba compilation dominates the run time, so every workload is compiled once per
dtype by a module-level `CompiledGrad` that all tests share, shapes are few, only
two graphs are compiled unfused and two with the threaded kernel variant.
"""
from __future__ import annotations

import re
import types

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg
import fusegrad.runtime.executable as executable
from fusegrad.runtime import stats

pytestmark = pytest.mark.filterwarnings("ignore:Output seems independent of input")

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]


def _random(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def anp_logsumexp(x, axis):
    """A stable logsumexp for autograd (autograd.scipy needs SciPy)."""
    shift = anp.max(x, axis=axis, keepdims=True)
    total = anp.log(anp.sum(anp.exp(x - shift), axis=axis, keepdims=True)) + shift
    return anp.squeeze(total, axis=axis)


# ---------------------------------------------------------------- the workloads
# Each is written once against a namespace `m`: fusegrad itself, or AUTOGRAD below.

AUTOGRAD = types.SimpleNamespace(
    tanh=anp.tanh, exp=anp.exp, sin=anp.sin, sqrt=anp.sqrt, abs=anp.abs,
    logsumexp=lambda x, axis: anp_logsumexp(x, axis=axis),
    var=lambda x, axis, keepdims: anp.var(x, axis=axis, keepdims=keepdims))


def mlp_source(m):
    def mlp(x, w1, b1, w2, y):
        h = m.tanh(x @ w1 + b1)
        return ((h @ w2 - y) ** 2).mean()
    return mlp


LAYERNORM_WEIGHTS = _random(5, 4, 6)  # the fixed array the normalised rows are summed against


def layernorm_source(m, dtype=F64):
    weights = LAYERNORM_WEIGHTS.astype(dtype)  # closed over: a captured constant

    def layernorm(x, g, b):
        centred = x - x.mean(1, keepdims=True)
        y = centred / m.sqrt(m.var(x, 1, keepdims=True) + 1e-5) * g + b
        return (y * weights).sum()
    return layernorm


def cross_entropy_source(m):
    def cross_entropy(L, T):
        return (m.logsumexp(L, 1) - (L * T).sum(1)).mean()
    return cross_entropy


def chain_source(m):
    def chain(x, y):
        return (x**2 * m.exp(x) + m.sin(x) * y - m.tanh(x * y) + m.sqrt(m.abs(y) + 1)).sum()
    return chain


def reductions(x, z):
    """axis=/keepdims= and dim=/keepdim= spellings; max/min with dim= give (values, indices)."""
    row_max, row_arg = z.max(dim=1)
    column_min = z.min(dim=0, keepdim=True).values
    total = (x.sum(axis=1) ** 2).sum()
    total = total + (x.max(axis=(0, 2), keepdims=True) * x.mean(dim=2, keepdim=True)).sum()
    total = total + (row_max * row_arg).sum() + (column_min * z).mean()
    total = total + fg.logsumexp(z, axis=0).sum() + z.max(axis=1).sum() + fg.sum(z, dim=1).max()
    return total


def reductions_reference(x, z):
    total = (anp.sum(x, axis=1) ** 2).sum()
    total = total + (anp.max(x, axis=(0, 2), keepdims=True)
                     * anp.mean(x, axis=2, keepdims=True)).sum()
    row_arg = np.argmax(getattr(z, "_value", z), axis=1)  # z may be an autograd box
    total = total + (anp.max(z, axis=1) * row_arg).sum()
    total = total + (anp.min(z, axis=0, keepdims=True) * z).mean()
    total = total + anp_logsumexp(z, axis=0).sum() + anp.max(z, axis=1).sum()
    total = total + anp.max(anp.sum(z, axis=1))
    return total


def mlp_inputs():
    return (_random(1, 5, 4), _random(2, 4, 6) * 0.5, _random(3, 6), _random(4, 6, 3) * 0.5,
            _random(6, 5, 3))


def layernorm_inputs():
    return _random(7, 4, 6) + 0.5, 1 + 0.1 * _random(8, 6), 0.1 * _random(9, 6)


def cross_entropy_inputs():
    logits = 3 * _random(10, 4, 7)
    targets = np.zeros((4, 7))
    targets[np.arange(4), [1, 6, 0, 3]] = 1
    return logits, targets


def chain_inputs():
    x = np.random.default_rng(11).uniform(-2, 2, (4, 5))
    y = _random(12, 5)
    y[np.abs(y) < 0.1] = 0.5  # keep away from the kink of abs
    return x, y


def reductions_inputs():
    return _random(13, 2, 3, 4), _random(14, 3, 4)


# name -> (the fusegrad function, the autograd reference, inputs in float64)
WORKLOADS = {
    "mlp": (mlp_source(fg), mlp_source(AUTOGRAD), mlp_inputs),
    "layernorm": (None, layernorm_source(AUTOGRAD), layernorm_inputs),
    "cross_entropy": (cross_entropy_source(fg), cross_entropy_source(AUTOGRAD),
                      cross_entropy_inputs),
    "chain": (chain_source(fg), chain_source(AUTOGRAD), chain_inputs),
    "reductions": (reductions, reductions_reference, reductions_inputs),
}

# Compiled once per workload (and per dtype, through the signature cache), shared by all tests.
COMPILED = {name: fg.compile_grad(fn) for name, (fn, _, _) in WORKLOADS.items() if fn is not None}
_LAYERNORM = {dtype: fg.compile_grad(layernorm_source(fg, dtype)) for dtype in DTYPES}


def compiled(name: str, dtype) -> fg.CompiledGrad:
    return _LAYERNORM[np.dtype(dtype)] if name == "layernorm" else COMPILED[name]


def inputs(name: str, dtype) -> tuple[np.ndarray, ...]:
    return tuple(a.astype(dtype) for a in WORKLOADS[name][2]())


def autograd_reference(name: str, args) -> list[np.ndarray]:
    """[value, *grads] by HIPS autograd, in float64."""
    reference = WORKLOADS[name][1]
    args = [np.asarray(a, dtype=np.float64) for a in args]
    value = reference(*args)
    return [np.asarray(value)] + [autograd.grad(reference, i)(*args) for i in range(len(args))]


# ---------------------------------------------------------------- values and gradients

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_matches_autograd(name, dtype, assert_all_close, flatten):
    args = inputs(name, dtype)
    copies = [a.copy() for a in args]
    results = flatten(compiled(name, dtype)(*args))
    # float32 in, float32 out: no silent upcast anywhere, value included.
    assert [r.dtype for r in results] == [dtype] * len(results)
    assert results[0].shape == ()
    assert_all_close(results, autograd_reference(name, args), dtype, what=name)
    for before, after in zip(copies, args):
        np.testing.assert_array_equal(before, after, err_msg="an input was written to")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_matches_interpreter(name, dtype, interpret, assert_all_close, flatten):
    f = compiled(name, dtype)
    args = inputs(name, dtype)
    assert_all_close(flatten(f(*args)), interpret(f, *args), dtype, what=name)


def test_max_and_min_with_dim_return_values_and_indices():
    seen = {}

    def probe(z):
        seen["dim"] = z.max(dim=1)
        seen["axis"] = z.max(axis=1)
        seen["min"] = z.min(dim=0, keepdim=True)
        return seen["axis"].sum()

    fg.compile_grad(probe).dump(np.zeros((3, 4)))  # traces (and plans) without running
    values, indices = seen["dim"]
    assert seen["dim"].values is values and seen["dim"].indices is indices
    assert values.shape == (3,) and indices.shape == (3,) and indices.dtype == np.int64
    assert isinstance(seen["axis"], fg.Tensor) and seen["axis"].shape == (3,)
    assert seen["min"].values.shape == (1, 4) and seen["min"].indices.shape == (1, 4)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_fused_equals_unfused_equals_interpreter(fuse, interpret, assert_all_close, flatten):
    # Only the small cross-entropy graph is compiled unfused (one kernel per primitive).
    f = COMPILED["cross_entropy"] if fuse else _unfused_cross_entropy()
    args = inputs("cross_entropy", F32)
    fused = flatten(COMPILED["cross_entropy"](*args))
    result = flatten(f(*args))
    assert_all_close(result, fused, F32, what="unfused vs fused")
    assert_all_close(result, interpret(f, *args), F32, what="vs interpreter")


_UNFUSED: dict = {}


def _unfused_cross_entropy() -> fg.CompiledGrad:
    if "f" not in _UNFUSED:
        _UNFUSED["f"] = fg.compile_grad(cross_entropy_source(fg), fuse=False)
    return _UNFUSED["f"]


def test_unfused_runs_one_kernel_per_primitive(traced_for):
    f = _unfused_cross_entropy()
    args = inputs("cross_entropy", F32)
    f(*args)  # compiled by the test above when it ran first
    traced = traced_for(f, *args)
    stats.reset()
    f(*args)
    counts = stats.snapshot()
    assert counts["compiles"] == 0
    assert counts["kernels_launched"] == traced.executable.kernel_count > 5


@pytest.mark.parametrize("name", ["layernorm", "chain"])
def test_threaded_kernels(name, monkeypatch, traced_for, interpret, assert_all_close, flatten):
    """Chunks of rows on the thread pool, per-chunk partial sums; the chain gets an odd
    number of rows, so that chunks differ in size. The first call compiles on one
    thread: the second runs every chunk on the pool."""
    monkeypatch.setattr(executable, "PARALLEL_MIN_SIZE", 0)
    source = layernorm_source(fg, F64) if name == "layernorm" else chain_source(fg)
    f = fg.compile_grad(source)
    args = inputs(name, F64)
    if name == "chain":
        args = (np.concatenate([args[0], args[0][:1] * 0.5]),) + args[1:]  # 5 rows
    first = flatten(f(*args))
    result = flatten(f(*args))
    steps = [s for s in traced_for(f, *args).executable.steps if hasattr(s, "launch")]
    assert steps and all(s.threaded for s in steps if s.compiled.runs_chunks)
    assert_all_close(result, interpret(f, *args), F64, what=f"threaded {name}")
    for a, b in zip(first, result):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- wrt

def _weighted(x, y, z):
    return (x * y + z).sum()


X3, Y3, Z3 = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 4.0]), np.array([2.0, 2.0, 2.0])


def test_wrt_none_differentiates_every_float_array_in_argument_order():
    value, grads = fg.compile_grad(_weighted)(X3, Y3, Z3)
    assert isinstance(grads, tuple) and len(grads) == 3
    np.testing.assert_array_equal(value, (X3 * Y3 + Z3).sum())
    for grad, expected in zip(grads, (Y3, X3, np.ones(3))):
        np.testing.assert_array_equal(grad, expected)


def test_wrt_none_skips_integer_arrays():
    y = np.array([1, 2, 3])
    _, grads = fg.compile_grad(_weighted)(X3, y, Z3)
    assert len(grads) == 2
    np.testing.assert_array_equal(grads[0], y.astype(float))
    np.testing.assert_array_equal(grads[1], np.ones(3))


def test_wrt_int_gives_one_array():
    _, grad = fg.compile_grad(_weighted, wrt=1)(X3, Y3, Z3)
    assert isinstance(grad, np.ndarray)
    np.testing.assert_array_equal(grad, X3)
    _, grad = fg.compile_grad(_weighted, wrt=-3)(X3, Y3, Z3)
    np.testing.assert_array_equal(grad, Y3)


def test_wrt_tuple_gives_a_tuple_in_the_order_asked():
    _, grads = fg.compile_grad(_weighted, wrt=(2, 0))(X3, Y3, Z3)
    assert isinstance(grads, tuple) and len(grads) == 2
    np.testing.assert_array_equal(grads[0], np.ones(3))
    np.testing.assert_array_equal(grads[1], Y3)
    _, grads = fg.compile_grad(_weighted, wrt=(1,))(X3, Y3, Z3)
    assert isinstance(grads, tuple) and len(grads) == 1
    np.testing.assert_array_equal(grads[0], X3)


# ---------------------------------------------------------------- constants and caching

def test_constants_are_part_of_the_cache_key():
    traces = []

    def scaled(x, k, mode):
        traces.append((k, mode))
        y = fg.sin(x) if mode == "sin" else fg.tanh(x)
        return (y * k).sum()

    f = fg.compile_grad(scaled, wrt=0)
    x = np.array([0.5, -1.0])
    for k, mode in [(2.0, "sin"), (3.0, "sin"), (2.0, "tanh"), (2, "sin"), (2.0, "sin")]:
        value, grad = f(x, k, mode)
        y, dy = (np.sin(x), np.cos(x)) if mode == "sin" else (np.tanh(x), 1 - np.tanh(x) ** 2)
        np.testing.assert_allclose(value, (y * k).sum(), rtol=1e-12)
        np.testing.assert_allclose(grad, dy * k, rtol=1e-12)
    # 2 (int) and 2.0 (float) are different constants; the last call reuses the first trace.
    assert traces == [(2.0, "sin"), (3.0, "sin"), (2.0, "tanh"), (2, "sin")]


def test_negative_zero_constant_is_not_positive_zero():
    # 0.0 == -0.0 and they hash alike, but x / 0.0 and x / -0.0 differ in sign.
    f = fg.compile_grad(lambda x, k: (x / k).sum(), wrt=0)
    x = np.array([1.0, 2.0])
    with np.errstate(divide="ignore"):
        assert f(x, 0.0)[0] == np.inf
        assert f(x, -0.0)[0] == -np.inf


def test_same_signature_neither_retraces_nor_recompiles():
    traces = []

    def counted(x, y):
        traces.append(x.shape)
        return (x * fg.exp(y)).sum()

    f = fg.compile_grad(counted)
    x, y = np.array([[1.0, 2.0, 3.0]]), np.array([0.5, -0.5, 0.0])
    first = f(x, y)
    stats.reset()
    again = f(x + 1, y)
    counts = stats.snapshot()
    assert traces == [(1, 3)]
    assert counts["compiles"] == 0 and counts["cache_loads"] == 0
    assert counts["kernels_launched"] >= 1
    np.testing.assert_allclose(again[0], ((x + 1) * np.exp(y)).sum())
    np.testing.assert_array_equal(first[1][0], np.exp(y)[None, :])

    bigger = np.arange(6.0).reshape(2, 3)
    value, (gx, gy) = f(bigger, y)
    assert traces == [(1, 3), (2, 3)]
    np.testing.assert_allclose(value, (bigger * np.exp(y)).sum())
    np.testing.assert_allclose(gx, np.broadcast_to(np.exp(y), (2, 3)))
    np.testing.assert_allclose(gy, bigger.sum(0) * np.exp(y))


# ---------------------------------------------------------------- NaN and infinities

def _with_nan_row(x):
    return (x * x).sum() + x.max(axis=1).sum() + x.max(axis=0).sum() + fg.relu(x).sum()


NAN_INF_CASES = {
    # name: (function, inputs, expected value from NumPy)
    "nan times": (lambda x, y: (x * y).sum(),
                  (np.array([1.0, 2.0, 3.0]), np.array([1.0, np.nan, 2.0])), np.nan),
    "exp overflow": (lambda x: fg.exp(x).sum(), (np.array([0.0, 1000.0]),), np.inf),
    "log of 0 and -1": (lambda x: fg.log(x).sum(), (np.array([1.0, 0.0, -1.0]),), np.nan),
    "log of 0": (lambda x: fg.log(x).sum(), (np.array([1.0, 0.0]),), -np.inf),
    "max with nan": (_with_nan_row, (np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, -1.0]]),), np.nan),
}


@pytest.mark.parametrize("case", list(NAN_INF_CASES))
def test_nan_and_inf_propagate_as_in_numpy(case, interpret):
    fn, args, expected = NAN_INF_CASES[case]
    f = fg.compile_grad(fn)
    with np.errstate(all="ignore"):
        result = f(*args)
    value, grads = result
    np.testing.assert_array_equal(value, expected)
    for grad, oracle in zip(grads, interpret(f, *args)[1:]):
        np.testing.assert_array_equal(grad, oracle)  # NaN where NumPy has NaN, same infinities


def test_nan_and_inf_gradients_in_place():
    x, y = NAN_INF_CASES["nan times"][1]
    _, (gx, gy) = fg.compile_grad(NAN_INF_CASES["nan times"][0])(x, y)
    np.testing.assert_array_equal(gx, y)  # the NaN stays where it was, nowhere else
    np.testing.assert_array_equal(gy, x)
    fn, args, _ = NAN_INF_CASES["exp overflow"]
    _, (g,) = fg.compile_grad(fn)(*args)
    np.testing.assert_array_equal(g, [1.0, np.inf])
    fn, args, _ = NAN_INF_CASES["log of 0 and -1"]
    with np.errstate(divide="ignore"):
        _, (g,) = fg.compile_grad(fn)(*args)
    np.testing.assert_array_equal(g, [1.0, np.inf, -1.0])


# ---------------------------------------------------------------- awkward inputs

def _sum_of_squares(x, y):
    return (x * x).sum() + (3 * y).sum()


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0,)])
def test_zero_size_inputs(shape):
    x = np.ones(shape)
    value, (gx, gy) = fg.compile_grad(_sum_of_squares)(x, np.array([1.0, 2.0]))
    assert value == 9.0
    assert gx.shape == shape and gx.dtype == F64
    np.testing.assert_array_equal(gy, [3.0, 3.0])


def test_mean_of_zero_size_is_nan_as_in_numpy():
    value, grad = fg.compile_grad(lambda x: x.mean(), wrt=0)(np.ones((0, 3), np.float32))
    assert np.isnan(value) and value.dtype == F32 and grad.shape == (0, 3)


def test_zero_dimensional_inputs():
    def f(s, v):
        return (s * v).sum() + s ** 2

    s, v = np.array(2.0), np.array([1.0, 3.0])
    value, (gs, gv) = fg.compile_grad(f)(s, v)
    assert value.shape == () and gs.shape == () and gv.shape == (2,)
    assert value == 12.0 and gs == 8.0
    np.testing.assert_array_equal(gv, [2.0, 2.0])


def test_zero_dimensional_result_without_reduction():
    value, grad = fg.compile_grad(lambda s: s * s * 3, wrt=0)(np.array(2.0, np.float32))
    assert value == 12.0 and value.dtype == F32 and value.shape == ()
    assert grad == 12.0 and grad.shape == () and grad.dtype == F32


def _layouts(array: np.ndarray) -> dict[str, np.ndarray]:
    """The same values as `array` in memory layouts the kernels do not read directly."""
    strided = np.zeros((2 * array.shape[0], 3 * array.shape[1]), array.dtype)
    strided[::2, 1::3] = array
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    read_only = array.copy()
    read_only.flags.writeable = False
    return {"strided": strided[::2, 1::3], "fortran": np.asfortranarray(array),
            "big-endian": big_endian, "read-only": read_only, "transposed": array.T.copy().T}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_memory_layouts_give_the_same_results(dtype, flatten):
    f = COMPILED["chain"]
    x, y = inputs("chain", dtype)
    expected = flatten(f(x, y))
    for layout, arg in _layouts(x).items():
        assert np.array_equal(arg, x)
        copy = arg.copy()
        results = flatten(f(arg, y[::-1].copy()[::-1]))
        for got, want in zip(results, expected):
            assert got.dtype == dtype and got.dtype.isnative, layout
            np.testing.assert_array_equal(got, want, err_msg=layout)
        np.testing.assert_array_equal(arg, copy, err_msg=f"{layout} input was written to")


def test_python_lists_are_accepted_as_arrays():
    value, (gx, gy) = fg.compile_grad(COMPILED["chain"].fn)([[0.5, -1.0], [1.5, 0.0]], [1.0, -2.0])
    x, y = np.array([[0.5, -1.0], [1.5, 0.0]]), np.array([1.0, -2.0])
    reference = autograd_reference("chain", (x, y))
    np.testing.assert_allclose(value, reference[0], rtol=1e-12)
    np.testing.assert_allclose(gx, reference[1], rtol=1e-12)
    np.testing.assert_allclose(gy, reference[2], rtol=1e-12)


# ---------------------------------------------------------------- comparisons

def test_eq_and_ne_trace_elementwise_in_both_operand_orders():
    # Identity equality traced `x * (tokens != 0)` as `x * True`: a wrong loss and
    # wrong gradients, silently. Each term puts a different operand on the left.
    @fg.compile_grad(wrt=0)
    def loss(z, tokens, labels):
        onehot = np.arange(3)[None, :] == labels[:, None]           # ndarray == tensor
        return ((z * onehot).sum()
                + (z * (tokens != 0)[:, None]).mean()                # tensor != int
                + (z * (0.0 == tokens)[:, None]).sum()               # float == tensor
                + 0.5 * (z * (labels[:, None] != np.arange(3))).sum()   # tensor != ndarray
                + (z * (np.int64(1) == labels)[:, None]).sum()       # NumPy scalar == tensor
                + (z * (labels == labels)[:, None]).sum())           # tensor == tensor

    z = np.arange(12.0).reshape(4, 3) - 5
    tokens, labels = np.array([0, 7, 0, 2]), np.array([2, 0, 1, 1])
    onehot = np.arange(3)[None, :] == labels[:, None]
    expected = (onehot + (tokens != 0)[:, None] / 12 + (tokens == 0)[:, None]
                + 0.5 * ~onehot + (labels == 1)[:, None] + 1)
    value, grad = loss(z, tokens, labels)
    np.testing.assert_allclose(grad, expected, rtol=1e-12)
    np.testing.assert_allclose(value, (z * expected).sum(), rtol=1e-12)


def test_branching_on_a_traced_equality_is_a_trace_error():
    def branchy(x, y):
        return x.sum() if x == y else y.sum()
    with pytest.raises(fg.TraceError, match="truth value"):
        fg.compile_grad(branchy)(X3, Y3)


# ---------------------------------------------------------------- names read from outside

OFFSET = np.array([1.0, 2.0, 3.0])   # a module global that a traced function reads


def _offset_loss(x):
    return (x * OFFSET).sum()


def test_a_rebound_closed_over_array_or_number_retraces():
    w, k = np.array([1.0, 2.0, 3.0]), 1.0
    f = fg.compile_grad(lambda x: (x * w).sum() * k, wrt=0)
    assert f(X3)[0] == 14.0
    w[0] = 10.0                      # in place: the trace holds w itself and sees it
    assert f(X3)[0] == 23.0
    w = np.array([0.0, 0.0, 1.0])    # rebound: the trace held the old array (gave 23)
    value, grad = f(X3)
    assert value == 3.0 and grad.tolist() == [0.0, 0.0, 1.0]
    k = 2.0                          # a rebound number: a constant of the old trace
    assert f(X3)[0] == 6.0


def test_a_rebound_global_array_retraces():
    global OFFSET
    f = fg.compile_grad(_offset_loss, wrt=0)
    saved = OFFSET
    try:
        assert f(X3)[0] == 14.0
        OFFSET = np.ones(3)
        value, grad = f(X3)
        assert value == 6.0 and grad.tolist() == [1.0, 1.0, 1.0]
    finally:
        OFFSET = saved


def test_names_the_function_assigns_do_not_retrace():
    traces, calls = [], 0

    def counting(x):
        nonlocal calls
        calls += 1                   # rebinds `calls` on every call, by design
        traces.append(1)
        return x.sum()

    f = fg.compile_grad(counting)
    for _ in range(3):
        f(X3)
    assert len(traces) == 1


def test_rebinding_on_every_call_warns_once(recwarn):
    from fusegrad.tracer.compile import REBIND_WARNING
    w = np.zeros(3)
    f = fg.compile_grad(lambda x: (x * w).sum(), wrt=0)
    for i in range(REBIND_WARNING + 3):
        w = np.full(3, float(i))
        assert f(X3)[0] == 6.0 * i
    messages = [str(w.message) for w in recwarn.list if "rebound" in str(w.message)]
    assert len(messages) == 1 and "'w'" in messages[0] and "as an argument" in messages[0]


# ---------------------------------------------------------------- no aliasing

def test_gradient_equal_to_an_input_is_a_copy():
    x = np.array([1.0, -2.0, 3.0])
    keep = x.copy()
    value, grad = fg.compile_grad(lambda x: 0.5 * (x ** 2).sum(), wrt=0)(x)
    np.testing.assert_array_equal(grad, x)
    assert grad is not x and not np.shares_memory(grad, x)
    grad[:] = 0
    np.testing.assert_array_equal(x, keep)


ALIASING_CASES = {
    # gx is y and gy is x
    "product": (lambda x, y: (x * y).sum(), (4,), (4,)),
    # gx is y reshaped, gy is x reshaped: views, if nothing copies them
    "reshape": (lambda x, y: (x.reshape(2, 2) * y).sum(), (4,), (2, 2)),
    # gx is y transposed
    "transpose": (lambda x, y: (x.T * y).sum(), (3, 2), (2, 3)),
}


@pytest.mark.parametrize("case", list(ALIASING_CASES))
def test_outputs_never_alias_inputs(case):
    fn, x_shape, y_shape = ALIASING_CASES[case]
    x = np.arange(1.0, 1.0 + np.prod(x_shape)).reshape(x_shape)
    y = -np.arange(1.0, 1.0 + np.prod(y_shape)).reshape(y_shape)
    x_copy, y_copy = x.copy(), y.copy()
    value, grads = fg.compile_grad(fn)(x, y)
    for grad in grads:
        assert not np.shares_memory(grad, x) and not np.shares_memory(grad, y), case
        grad[...] = 7.0  # results belong to the caller
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(y, y_copy)


def test_outputs_never_alias_each_other():
    def f(x, y):
        return ((x.reshape(2, 2) + y) ** 2).sum()  # gx is gy reshaped

    x, y = np.arange(4.0), np.ones((2, 2))
    _, (gx, gy) = fg.compile_grad(f)(x, y)
    np.testing.assert_array_equal(gx, 2 * (x + 1))
    assert not np.shares_memory(gx, gy)


def test_constant_gradients_are_fresh_on_every_call():
    f = fg.compile_grad(lambda x, y: (x + 2 * y).sum())
    x, y = np.ones(3), np.ones(3)
    _, (gx, gy) = f(x, y)
    gx[:] = -1
    gy[:] = -1
    _, (gx, gy) = f(x, y)
    np.testing.assert_array_equal(gx, np.ones(3))
    np.testing.assert_array_equal(gy, np.full(3, 2.0))


# ---------------------------------------------------------------- dumps

def test_dump_env_prints_on_compilation_only(monkeypatch, capsys):
    monkeypatch.setenv("FUSEGRAD_DUMP", "1")
    f = fg.compile_grad(chain_source(fg))  # a fresh trace cache; the kernels are shared
    args = inputs("chain", F64)
    f(*args)
    printed = capsys.readouterr().out
    assert "forward IR of chain" in printed and "kernel plan" in printed
    f(*args)
    assert capsys.readouterr().out == ""


def test_dump_without_env_prints_nothing(monkeypatch, capsys):
    monkeypatch.delenv("FUSEGRAD_DUMP", raising=False)
    fg.compile_grad(chain_source(fg))(*inputs("chain", F64))
    assert capsys.readouterr().out == ""


def test_dump_sections_and_source(traced_for):
    f = COMPILED["mlp"]
    args = inputs("mlp", F32)
    text = f.dump(*args)
    positions = [text.find(section) for section in
                 ("forward IR", "backward", "kernel plan", "generated source")]
    assert -1 not in positions and positions == sorted(positions), positions
    source = text[text.index("# generated source"):]
    assert "@njit" in source and "for chunk in range(first, last):" in source
    # The kernels speak the dump's language: parameters keep the user's names, and
    # every value a kernel computes is assigned under its IR name.
    for name in ("b1", "y"):
        assert f"{name}[" in source
    traced = traced_for(f, *args)
    for step in traced.executable.steps:
        if hasattr(step, "kernel"):
            for node in step.kernel.nodes:
                name = traced.executable.names.ir(node.out)
                assert f"# {name} = {node.primitive.name}" in step.source, name
    assert f.dump(*args) == text


def _defined(dump: str) -> list[str]:
    return re.findall(r"^def (\w+)\(", dump, re.MULTILINE)


def test_dump_shows_each_kernel_once_under_one_header(monkeypatch):
    """Each kernel's one function, under the header its file shares with the others,
    with a note saying whether its chunks run on threads at these shapes."""
    monkeypatch.delenv("FUSEGRAD_DUMP", raising=False)
    f, args = COMPILED["mlp"], inputs("mlp", F32)
    text = f.dump(*args)
    kernels = [s.kernel.name for s in f.trace(*args).executable.steps if hasattr(s, "kernel")]
    assert len(kernels) >= 2
    assert _defined(text) == kernels
    assert text.count("# Generated by fusegrad") == 1 and text.count("import math") == 1
    assert text.count("@njit(") == len(kernels) and "parallel=True" not in text
    assert "; single-threaded: " in text and "; threaded: " not in text   # small shapes


def test_dump_says_where_chunks_run_on_threads(monkeypatch):
    monkeypatch.setattr(executable, "PARALLEL_MIN_SIZE", 0)
    monkeypatch.delenv("FUSEGRAD_DUMP", raising=False)
    text = fg.compile_grad(chain_source(fg)).dump(*inputs("chain", F64))
    assert _defined(text) and "; threaded: " in text and "single-threaded" not in text


def test_dump_kernel_comments_carry_parameters_and_the_source_line(monkeypatch):
    """A statement's comment is its IR line as the dump prints it, with the user's line."""
    monkeypatch.delenv("FUSEGRAD_DUMP", raising=False)
    f, args = COMPILED["mlp"], inputs("mlp", F32)
    text = f.dump(*args)
    source = text[text.index("# generated source"):]
    line = mlp_source.__code__.co_firstlineno  # mlp's own lines follow it
    statement = re.search(r"^ +\w+ = .*# (\w+) = integer_pow\[n=2\] \w+ +# test_compile_grad\.py:(\d+)$",
                          source, re.MULTILINE)
    assert statement, source
    assert line < int(statement.group(2)) <= line + 8
    assert re.search(r"# \w+ = reduce_sum\[axes=\(.*\), keepdims=\w+\] \w+ +# test_compile_grad", source)
