"""ir/verify.py: each invariant it checks, on graphs broken by hand."""
from __future__ import annotations

import numpy as np
import pytest

from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir import primitives as P
from fusegrad.ir.graph import Graph, Node, Value
from fusegrad.ir.verify import GraphInvariantError

F32 = np.dtype(np.float32)


def small_graph() -> Graph:
    x = Value((2, 3), F32, "x")
    with ir.building() as builder:
        y = ops.reduce_sum(ops.exp(x), 1)
    return builder.finish((x,), (y,))


def test_a_good_graph_passes_and_is_returned():
    graph = small_graph()
    assert ir.verify(graph) is graph
    assert issubclass(GraphInvariantError, AssertionError)


def test_use_before_definition():
    graph = small_graph()
    with pytest.raises(GraphInvariantError, match="before it is defined"):
        ir.verify(graph.replace(nodes=graph.nodes[::-1]))


def test_declared_type_must_match_the_rule():
    x = Value((2, 3), F32, "x")
    wrong = Node(P.exp, (x,), (), (Value((3, 2), F32),))
    with pytest.raises(GraphInvariantError, match="declared f32\\[3,2\\]"):
        ir.verify(Graph((x,), (wrong,), wrong.outputs))
    wrong_dtype = Node(P.exp, (x,), (), (Value((2, 3), np.float64),))
    with pytest.raises(GraphInvariantError, match="declared f64\\[2,3\\]"):
        ir.verify(Graph((x,), (wrong_dtype,), wrong_dtype.outputs))


def test_a_value_is_defined_once():
    graph = small_graph()
    with pytest.raises(GraphInvariantError, match="defined twice"):
        ir.verify(graph.replace(nodes=graph.nodes + graph.nodes[-1:]))


def test_outputs_must_be_defined():
    graph = small_graph()
    with pytest.raises(GraphInvariantError, match="never defined"):
        ir.verify(graph.replace(outputs=(Value((2,), F32),)))


def test_captured_constants_count_as_defined():
    x = Value((3,), F32, "x")
    with ir.building() as builder:
        y = x * builder.capture(np.ones(3, F32))
    graph = builder.finish((x,), (y,))
    ir.verify(graph)
    with pytest.raises(GraphInvariantError, match="before it is defined"):
        ir.verify(graph.replace(constants=()))
