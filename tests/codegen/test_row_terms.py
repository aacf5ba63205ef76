"""(issue 12, W4) Row reductions whose terms are already a row in memory (a kernel
input of the domain's shape, or a value kept in a row buffer for a later pass) are
reduced in place by their block helper: no `_red` copy, no store per element, and a
pass left with nothing to do per element is not written at all. Before a pass that
computes a costly function per element, the next row of the inputs is prefetched."""
from __future__ import annotations

import re

import numpy as np

from fusegrad import ir
from fusegrad.codegen import SourceNames, emit, plan_kernels
from fusegrad.ir import ops
from fusegrad.ir.graph import Value
from fusegrad.runtime import Executable

F32 = np.dtype(np.float32)


def source_of(graph) -> str:
    plan = plan_kernels(graph)
    (kernel,) = plan.steps
    return emit(kernel, SourceNames(graph), plan)


def softmax_rows():
    """Softmax of x's rows, plus the sum of x * b (computed terms: copied)."""
    x, b = Value((4, 6), F32, "x"), Value((6,), F32, "b")
    with ir.building() as builder:
        m = ops.reduce_max(x, 1, keepdims=True)
        e = ops.exp(ops.sub(x, m))
        y = ops.div(e, ops.reduce_sum(e, 1, keepdims=True))
        dot = ops.reduce_sum(ops.mul(x, b), 1)
    return builder.finish((x, b), (y, dot))


def test_terms_in_memory_are_reduced_in_place(assert_all_close):
    graph = softmax_rows()
    source = source_of(graph)
    assert "scalar_math.block_max(x[i0], n1," in source, source
    kept = re.search(r"(\w+)_row\[i1\] = \1\b", source)
    assert kept and f"scalar_math.block_sum({kept.group(1)}_row, n1)" in source, source
    # Only the computed sum still copies its terms.
    assert len(re.findall(r"^\s+\w+_red = scalar_math.buffer", source, re.M)) == 1, source
    # Before the exp pass, the next row of x (not of b, which is not read by rows)
    # starts loading; the last row asks for none (no row n0).
    prefetches = re.findall(r"scalar_math\.prefetch_head\((\w+), i0 \+ 1\)", source)
    assert prefetches == ["x"], source
    assert source.index("prefetch_head") < source.index("scalar_math.exp("), source
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    x[1, 2] = np.nan  # a NaN row: max, and so the row's softmax, NaN
    x[2] = -np.inf    # max -inf: exp(nan) throughout, as NumPy
    args = [x, rng.standard_normal(6).astype(np.float32)]
    with np.errstate(invalid="ignore"):
        expected = ir.evaluate(graph, args)
    assert_all_close(Executable(plan_kernels(graph))(args), expected, F32, what="softmax rows")


def test_a_pass_with_nothing_per_element_is_left_out(assert_all_close):
    """x.max(1) and x.sum(1) of an input: no loop over the row, only block helpers."""
    x = Value((3, 5), F32, "x")
    with ir.building() as builder:
        out = ops.sub(ops.reduce_max(x, 1), ops.reduce_sum(x, 1))
    graph = builder.finish((x,), (out,))
    source = source_of(graph)
    assert "for i1 in" not in source and not re.search(r"\w_red\b", source), source
    assert "prefetch" not in source  # no costly pass to hide the next row's loads behind
    args = [np.arange(15, dtype=np.float32).reshape(3, 5) - 7]
    assert_all_close(Executable(plan_kernels(graph))(args), ir.evaluate(graph, args), F32,
                     what="row max and sum of an input")
