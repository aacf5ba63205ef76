"""Deep eager graphs: thousands of recorded ops differentiate without recursion,
and run on the NumPy interpreter unless compiling them pays (`engine.should_compile`).
The decisions are asserted, never the timings."""
from __future__ import annotations

import inspect
import sys

import numpy as np

import fusegrad as fg
from fusegrad.tracer import engine


def chain(x, steps: int):
    """`steps` steps, alternately an affine map and a tanh of one: 2.5 ops a step."""
    y = x
    for i in range(steps):
        y = fg.tanh(y * 0.9 + 0.01) if i % 2 else y * 1.1 - 0.01
    return y.sum()


def chain_gradient(data: np.ndarray, steps: int) -> np.ndarray:
    """d sum(chain(x)) / dx in float64, by forward-mode products."""
    y, dy = data.astype(np.float64), np.ones_like(data, dtype=np.float64)
    for i in range(steps):
        if i % 2:
            y = np.tanh(y * 0.9 + 0.01)
            dy = dy * 0.9 * (1 - y * y)
        else:
            y, dy = y * 1.1 - 0.01, dy * 1.1
    return dy


def last_plan() -> engine.BackwardPlan:
    return engine.cached_plans()[-1]


def test_a_deep_chain_over_small_tensors_is_interpreted_without_recursion():
    # 5,000 ops on 128 elements: the arrays the backward reads (a kept result per
    # tanh) have more elements in all than the old threshold on that sum (100k),
    # which sent this graph to Numba: minutes of compiling, then a RecursionError.
    steps = 2000
    data = np.linspace(-0.3, 0.3, 128)
    x = fg.tensor(data, requires_grad=True)
    y = chain(x, steps)
    recorded, _ = engine.gather([y._edge()])
    assert len(recorded.functions) >= 5000
    # Nothing on the way (gathering, differentiation, passes, interpreter) may
    # recurse once per op: all of it must run within 100 frames of this one.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 100)
    try:
        y.backward()
    finally:
        sys.setrecursionlimit(limit)
    plan = last_plan()
    assert plan.runs == 1 and plan.executable is None and not engine.should_compile(plan)
    np.testing.assert_allclose(x.grad.numpy(), chain_gradient(data, steps), rtol=1e-10)


def test_a_deep_chain_over_large_tensors_compiles_only_once_repeats_pay():
    # The planning alone: this 1,000-op backward is not run here.
    x = fg.tensor(np.linspace(-1, 1, engine.COMPILE_MIN_ELEMENTS), requires_grad=True)
    y = chain(x, 400)
    recorded, roots = engine.gather([y._edge()])
    plan = engine.plan_backward(recorded, roots, [recorded.ref(x)])
    assert plan.largest >= engine.COMPILE_MIN_ELEMENTS and plan.executable is None
    decisions = []
    for plan.runs in range(1, 1000):
        decisions.append(engine.should_compile(plan))
        if decisions[-1]:
            break
    # Interpreting it once costs a small part of compiling it: compiled only when
    # repeated, at the first run by which the interpreter has spent a compile.
    assert decisions[0] is False and decisions[-1] is True and len(decisions) > 2
    assert (plan.runs - 1) * plan.interpret_seconds < plan.compile_seconds
    assert plan.compile_seconds <= plan.runs * plan.interpret_seconds
