"""Checks shared by the IR tests, handed out as fixtures.

Fixtures rather than an importable helper module, so the tests work under any
pytest import mode and no module name can collide with another test package.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pytest

from fusegrad import ir
from fusegrad.ir.graph import Graph, Value


def optimize_verified(graph: Graph) -> Graph:
    """Run the passes of `ir.PIPELINE` one at a time, as `ir.optimize` does, checking
    `verify` after every pass and that no pass edits the graph it was given."""
    ir.verify(graph)
    for run_pass in ir.PIPELINE:
        before = ir.pretty(graph)
        result = run_pass(graph)
        assert ir.pretty(graph) == before, f"{run_pass.__name__} edited its input graph"
        try:
            ir.verify(result)
        except AssertionError as error:
            raise AssertionError(f"verify failed after {run_pass.__name__}:\n"
                                 f"{ir.pretty(result)}") from error
        graph = result
    return graph


def extend_graph(graph: Graph, make_output: Callable[..., Value]) -> Graph:
    """A graph with the inputs of `graph` whose one output is
    ``make_output(*graph.outputs)``: how a gradient is turned into a new function
    to differentiate again."""
    builder = ir.Builder()
    builder.nodes.extend(graph.nodes)
    builder.constants = {id(value): (value, array) for value, array in graph.constants}
    with ir.building(builder):
        output = make_output(*graph.outputs)
    return builder.finish(graph.inputs, (output,))


def central_differences(f: Callable[..., float], args: Sequence[np.ndarray], index: int,
                        eps: float = 1e-6) -> np.ndarray:
    """d f / d args[index] by central differences, in float64."""
    args = [np.array(a, dtype=np.float64) for a in args]
    x = args[index]
    grad = np.zeros_like(x)
    for position in np.ndindex(x.shape):
        saved = x[position]
        x[position] = saved + eps
        up = f(*args)
        x[position] = saved - eps
        down = f(*args)
        x[position] = saved
        grad[position] = (up - down) / (2 * eps)
    return grad


@pytest.fixture(name="optimize_verified", scope="session")
def _optimize_verified_fixture():
    return optimize_verified


@pytest.fixture(name="extend_graph", scope="session")
def _extend_graph_fixture():
    return extend_graph


@pytest.fixture(name="central_differences", scope="session")
def _central_differences_fixture():
    return central_differences
