"""ir/batch.py: which losses split over the batch, and the chunk graphs' parts adding
up to the whole (issue 14). The NumPy interpreter is the oracle: no kernel compiles."""
from __future__ import annotations

import numpy as np
import pytest

from fusegrad import ir
from fusegrad.ir import batch, ops, serialize
from fusegrad.ir.batch import BatchError
from fusegrad.ir.graph import Graph, Value

F64 = np.dtype(np.float64)
ROWS = 7
CHUNKS = (3, 3, 1)


def build(make_loss, *types, names="xwyz") -> Graph:
    inputs = tuple(Value(shape, dtype, name) for (shape, dtype), name in zip(types, names))
    with ir.building() as builder, ir.source_line("model.py:3"):
        out = make_loss(*inputs)
    return builder.finish(inputs, (out,))


def split_and_add(graph: Graph, axes, args) -> tuple[list, list]:
    """[value, *grads] of the whole graph, and the same from its chunk graphs added up
    (batch gradients concatenated along their batch axis)."""
    wrt = [i for i, v in enumerate(graph.inputs) if v.dtype.kind == "f"]
    whole = ir.evaluate(ir.vjp_graph(graph, wrt), args)
    separation = batch.separate(graph, axes)
    parts, start = [], 0
    for k, rows in enumerate(CHUNKS):
        chunk = batch.chunk_graph(graph, separation, rows)
        ir.verify(chunk)
        piece = [a if axis is None else np.take(a, range(start, start + rows), axis=axis)
                 for a, axis in zip(args, axes)]
        shares = [np.asarray(1.0 if k == 0 else 0.0, d) for d in separation.shares]
        parts.append(ir.evaluate(ir.vjp_graph(chunk, wrt), piece + shares))
        start += rows
    added = [sum(p[0] for p in parts)]
    for j, i in enumerate(wrt, start=1):
        if axes[i] is None:
            added.append(sum(p[j] for p in parts))
        else:
            added.append(np.concatenate([p[j] for p in parts], axis=axes[i]))
    return whole, added


def _rng():
    return np.random.default_rng(7)


def layout_loss(x, w):      # x: (N, 6) reshaped and transposed, row by row
    h = ops.transpose(ops.reshape(x, (ROWS, 2, 3)), (1, 0, 2))     # (2, N, 3)
    stacked = ops.matmul(ops.transpose(h, (1, 0, 2)), w)            # (N, 2, 3) @ (3, 4)
    return ops.mean(ops.tanh(h)) + ops.mean(ops.integer_pow(stacked, 2))


def flat_loss(x, w):        # rows merged with an inner axis, outermost, and split again
    flat = ops.reshape(x, (ROWS * 6,))
    return ops.reduce_sum(ops.reshape(ops.exp(flat), (ROWS, 2, 3)) * w)


def gram_loss(x, w):        # X.T @ X contracts the batch axis: a sum of outer products
    return ops.reduce_sum(ops.matmul(ops.transpose(x), x) * w)


def columns_loss(x, w):     # the batch along axis 1 of x: (6, N)
    return ops.reduce_sum(ops.integer_pow(ops.matmul(w, x), 2)) / 2.0


def softmax_loss(x, w):     # row-wise reductions, a slice of columns, a regulariser
    logits = ops.slice_array(ops.matmul(x, w), ((0, ROWS, 1), (0, 2, 1)))
    per_row = ops.logsumexp(logits, 1) - ops.reduce_sum(logits, 1)
    return ops.mean(per_row) * 3.0 - 1.0 + ops.reduce_sum(w * w) * 0.1


def labels_loss(x, w, y):   # take_along_axis with integer labels
    logp = ops.log(ops.softmax(ops.matmul(x, w), 1))
    picked = ops.take_along_axis(logp, ops.reshape(y, (ROWS, 1)), 1)
    return -ops.mean(picked)


CASES = {
    "layout": (layout_loss, [((ROWS, 6), F64), ((3, 4), F64)], (0, None)),
    "flat": (flat_loss, [((ROWS, 6), F64), ((2, 3), F64)], (0, None)),
    "gram": (gram_loss, [((ROWS, 6), F64), ((6, 6), F64)], (0, None)),
    "columns": (columns_loss, [((6, ROWS), F64), ((2, 6), F64)], (1, None)),
    "softmax": (softmax_loss, [((ROWS, 6), F64), ((6, 3), F64)], (0, None)),
    "labels": (labels_loss, [((ROWS, 6), F64), ((6, 3), F64), ((ROWS,), np.dtype(np.int64))],
               (0, None, 0)),
}


@pytest.mark.parametrize("case", CASES)
def test_chunk_graphs_add_up_to_the_whole(case):
    make_loss, types, axes = CASES[case]
    graph = build(make_loss, *types)
    rng = _rng()
    args = [rng.integers(0, 3, shape) if dtype.kind == "i" else rng.standard_normal(shape)
            for shape, dtype in types]
    whole, added = split_and_add(graph, axes, args)
    for expected, actual in zip(whole, added):
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def test_a_term_without_rows_counts_once():
    graph = build(softmax_loss, ((ROWS, 6), F64), ((6, 3), F64))
    separation = batch.separate(graph, (0, None))
    assert separation.shares == (F64,) and separation.rows == ROWS
    mean_only = build(lambda x, w: ops.mean(ops.matmul(x, w)), ((ROWS, 6), F64), ((6, 3), F64))
    assert batch.separate(mean_only, (0, None)).shares == ()


def test_a_chunk_keeps_the_whole_batch_count():
    """A mean divides by the whole batch's count in every chunk, so chunk parts add up,
    and all chunk sizes generate the same kernels (the count is one argument)."""
    graph = build(lambda x, w: ops.mean(ops.matmul(x, w)), ((ROWS, 6), F64), ((6, 3), F64))
    chunk = batch.chunk_graph(graph, batch.separate(graph, (0, None)), 2)
    counts = [n.param("value") for n in chunk.nodes if ops.is_size_const(n)]
    assert counts == [ROWS * 3.0] and chunk.inputs[0].shape == (2, 6)


REFUSED = {
    "mean over the batch, used per row": (
        lambda x, w: ops.reduce_sum(ops.integer_pow(x - ops.mean(x, 0), 2)), ((ROWS, 6), F64),
        r"sub \(f64\[7,6\], f64\[6\]\) combines a sum over the batch with per-row values"),
    "log of a sum": (lambda x, w: ops.log(ops.reduce_sum(x)), ((ROWS, 6), F64),
                     r"log \(f64\[\]\) is not linear in a sum over the batch"),
    "a sum truncated": (lambda x, w: ops.cast(ops.cast(ops.reduce_sum(x), np.int64), F64),
                        ((ROWS, 6), F64), r"cast \(f64\[\]\) is not linear"),
    "max over the batch": (lambda x, w: ops.reduce_max(x), ((ROWS, 6), F64),
                           r"reduce_max .* reduces over the batch axis"),
    "interleaved rows": (lambda x, w: ops.reduce_sum(ops.reshape(x, (6, ROWS)) * w), ((1, 1), F64),
                         r"reshape .* moves the batch axis 0 inside another axis"),
    "some rows": (lambda x, w: ops.reduce_sum(ops.slice_array(x, ((0, 2, 1), (0, 6, 1)))),
                  ((ROWS, 6), F64), r"slice .* selects some rows"),
    "a per-row parameter": (lambda x, w: ops.reduce_sum(x * w), ((ROWS, 1), F64),
                            r"mul .* has 7 entries along the batch axis; pass it as a dask array"),
    "rows times a parameter": (lambda x, w: ops.reduce_sum(ops.matmul(ops.transpose(x), w)),
                               ((ROWS, 6), F64),
                               r"matmul .* contracts the batch axis with a parameter"),
    "rows times rows": (lambda x, w: ops.reduce_sum(ops.matmul(x, ops.transpose(x))),
                        ((ROWS, 6), F64), r"matmul .*every pair of rows"),
    "no rows": (lambda x, w: ops.reduce_sum(w), ((ROWS, 6), F64),
                r"does not depend on the rows"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_loss_that_mixes_rows_names_the_op_and_line(case):
    make_loss, w_type, message = REFUSED[case]
    graph = build(make_loss, ((ROWS, 6), F64), w_type)
    with pytest.raises(BatchError, match=message) as error:
        batch.separate(graph, (0, None))
    assert "model.py:3" in str(error.value) or case == "no rows"
    assert isinstance(error.value, ValueError)


def test_graphs_travel_with_primitives_by_name():
    graph = build(labels_loss, ((ROWS, 6), F64), ((6, 3), F64), ((ROWS,), np.dtype(np.int64)))
    copy = serialize.loads(serialize.dumps(graph))
    assert ir.pretty(copy) == ir.pretty(graph)
    assert all(a.primitive is b.primitive for a, b in zip(copy.nodes, graph.nodes))
    ir.verify(copy)
