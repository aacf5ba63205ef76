"""The eager fast path, round 2 (issue 12): fewer layers, same behaviour.

The most used functions and Tensor operators find their prepared op themselves
(`executor.fast_binary` ...), a one-node op runs written out (`_direct_runner`),
``x -= y`` computes into x's storage when nothing is recorded (`fast_inplace`),
``loss.backward()`` has its own path (`autograd._scalar_backward`), and a backward
plan run again is one generated function (`ir.interpreter.generated_evaluator`).
Each is compared here with the general way it stands for: values bit for bit,
dtypes, grad_fn names, version counters, storage, errors.
"""
from __future__ import annotations

import copy
import threading
import warnings

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir.errors import BoundsError
from fusegrad.ir.graph import Value
from fusegrad.ir.interpreter import evaluator, generated_evaluator
from fusegrad.tracer import engine, executor
from fusegrad.tracer import functions as F

RNG = np.random.default_rng(12)


def _tensor(shape, requires_grad=False, dtype=np.float32):
    return fg.tensor(RNG.standard_normal(shape).astype(dtype), requires_grad=requires_grad)


def _same(fast, general):
    assert fast._data.dtype == general._data.dtype and fast._data.shape == general._data.shape
    np.testing.assert_array_equal(fast._data, general._data)
    assert np.signbit(fast._data).tolist() == np.signbit(general._data).tolist()
    assert fast.requires_grad == general.requires_grad
    assert (fast.grad_fn is None) == (general.grad_fn is None)
    if fast.grad_fn is not None:
        assert fast.grad_fn.name() == general.grad_fn.name()
        assert fast.grad_fn.graph is general.grad_fn.graph
        assert [e[1] for e in fast.grad_fn.edges] == [e[1] for e in general.grad_fn.edges]


X, V, M = _tensor((3, 4), True), _tensor((4,)), _tensor((4, 3))
P = fg.tensor(np.abs(RNG.standard_normal((3, 4))).astype(np.float32) + 0.5, requires_grad=True)
# (fast function, arguments): each called three times (the last two are hits)
CALLS = {
    "add": (F.add, (X, V)), "sub number": (F.sub, (X, -0.0)), "number sub": (F.sub, (2, X)),
    "mul": (F.mul, (V, X)), "div": (F.div, (X, 3.0)), "pow number": (F.pow, (P, 2)),
    "pow tensor": (F.pow, (P, X)), "number pow": (F.pow, (2.0, X)),
    "mm": (F.matmul, (X, M)), "mv": (F.matmul, (X, V)), "dot": (F.matmul, (V, V)),
    "maximum": (F.maximum, (X, V)), "exp": (F.exp, (X,)), "tanh": (F.tanh, (X,)),
    "neg": (F.neg, (X,)), "square": (F.square, (X,)), "relu": (F.relu, (X,)),
    "sum": (F.sum, (X,)), "mean": (F.mean, (X,)), "int add": (F.add, (fg.tensor([1, 2]), 3)),
}


@pytest.mark.parametrize("name", list(CALLS), ids=list(CALLS))
def test_fast_functions_match_the_general_way(name):
    function, args = CALLS[name]
    general = function.__wrapped__(*args)
    for _ in range(3):
        _same(function(*args), general)


def test_operators_and_methods_are_the_fast_functions():
    x, v = _tensor((2, 3), True), _tensor(3)
    assert (x + v).grad_fn.name() == "AddBackward0"
    for _ in range(2):
        _same(x * v, F.mul.__wrapped__(x, v))
        _same(0.5 * x, F.mul.__wrapped__(0.5, x))
        _same(2.0 ** x, F.pow.__wrapped__(2.0, x))
        _same(x ** 2, F.pow.__wrapped__(x, 2))
        _same(x @ v, F.matmul.__wrapped__(x, v))
        _same(x.exp(), F.exp.__wrapped__(x))
        _same(x.sum(), F.sum.__wrapped__(x))
        _same(x.sum(1), F.sum.__wrapped__(x, 1))
        _same(x.mean(dim=0, keepdim=True), F.mean.__wrapped__(x, dim=0, keepdim=True))
    assert [(2.0 ** x).grad_fn.name(), (x ** 2).grad_fn.name(), (x ** x).grad_fn.name()] == \
        ["PowBackward2", "PowBackward0", "PowBackward1"]
    names = ("__add__", "__radd__", "__isub__", "exp", "sum")
    assert [getattr(fg.Tensor, name).__name__ for name in names] == list(names)


def test_what_the_fast_functions_leave_to_the_general_way():
    x = _tensor(3)
    # NumPy arrays, NumPy scalars, bools and traced tensors take the general way.
    np.testing.assert_array_equal((x + np.ones(3, np.float32)).numpy(), x.numpy() + 1)
    assert (x * np.float32(2)).dtype == fg.float32
    assert (fg.tensor([1, 2]) * True).numpy().tolist() == [1, 2]
    traced = fg.compile_grad(lambda a: (a * 2.0 + a).sum())
    value, grad = traced(np.ones(3, np.float32))
    assert value == 9.0 and grad[0].tolist() == [3.0] * 3
    with pytest.raises(fg.ShapeError, match="test_eager_direct.py"):
        x + _tensor(4)   # noqa: B018


def test_inplace_operators_write_into_the_storage_as_the_general_way():
    x, y = _tensor((2, 3)), _tensor(3)
    expected = F.sub.__wrapped__(x, y).numpy()
    data, version = x._data, x._version
    x -= y
    assert x._data is data and x._version == version + 1
    np.testing.assert_array_equal(x.numpy(), expected)
    x -= y   # a hit
    np.testing.assert_array_equal(x.numpy(), expected - y.numpy())
    # a float64 operand into float32 storage, a leaf that requires grad under no_grad
    w = _tensor(3, requires_grad=True)
    before = w.detach().numpy().copy()
    with fg.no_grad():
        w *= fg.tensor([2.0, 2.0, 2.0], dtype=fg.float64)
        w /= _tensor(3) * 0 + 4
    np.testing.assert_array_equal(w.detach().numpy(), (before * 2.0).astype(np.float32) / 4)
    assert w.dtype == fg.float32 and w.is_leaf
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w -= _tensor(3)
    h = w * 1.0   # recorded: the general way records the update
    h += _tensor(3)
    assert h.grad_fn.name() == "AddBackward0"
    h.sum().backward()
    assert w.grad.numpy().tolist() == [1.0] * 3


def test_scalar_backward_matches_the_general_way():
    x, c = _tensor(4, True), _tensor(4)
    x2 = fg.tensor(x.detach().numpy(), requires_grad=True)
    for _ in range(3):
        (x * c).tanh().sum().backward()
        fg.autograd.backward([(x2 * c).tanh().sum()], [None])   # the general way
        np.testing.assert_array_equal(x.grad.numpy(), x2.grad.numpy())
    grad, version = x.grad, x.grad._version
    (x * c).sum().backward()
    assert x.grad is grad and x.grad._version == version + 1   # added in place
    with pytest.raises(RuntimeError, match="implicitly created only for scalar outputs"):
        (x * c).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        c.sum().backward()
    h = x * c
    h.retain_grad()
    h.sum().backward()
    assert h.grad.numpy().tolist() == [1.0] * 4
    y = (x * 3.0).sum()
    y.backward(retain_graph=True)
    y.backward()
    z = fg.tensor([1.0, 2.0], dtype=fg.float64, requires_grad=True)
    z.grad = fg.tensor([1.0, 1.0], dtype=fg.float64, requires_grad=True)
    (z * 2.0).sum().backward()   # a .grad that requires grad: added out of place
    assert z.grad.numpy(force=True).tolist() == [3.0, 3.0]


def test_gather_works_out_the_structure_and_known_results():
    x, c = _tensor((2, 3), True), _tensor(3)
    loss = (F.tanh(x * c) @ c + x.sum()).mean()
    recorded, roots = engine.gather([loss._edge()])
    assert recorded.known_structure is not None
    known_structure, known = recorded.known_structure, recorded.known
    recorded.known_structure = recorded.known = None   # as worked out when asked
    assert recorded.structure() == known_structure and engine.known_refs(recorded) == known
    assert recorded.leaves == [x]


def _graph(make, *types):
    inputs = tuple(Value(shape, np.dtype(dtype)) for shape, dtype in types)
    with ir.building() as builder:
        outputs = make(*inputs)
    return builder.finish(inputs, outputs if isinstance(outputs, tuple) else (outputs,))


def test_generated_evaluator_matches_evaluate():
    graph = _graph(lambda a, b, n: (ops.tanh(a * 2.5) @ b, ops.reduce_sum(a, (0,)), n + n,
                                    ops.mean(a), a),
                   ((2, 3), np.float32), ((3,), np.float32), ((3,), np.int32))
    args = [RNG.standard_normal((2, 3)).astype(np.float32),
            RNG.standard_normal(3).astype(np.float32), np.arange(3, dtype=np.int32)]
    generated = generated_evaluator(graph)
    for got, want in zip(generated(args), ir.evaluate(graph, args), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="takes 3 inputs, got 2"):
        generated(args[:2])
    x, w = _tensor((2, 3), True), _tensor((3,), True)
    for _ in range(3):   # run again, the backward plan is a generated function
        (F.tanh(x * w) / 3.0 + F.exp(w)).mean().backward()
    plan = engine.cached_plans()[-1]
    assert plan.evaluate.__code__.co_filename == "<fusegrad generated evaluator>"


def test_generated_evaluator_names_the_users_line_of_a_bad_index():
    def make(x, i):
        with ir.source_line("model.py:7"):
            return ops.take(x, i, axis=0) * 2.0
    graph = _graph(make, ((3,), np.float32), ((2,), np.int64))
    args = [np.ones(3, np.float32), np.array([0, 5])]
    for run in (generated_evaluator(graph), evaluator(graph)):
        with pytest.raises(BoundsError, match="model.py:7"):
            run(args)


# ---------------------------------------------------------------- plain ops (issue 12, round 3)
# A FastOp whose one node is a ufunc (or the whole sum) of its tensor arguments, or a
# whole mean, and whose result on the first call needed no cast, reshape or copy, runs
# that NumPy call inline (`FastOp.plain`); the others keep `FastOp.run`. Results: as
# the general way.

PLAIN = {   # (fast function, arguments, whether the op is plain)
    "add f32": (F.add, (_tensor((2, 3)), _tensor(3)), True),
    "mul f64 f32 (a cast first)": (F.mul, (_tensor(3, dtype=np.float64), _tensor(3)), False),
    "add int32": (F.add, (fg.tensor(np.arange(3, dtype=np.int32)),
                          fg.tensor(np.arange(3, dtype=np.int32))), None),
    "add bool": (F.add, (fg.tensor([True, False]), fg.tensor([True, True])), None),
    "div int (to float)": (F.div, (fg.tensor([1, 2]), fg.tensor([2, 4])), None),
    "add 0-d (a NumPy scalar)": (F.add, (_tensor(()), _tensor(())), False),
    "exp f32": (F.exp, (_tensor((2, 2)),), True),
    "exp int (to float)": (F.exp, (fg.tensor([0, 1]),), None),
    "tanh 0-d": (F.tanh, (_tensor(()),), False),
    "matmul": (F.matmul, (_tensor((2, 3)), _tensor((3, 2))), True),
    "sum f32": (F.sum, (_tensor((2, 3)),), True),
    "sum 0-d": (F.sum, (_tensor(()),), None),
    "sum int8 (widened)": (F.sum, (fg.tensor(np.array([100, 100], np.int8)),), None),
    "sum bool": (F.sum, (fg.tensor([True, True, False]),), None),
    # a whole mean: its sum and its division by the count (issue 12, round 4)
    "mean f32": (F.mean, (_tensor(4),), True),
    "mean f64 2-D": (F.mean, (_tensor((2, 3), dtype=np.float64),), True),
    "mean int (a cast first)": (F.mean, (fg.tensor([1, 2]),), False),
    "mean 0-d": (F.mean, (_tensor(()),), None),
}


def _fast_op_of(function, args):
    before = set(map(id, executor._fast_ops.values()))
    function(*args)
    made = [op for op in executor._fast_ops.values() if id(op) not in before]
    return made[0] if made else None


@pytest.mark.parametrize("name", list(PLAIN), ids=list(PLAIN))
def test_plain_ops_match_the_general_way(name):
    function, args, plain = PLAIN[name]
    executor._fast_ops.clear()
    op = _fast_op_of(function, args)
    if plain is not None:   # (None: either, as NumPy's types and the IR's agree)
        assert (op.plain is not None) == plain
    general = function.__wrapped__(*args)
    errors = np.geterr()
    for _ in range(2):
        result = function(*args)
        assert np.geterr() == errors   # NumPy's error state, as it was
        _same(result, general)
        assert result._data is not general._data and result._version == 0
        assert [np.shares_memory(result._data, a._data) for a in args] == \
            [np.shares_memory(general._data, a._data) for a in args]


def test_plain_ops_record_as_the_general_way():
    x, v, c = _tensor((2, 3), True), _tensor(3, True), _tensor(3)
    for _ in range(3):
        for fast, general in ((lambda: x * v, lambda: F.mul.__wrapped__(x, v)),
                              (lambda: c + v, lambda: F.add.__wrapped__(c, v)),
                              (lambda: F.exp(x), lambda: F.exp.__wrapped__(x)),
                              (lambda: x.sum(), lambda: F.sum.__wrapped__(x))):
            result, expected = fast(), general()
            _same(result, expected)
            # edges (source, index, version): sources of the same kinds, the same versions
            assert [(type(s), v) for s, _, v in result.grad_fn.edges] == \
                [(type(s), v) for s, _, v in expected.grad_fn.edges]
            assert [type(f) for f, _ in result.grad_fn.next_functions] == \
                [type(f) for f, _ in expected.grad_fn.next_functions]
    y = x * v
    # one accumulator per leaf while a graph holds it
    assert y.grad_fn.next_functions[0][0] is (x * 2.0).grad_fn.next_functions[0][0]
    z = F.exp(y)
    assert z.grad_fn.next_functions == ((y.grad_fn, 0),)
    (z.sum() + (c + v).sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), (np.exp(y.detach().numpy()) * v.detach().numpy()),
                               rtol=1e-6)
    with fg.no_grad():
        assert not (x * v).requires_grad and (x * v).grad_fn is None
        with fg.enable_grad():
            assert (x * v).grad_fn.name() == "MulBackward0"
    # a kept result modified in place, then read by the backward: as the general way
    outcomes = []
    for exp, mul in ((F.exp, F.mul), (F.exp.__wrapped__, F.mul.__wrapped__)):
        leaf = fg.tensor(x.detach().numpy(), requires_grad=True)
        y = exp(leaf)
        w = mul(y, y)
        y.add_(1.0)
        try:
            w.sum().backward()
            outcomes.append(leaf.grad.numpy().tolist())
        except RuntimeError as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]


def test_large_first_calls_are_not_run_twice():
    big = fg.tensor(np.ones(executor.PLAIN_TRIAL_MAX + 1, np.float32))
    executor._fast_ops.clear()
    op = _fast_op_of(F.exp, (big,))
    assert op.plain is None   # FastOp.run, as before
    _same(F.exp(big), F.exp.__wrapped__(big))


def test_a_results_version_counter_is_made_when_read():
    x = _tensor(4)
    y = x + x
    assert "_version_counter" not in vars(y)
    view = y.reshape(2, 2)   # a view shares its base's counter, made now
    assert view._version_counter is y._version_counter and y._version == 0
    view.add_(1.0)
    assert y._version == 1 and view._version == 1
    z = x * x
    copied = copy.copy(z)
    assert copied._version_counter is z._version_counter and copied._data is z._data
    assert fg.compile_grad(lambda a: (a * a).sum())(np.ones(2, np.float32))[0] == 2.0


# ---------------------------------------------------------------- lazy counters of recorded results (issue 12, round 4)
# A recorded op's new result saves its data with no version counter yet (made when
# first read): an in-place change made later, through the tensor, a detached view, or
# after detach_(), must still make the backward recompute the result, not read it.

@pytest.mark.parametrize("change", ["in place", "detached view", "after detach_"])
def test_saved_result_changed_in_place_is_recomputed(change):
    x = _tensor(3, True)
    expected = np.exp(x._data)
    F.exp(x)   # (the first call of an op goes the general way)
    z = F.exp(x)
    assert z.grad_fn.saved[0][1] is None   # (the counter, not made yet)
    total = (z * 2.0).sum()
    if change == "in place":
        with fg.no_grad():
            z.zero_()
    elif change == "detached view":
        z.detach().zero_()
    else:
        z.detach_()
        z.zero_()
    assert z._data.tolist() == [0.0] * 3
    total.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.0 * expected, rtol=1e-6)


def test_saved_result_unchanged_is_read():
    x = _tensor(3, True)
    F.exp(x)
    z = F.exp(x)
    assert z._version == 0 and z.grad_fn.saved[0][1] is z._version_counter
    from fusegrad.tracer import engine
    recorded, _ = engine.gather([z.sum()._edge()])
    assert any(array is z._data for array in recorded.saved.values())


# ---------------------------------------------------------------- the error state's own context (issue 12, round 4)
# The fast paths run their NumPy call in a context holding np.errstate(all="ignore")
# (`executor._quietly`); where that context is in use (another thread, or here a call
# made inside it), the call runs with the error state switched the other way: the
# same results, no NumPy warnings, and NumPy's error state as it was.

def _fast_calls():
    a = fg.tensor(np.array([3e38, 1.0, -2.0], np.float32))
    b = fg.tensor(np.array([3e38, 0.0, 0.5], np.float32))
    x = fg.tensor(np.array([3e38, 1.0, 4.0], np.float32))
    results = [a + b, a * 2.0, a.sum(), fg.mean(a), F.exp(a), a / b, a @ b]
    with fg.no_grad():
        x -= b
    return [r._data for r in results] + [x._data]


def test_fast_paths_where_the_quiet_context_is_in_use():
    _fast_calls()
    expected = _fast_calls()   # (the fast paths, after their first calls)
    errors = np.geterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inside = executor._quietly(_fast_calls)   # each op's own entry is refused
    assert np.geterr() == errors
    for got, want in zip(inside, expected, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_quiet_call_raises_the_calls_own_error():
    with pytest.raises(RuntimeError, match="boom"):
        executor._quiet_call(RuntimeError("boom"), np.add, 1, 2)
    assert executor._quiet_call(RuntimeError(executor._ENTERED + ": in use"), np.add, 1, 2) == 3


def test_fast_paths_from_two_threads():
    a, b = _tensor(50), _tensor(50)
    want = [(a + b)._data, (a * b).sum()._data]
    failures = []

    def work():
        for _ in range(2000):
            got = [(a + b)._data, (a * b).sum()._data]
            if not all(np.array_equal(g, w) for g, w in zip(got, want)):
                failures.append(got)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


# ---------------------------------------------------------------- outer products in the prepared evaluators (issue 12, round 4)

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outer_product_as_np_matmul_bit_for_bit(dtype):
    graph = _graph(ops.matmul, ((5, 1), dtype), ((1, 4), dtype))
    assert ir.interpreter.prepared_impl(graph.nodes[-1]) is not np.matmul
    left = np.array([[-0.0], [0.0], [np.inf], [np.nan], [3.0]], dtype)
    right = np.array([[1.0, -2.0, 0.0, 1e-30]], dtype)
    integer = np.int32 if dtype == np.float32 else np.int64
    with np.errstate(all="ignore"):
        want = np.matmul(left, right)
    assert np.signbit(want[0, 0]) == False   # noqa: E712 (np.matmul: +0.0 for -0.0 * 1.0)
    for run in (generated_evaluator(graph), evaluator(graph)):
        (got,) = run([left, right])
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.view(integer), want.view(integer))
