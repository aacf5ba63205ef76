"""Oracles shared by the codegen, runtime and tracer tests, handed out as fixtures.

Fixtures rather than an importable helper module (as in tests/ir/conftest.py), so
the tests work under any pytest import mode.

Numba compilation dominates the run time of these tests (about 0.3 s per
single-threaded kernel, 1 s per threaded one), so the helpers here never compile
anything themselves: they read what a `CompiledGrad` already traced and run the
NumPy interpreter on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pytest
from hypothesis import strategies as st

from fusegrad import ir
from fusegrad.tracer.compile import CompiledGrad, Traced


def traced_for(f: CompiledGrad, *args: Any) -> Traced:
    """What `f` traced and planned for these arguments (tracing them if needed;
    kernels compile on their first run, so this compiles nothing)."""
    return f.trace(*args)


def interpret(f: CompiledGrad, *args: Any) -> list[np.ndarray]:
    """[value, *grads] of `f` at `args` from the NumPy interpreter of its joint graph:
    the oracle for everything the planner, the emitter and the runtime do."""
    traced = traced_for(f, *args)
    return ir.evaluate(traced.joint, f.leaves(*args))


def tolerance(dtype: Any) -> dict[str, float]:
    """rtol/atol for comparing results computed in `dtype` by different summation
    orders (the kernels accumulate float32 sums in float64, NumPy pairwise in float32)."""
    if np.dtype(dtype) == np.float32:
        return {"rtol": 2e-4, "atol": 2e-5}
    return {"rtol": 1e-9, "atol": 1e-11}


def assert_close(actual: Any, expected: Any, dtype: Any = None, scale: float | None = None,
                 what: str = "") -> None:
    """`actual` matches `expected` in shape, dtype (when given) and value; NaN
    matches NaN and infinities must agree in sign. `scale` widens atol for values
    that are differences of large terms."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if dtype is not None:
        assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype} != {np.dtype(dtype)}"
    tol = tolerance(dtype if dtype is not None else actual.dtype)
    if scale is None:
        finite = expected[np.isfinite(expected)]
        scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64),
                               rtol=tol["rtol"], atol=tol["atol"] * scale, equal_nan=True,
                               err_msg=what)


def assert_all_close(actual: Sequence[Any], expected: Sequence[Any], dtype: Any = None,
                     what: str = "") -> None:
    """Element by element: [value, *grads] against [value, *grads]."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} results, expected {len(expected)}"
    for position, (a, e) in enumerate(zip(actual, expected)):
        label = "value" if position == 0 else f"gradient {position - 1}"
        assert_close(a, e, dtype, what=f"{what} {label}".strip())


def flatten(result: tuple) -> list[np.ndarray]:
    """(value, grads) as returned by compile_grad, as [value, *grads]."""
    value, grads = result
    return [value, *(grads if isinstance(grads, tuple) else (grads,))]


@pytest.fixture(name="traced_for", scope="session")
def _traced_for_fixture():
    return traced_for


@pytest.fixture(name="interpret", scope="session")
def _interpret_fixture():
    return interpret


@pytest.fixture(name="assert_close", scope="session")
def _assert_close_fixture():
    return assert_close


@pytest.fixture(name="assert_all_close", scope="session")
def _assert_all_close_fixture():
    return assert_all_close


@pytest.fixture(name="flatten", scope="session")
def _flatten_fixture():
    return flatten


@dataclass(frozen=True)
class Expressions:
    """Random expression trees over a few inputs of broadcast-compatible shapes, for
    the property tests of the IR (tests/ir/test_random_graphs.py) and of fusion
    (tests/codegen/test_random_fusion.py). A tree is nested tuples:
    ("input", k), ("unary", name, a), ("binary", name, a, b),
    ("reduce", name, axis, keepdims, a); `evaluate` gives the names their meaning."""

    unary: Mapping[str, Callable]
    binary: Mapping[str, Callable]
    reduce: Mapping[str, Callable]    # (x, axis, keepdims) -> the reduction
    total: str                        # the reduce name that sums everything
    depth: int
    leaf_odds: int                    # below the root, a leaf 1 time in `leaf_odds`
    axes: Callable[[int], list]       # the reduction axes to draw from, by rank

    def shape_of(self, expr: tuple, shapes: Sequence[tuple]) -> tuple[int, ...]:
        kind = expr[0]
        if kind == "input":
            return shapes[expr[1]]
        if kind == "unary":
            return self.shape_of(expr[2], shapes)
        if kind == "binary":
            return np.broadcast_shapes(self.shape_of(expr[2], shapes),
                                       self.shape_of(expr[3], shapes))
        _, _, axis, keepdims, operand = expr
        return np.sum(np.zeros(self.shape_of(operand, shapes)), axis=axis,
                      keepdims=keepdims).shape

    def trees(self, shapes: Sequence[tuple]) -> st.SearchStrategy:
        """Trees over inputs of these shapes, never deeper than `depth`."""
        return self._tree(shapes, self.depth, root=True)

    @st.composite
    def _tree(draw, self, shapes, depth, root=False):
        if depth == 0 or (not root and draw(st.integers(0, self.leaf_odds - 1)) == 0):
            return ("input", draw(st.integers(0, len(shapes) - 1)))
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce"]))
        if kind == "unary":
            return ("unary", draw(st.sampled_from(sorted(self.unary))),
                    draw(self._tree(shapes, depth - 1)))
        if kind == "binary":
            a = draw(self._tree(shapes, depth - 1))
            b = draw(self._tree(shapes, depth - 1))
            try:
                np.broadcast_shapes(self.shape_of(a, shapes), self.shape_of(b, shapes))
            except ValueError:  # e.g. (3,) with (3, 4): b becomes a sum, no deeper than before
                b = ("reduce", self.total, None, False,
                     draw(self._tree(shapes, max(depth - 2, 0))))
            return ("binary", draw(st.sampled_from(sorted(self.binary))), a, b)
        operand = draw(self._tree(shapes, depth - 1))
        axis = draw(st.sampled_from(self.axes(len(self.shape_of(operand, shapes)))))
        return ("reduce", draw(st.sampled_from(sorted(self.reduce))), axis, draw(st.booleans()),
                operand)

    def evaluate(self, expr: tuple, inputs: Sequence[Any]) -> Any:
        kind = expr[0]
        if kind == "input":
            return inputs[expr[1]]
        if kind == "unary":
            return self.unary[expr[1]](self.evaluate(expr[2], inputs))
        if kind == "binary":
            return self.binary[expr[1]](self.evaluate(expr[2], inputs),
                                        self.evaluate(expr[3], inputs))
        _, name, axis, keepdims, operand = expr
        return self.reduce[name](self.evaluate(operand, inputs), axis, keepdims)


@pytest.fixture(name="expression_trees", scope="session")
def _expressions_fixture():
    return Expressions
