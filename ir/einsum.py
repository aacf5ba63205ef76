"""`einsum` as a composition of graph operations (issue 11, item 1).

Every contraction NumPy's einsum accepts (with explicit or implicit output, and
`...`) becomes transposes, reshapes, diagonals (a strided slice of a flattened
pair of axes), sums, elementwise products and batched matrix products, so its
gradient, its fused code and its interpreter meaning come from those primitives.
Operands are contracted pairwise from the left, as `np.einsum(optimize=False)` does;
a label is summed as soon as no later operand and not the output needs it.
"""
from __future__ import annotations

import string
from typing import Hashable, Sequence

import numpy as np

from fusegrad.ir import ops
from fusegrad.ir import shapes as S
from fusegrad.ir.builder import current_source
from fusegrad.ir.errors import DTypeError, ShapeError, located
from fusegrad.ir.graph import Value

Label = Hashable   # a letter, or ("...", k): the k-th broadcast axis from the right
LETTERS = set(string.ascii_letters)


def einsum(subscripts: str, *operands: Value) -> Value:
    inputs, output = _parse(subscripts, operands)
    if any(v.dtype.kind == "b" for v in operands):
        raise DTypeError(located(f"einsum: boolean operands ({S.describe(*operands)}) are not "
                                 "supported; cast them with .astype(int) or .float()",
                                 current_source()))
    sizes = _label_sizes(subscripts, inputs, operands)
    terms = [_diagonals(x, labels) for x, labels in zip(operands, inputs)]
    # A label in one operand only, and not in the output, is summed first.
    terms = [_sum_unneeded(x, labels, _others(i, terms) | set(output))
             for i, (x, labels) in enumerate(terms)]
    x, labels = terms[0]
    for i, (y, y_labels) in enumerate(terms[1:], start=1):
        x, labels = _contract(x, labels, y, y_labels, _needed(i, terms, output), sizes)
    x, labels = _sum_unneeded(x, labels, set(output))
    x = ops.transpose(x, [labels.index(label) for label in output])
    return _integer_result(x, operands)


# ---------------------------------------------------------------- the subscripts

def _error(message: str) -> ShapeError:
    return ShapeError(located(f"einsum: {message}", current_source()))


def _parse(subscripts: str, operands: Sequence[Value]) -> tuple[list[list[Label]], list[Label]]:
    """Each operand's labels, one per axis, and the output's."""
    if not isinstance(subscripts, str):
        raise _error(f"subscripts must be a string like 'ij,jk->ik', got {subscripts!r}")
    text = subscripts.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    if "->" in rhs or "-" in lhs or ">" in lhs:
        raise _error(f"subscripts {subscripts!r} must have at most one '->'")
    terms = lhs.split(",")
    if not operands or len(terms) != len(operands):
        raise _error(f"subscripts {subscripts!r} name {len(terms)} operand(s), "
                     f"got {len(operands)} array(s)")
    inputs = [_term_labels(term, x, subscripts) for term, x in zip(terms, operands)]
    broadcast = max(sum(isinstance(l, tuple) for l in labels) for labels in inputs)
    ellipsis = [("...", k) for k in range(broadcast, 0, -1)]
    if not arrow:
        counts = [l for labels in inputs for l in labels if not isinstance(l, tuple)]
        # NumPy's implicit output: the broadcast axes, then the letters used once, sorted.
        return inputs, ellipsis + sorted(l for l in set(counts) if counts.count(l) == 1)
    if "..." not in rhs and broadcast:
        raise _error(f"subscripts {subscripts!r}: the operands have '...' axes, so the output "
                     "needs '...' too (sum them explicitly to drop them)")
    output = []
    for part in _split_ellipsis(rhs, subscripts, "the output"):
        output.extend(ellipsis if part == "..." else part)
    letters = [l for l in output if not isinstance(l, tuple)]
    if len(set(letters)) != len(letters):
        raise _error(f"subscripts {subscripts!r}: a label repeats in the output {rhs!r}")
    for label in letters:
        if not any(label in labels for labels in inputs):
            raise _error(f"subscripts {subscripts!r}: output label {label!r} is in no operand")
    return inputs, output


def _split_ellipsis(term: str, subscripts: str, where: str) -> list[str]:
    """`term` as [letters, '...', letters] (or just [letters])."""
    if term.count("...") > 1 or term.replace("...", "").count("."):
        raise _error(f"subscripts {subscripts!r}: {where} has a stray '.' or more than one '...'")
    bad = set(term.replace("...", "")) - LETTERS
    if bad:
        raise _error(f"subscripts {subscripts!r}: labels must be letters, got {sorted(bad)}")
    before, dots, after = term.partition("...")
    return [before, "...", after] if dots else [before]


def _term_labels(term: str, x: Value, subscripts: str) -> list[Label]:
    parts = _split_ellipsis(term, subscripts, f"operand {term!r}")
    letters = sum(len(p) for p in parts if p != "...")
    if letters > x.ndim or ("..." not in parts and letters != x.ndim):
        raise _error(f"subscripts {subscripts!r}: {term!r} has {letters} label(s) for "
                     f"{x.type_str} ({x.ndim} dimensions)")
    labels: list[Label] = []
    for part in parts:
        broadcast = x.ndim - letters
        labels.extend([("...", k) for k in range(broadcast, 0, -1)] if part == "..." else part)
    return labels


def _label_sizes(subscripts: str, inputs, operands) -> dict[Label, int]:
    """Each label's size; a label's axes are equal or 1 (broadcast), as in NumPy."""
    sizes: dict[Label, int] = {}
    for labels, x in zip(inputs, operands):
        for label, size in zip(labels, x.shape):
            known = sizes.get(label, 1)
            if size != 1 and known != 1 and size != known:
                shown = "..." if isinstance(label, tuple) else repr(label)
                raise _error(f"subscripts {subscripts!r}: label {shown} has sizes {known} and "
                             f"{size} in {S.describe(*operands)}")
            sizes[label] = known if size == 1 else size
    return sizes


def _others(index: int, terms) -> set[Label]:
    return {label for i, (_, labels) in enumerate(terms) if i != index for label in labels}


def _needed(index: int, terms, output) -> set[Label]:
    """The labels the output or an operand after `index` still needs."""
    later = {label for _, labels in terms[index + 1:] for label in labels}
    return later | set(output)


# ---------------------------------------------------------------- the steps

def _diagonals(x: Value, labels: list[Label]) -> tuple[Value, list[Label]]:
    """A label repeated within one operand ('ii->i') takes the diagonal of its axes:
    the pair moved last, flattened to n*n, and every (n+1)-th element sliced out."""
    labels = list(labels)
    while len(set(labels)) != len(labels):
        label = next(l for l in labels if labels.count(l) > 1)
        i = labels.index(label)
        j = labels.index(label, i + 1)
        if x.shape[i] != x.shape[j]:
            raise _error(f"label {label!r} repeats in one operand over axes of sizes "
                         f"{x.shape[i]} and {x.shape[j]} ({x.type_str}): a diagonal needs equal sizes")
        n = x.shape[i]
        rest = [a for a in range(x.ndim) if a not in (i, j)]
        x = ops.transpose(x, rest + [i, j])
        flat = ops.reshape(x, x.shape[:-2] + (n * n,))
        index = tuple((0, d, 1) for d in flat.shape[:-1]) + ((0, n * n, n + 1),)
        x = ops.slice_array(flat, index)
        labels = [labels[a] for a in rest] + [label]
    return x, labels


def _sum_unneeded(x: Value, labels: list[Label], needed: set[Label]) -> tuple[Value, list[Label]]:
    axes = tuple(a for a, label in enumerate(labels) if label not in needed)
    if not axes:
        return x, labels
    return ops.reduce_sum(x, axes), [l for a, l in enumerate(labels) if a not in axes]


def _contract(x: Value, x_labels, y: Value, y_labels, needed: set[Label], sizes):
    """The product of two terms, summed over the labels they share that nothing
    later needs: a batched matrix product (batch, rows, contracted) x (batch,
    contracted, columns), or for integers and products without a contraction,
    an elementwise product (and a sum)."""
    shared = [l for l in x_labels if l in y_labels]
    batch = [l for l in shared if l in needed]
    summed = [l for l in shared if l not in needed]
    rows = [l for l in x_labels if l not in shared]
    columns = [l for l in y_labels if l not in shared]
    # A summed label of size 1 in one operand broadcasts against the other's.
    x = _broadcast_labels(x, x_labels, summed, sizes)
    y = _broadcast_labels(y, y_labels, summed, sizes)
    floating = S.promote(x.dtype, y.dtype).kind == "f"
    if summed and floating:
        out = _batched_product(x, x_labels, y, y_labels, batch, rows, summed, columns)
        return out, batch + rows + columns
    order = batch + rows + columns + summed
    product = ops.mul(_aligned(x, x_labels, order), _aligned(y, y_labels, order))
    if summed:
        product = ops.reduce_sum(product, tuple(range(len(order) - len(summed), len(order))))
    return product, batch + rows + columns


def _batched_product(x, x_labels, y, y_labels, batch, rows, summed, columns) -> Value:
    def size(v, v_labels, group):
        return int(np.prod([v.shape[v_labels.index(l)] for l in group], dtype=np.int64))

    def batch_shape(v, v_labels):
        return tuple(v.shape[v_labels.index(l)] for l in batch)

    k = size(x, x_labels, summed)
    a = ops.transpose(x, [x_labels.index(l) for l in batch + rows + summed])
    a = ops.reshape(a, batch_shape(x, x_labels) + (size(x, x_labels, rows), k))
    b = ops.transpose(y, [y_labels.index(l) for l in batch + summed + columns])
    b = ops.reshape(b, batch_shape(y, y_labels) + (k, size(y, y_labels, columns)))
    out = ops.matmul(a, b)
    shape = (out.shape[:len(batch)] + tuple(x.shape[x_labels.index(l)] for l in rows)
             + tuple(y.shape[y_labels.index(l)] for l in columns))
    return ops.reshape(out, shape)


def _broadcast_labels(x: Value, labels, which, sizes) -> Value:
    shape = tuple(sizes[l] if l in which else d for l, d in zip(labels, x.shape))
    return ops.broadcast_to(x, shape)


def _aligned(x: Value, labels, order) -> Value:
    """`x` with its axes in `order`, size 1 where it lacks a label (for broadcasting)."""
    x = ops.transpose(x, [labels.index(l) for l in order if l in labels])
    return ops.reshape(x, tuple(x.shape[[l for l in order if l in labels].index(l)]
                                if l in labels else 1 for l in order))


def _integer_result(x: Value, operands) -> Value:
    """NumPy's einsum keeps the operands' integer dtype; sums count in int64 first."""
    dtype = S.promote(*(v.dtype for v in operands))
    return ops.cast(x, dtype) if dtype.kind in "iu" else x
