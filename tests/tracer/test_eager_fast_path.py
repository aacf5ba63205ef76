"""The eager fast path (issue 12, eager per-op cost) behaves as the general way does.

An op of eager tensors and Python numbers is, from its second call on, a lookup and a
prepared NumPy run (`executor.apply_fast`); `executor.apply` is the general way and
the reference. Compared here: values and dtypes bit for bit, which results share
storage (a view shares its base's version counter), grad_fn and requires_grad,
errors with the user's line; and what the lookup must tell apart (-0.0 and 0.0, a
float and an int, new shapes); backward plans run on the prepared interpreter
(`ir.interpreter.evaluator`), which makes its constants once and read-only.
"""
from __future__ import annotations

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir.errors import ShapeError
from fusegrad.tracer import executor
from fusegrad.tracer import functions as F
from fusegrad.tracer.dispatch import apply

RNG = np.random.default_rng(5)


def _tensor(shape, requires_grad=False, dtype=np.float32):
    return fg.tensor(RNG.standard_normal(shape).astype(dtype), requires_grad=requires_grad)


def _same(fast, general):
    """Two results of one op: equal data, dtype, grad state; storage shared alike."""
    fast = fast if isinstance(fast, tuple) else (fast,)
    general = general if isinstance(general, tuple) else (general,)
    for f, g in zip(fast, general, strict=True):
        assert f._data.dtype == g._data.dtype and f._data.shape == g._data.shape
        np.testing.assert_array_equal(f._data, g._data)
        assert np.signbit(f._data).tolist() == np.signbit(g._data).tolist()
        assert f.requires_grad == g.requires_grad
        assert (f.grad_fn is None) == (g.grad_fn is None)
        if f.grad_fn is not None:
            assert f.grad_fn.name() == g.grad_fn.name() and f.grad_fn.graph is g.grad_fn.graph


# (build, args, params, grad_fn): each run the fast way twice (a miss, then a hit)
# and the general way once.
X, V, M = _tensor((3, 4), True), _tensor((4,)), _tensor((4, 3))
CASES = {
    "add broadcast": (ops.add, (X, V), {}, "AddBackward0"),
    "mul -0.0": (ops.mul, (X, -0.0), {}, "MulBackward0"),
    "mul 0.0": (ops.mul, (X, 0.0), {}, "MulBackward0"),
    "int pow": (ops.power, (X, 2), {}, "PowBackward0"),
    "matmul": (ops.matmul, (X, M), {}, "MmBackward0"),
    "sum axis": (ops.reduce_sum, (X,), {"axes": (1,), "keepdims": False}, "SumBackward1"),
    "mean": (ops.mean, (X,), {"axes": None, "keepdims": False}, "MeanBackward0"),
    "reshape (a view)": (ops.reshape, (X,), {"shape": (12,)}, "ViewBackward0"),
    "transpose (a view)": (ops.transpose, (M,), {"perm": None}, "TBackward0"),
    "compare (bool, no grad)": (ops.lt, (X, V), {}, None),
    "cast": (ops.cast, (V,), {"dtype": np.dtype(np.float64)}, "ToCopyBackward0"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_fast_path_matches_the_general_way(case):
    build, args, params, grad_fn = CASES[case]
    general = executor.apply(build, args, params, grad_fn)
    first = executor.apply_fast(build, args, params, grad_fn)
    second = executor.apply_fast(build, args, params, grad_fn)
    assert first is not executor.MISS and second is not executor.MISS
    _same(first, general)
    _same(second, general)
    shares = [np.shares_memory(general._data, a._data) for a in args if hasattr(a, "_data")]
    for result in (first, second):
        assert [np.shares_memory(result._data, a._data) for a in args
                if hasattr(a, "_data")] == shares
        for a in args:   # a view shares its base's version counter, a new array does not
            if hasattr(a, "_data"):
                same_counter = result._version_counter is a._version_counter
                assert same_counter == np.shares_memory(result._data, a._data)


def test_what_the_fast_path_leaves_to_the_general_way():
    x = _tensor(3)
    assert executor.apply_fast(ops.add, (x, np.ones(3, np.float32)), {}, None) is executor.MISS
    assert executor.apply_fast(ops.add, (x, [1.0, 2.0, 3.0]), {}, None) is executor.MISS
    assert executor.apply_fast(ops.add, (x, np.float32(1)), {}, None) is executor.MISS
    assert executor.apply_fast(ops.reshape, (x,), {"shape": [3]}, None) is executor.MISS


def test_numbers_equal_in_python_are_told_apart():
    x = fg.tensor([1.0, -2.0])
    assert np.signbit((x * 0.0).numpy()).tolist() == [False, True]
    assert np.signbit((x * -0.0).numpy()).tolist() == [True, False]
    before = len(executor._fast_ops)
    for _ in range(3):   # a NaN is no key of its own each time
        assert np.isnan((x * float("nan")).numpy()).all()
    assert len(executor._fast_ops) == before + 1
    i = fg.tensor([3, 4])
    assert (i * 2).dtype == fg.int64 and (i * 2.0).dtype == fg.float32
    assert (i * True).numpy().tolist() == [3, 4] and (i * True).dtype == fg.int64


def test_errors_name_the_users_line_on_every_call():
    a, b = _tensor(3), _tensor(4)
    for _ in range(2):
        with pytest.raises(ShapeError, match="test_eager_fast_path.py"):
            a + b   # noqa: B018


def test_grad_mode_and_version_checks_hold():
    x = _tensor(3, requires_grad=True)
    c = _tensor(3)
    for _ in range(2):
        with fg.no_grad():
            y = x * c
        assert not y.requires_grad and y.grad_fn is None
        y = x * c
        assert y.requires_grad and y.grad_fn.name() == "MulBackward0"
    (x * c).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), c.numpy())
    y = (x * c).sum()
    c.add_(1.0)   # read by the recorded product: the backward must refuse
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_fill_results_are_never_shared():
    a, b = fg.zeros(4), fg.zeros(4)
    a.fill_(3.0)
    b.fill_(3.0)
    a.add_(1.0)
    assert a.numpy().tolist() == [4.0] * 4 and b.numpy().tolist() == [3.0] * 4
    a.zero_()
    b.zero_()
    assert not np.shares_memory(a.numpy(), b.numpy()) and a._version == 3   # fill_, add_, zero_
    w = fg.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.zero_()
    with fg.no_grad():
        w.fill_(2.0)
    assert w.detach().numpy().tolist() == [2.0] * 3


def test_constant_gradients_accumulate_in_a_copy():
    # d(2x)/dx is a constant of the backward plan (made once, read-only): each
    # backward's .grad is a copy, so accumulating into it changes no later backward.
    x = fg.ones(3, requires_grad=True)
    for expected in (2.0, 4.0, 6.0):
        (x * 2.0).sum().backward()
        assert x.grad.numpy().tolist() == [expected] * 3
    x.grad.numpy()[:] = 0.0
    (x * 2.0).sum().backward()
    assert x.grad.numpy().tolist() == [2.0] * 3


def test_evaluator_matches_evaluate():
    x, w = _tensor((2, 3), True), _tensor((3,), True)
    loss = (F.tanh(x * w) / 3.0 + F.exp(w)).mean()
    from fusegrad.tracer import engine
    recorded, roots = engine.gather([loss._edge()])
    targets = recorded.leaves
    plan = engine.plan_backward(recorded, roots, [recorded.ref(t) for t in targets])
    arrays = [engine._input_data(recorded.inputs[where]) if kind == "input" else
              np.ones((), np.float32) if kind == "seed" else recorded.saved[where]
              for kind, where in plan.sources]
    prepared = ir.interpreter.evaluator(plan.graph)
    for got, want in zip(prepared(arrays), ir.evaluate(plan.graph, arrays), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="inputs"):
        prepared(arrays[:-1])


def test_dispatch_uses_the_fast_path_for_tensors_and_numbers():
    x = _tensor(5)
    x + 1.5   # noqa: B018
    before = len(executor._fast_ops)
    y = apply(ops.add, x, 1.5, grad_fn="AddBackward0")
    assert len(executor._fast_ops) == before   # a hit: nothing traced again
    np.testing.assert_array_equal(y.numpy(), x.numpy() + np.float32(1.5))
