"""Statements shared by the loop targets: what one outer point computes, and the
reduction bookkeeping around it.

CPU and CUDA differ only in what surrounds this body (a `prange` over chunks vs
one thread per outer point) and in how a column reduction's partial cell is
updated (a plain `+=` by the one thread that owns the chunk vs an atomic, since
many threads of a block share one partial row); the target passes that update
in as a `Dialect`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fusegrad.codegen.loops import (Schedule, column_reduction, expression, index, ir_comment,
                                    open_loop, operand, read_once, row_reduction, store_index)
from fusegrad.codegen.plan import FINAL, INNER, ROW, Kernel
from fusegrad.codegen.source import SourceNames, Writer
from fusegrad.ir import primitives as P
from fusegrad.ir.graph import Node, Value
from fusegrad.ir.primitive import COSTLY, REDUCTION, Primitive, literal

# (writer, reduction node, partial array, index inside it, value) -> emits the update
ColumnUpdate = Callable[[Writer, Node, str, str, str], None]


@dataclass(frozen=True)
class Dialect:
    """What a target spells its own way inside the shared body."""

    update_column: ColumnUpdate
    # Whether costly per-element values may be kept in a per-chunk row buffer for a
    # later stage (the CPU allocates one per chunk; a CUDA thread has no such memory).
    row_buffers: bool = False
    # Whether sums and extrema are split out of the loop that computes their terms:
    # the terms go to an L1 buffer, reduced by their monoid's `scalar_math` block
    # helper (`block_sum`, `block_max`, ...: vectorized, see scalar_math.py). A loop carrying an accumulator
    # cannot be vectorized (that would reorder the additions); without one, LLVM
    # vectorizes the elementwise work (1.65x on the W2 chain).
    split_reductions: bool = False
    # Whether a float32 sin and cos of the same value are computed by one call to
    # `scalar_math.sincos`, which shares their argument reduction (W2: 25 -> 21 ms).
    sincos: bool = False
    # CUDA's block per row (issue 13, item 6): how a stage's inner loop is opened
    # (None: `open_loop`, every index by one thread), what follows each stage's loop
    # (given the stage's row reductions: their block tree), and the condition under
    # which a row statement only one thread of the row may run is run (the terms a
    # row gives a full reduction; None: every thread runs it, as each has its row).
    stage_loop: Callable[[Writer, "Schedule", int], None] | None = None
    after_stage: Callable[[Writer, list[Node], SourceNames], None] | None = None
    single: str | None = None
    # Whether sin and cos are spelled `scalar_math.*_near` (right where `far_trig` is
    # False), each argument's `far_trig` ORed into `far`: the CPU's first pass over a
    # block, which runs again without it when `far` is set (cpu.py, `near_blocks`).
    near_trig: bool = False
    # (issue 12, W4) Whether a row kernel starts loading the next row of its inputs
    # before a later pass that computes a costly function (scalar_math.prefetch_head;
    # W4 2.15 -> 2.00 ms).
    prefetch_rows: bool = False

# Elements per block when an outer loop is split (a buffer of this many stays in L1).
BLOCK = 1024


def row_buffered(sched: Schedule) -> list[Value]:
    """Costly per-element values that more than one stage needs: computed once into
    `<name>_row` (one row's worth) and read back by the later stages."""
    seen: dict[Value, int] = {}
    for stage in range(sched.stages):
        for node in _inner_cone(_sinks(sched, stage), sched, stored=set()):
            seen[node.out] = seen.get(node.out, 0) + 1
    return [n.out for n in sched.kernel.nodes
            if seen.get(n.out, 0) > 1 and n.primitive.cost >= COSTLY]


def row_buffer_declarations(sched: Schedule, names: SourceNames) -> list[str]:
    inner = ", ".join(f"n{a}" for a in range(sched.outer, sched.rank))
    return [f"{names(v)}_row = scalar_math.buffer(({inner},), np.{v.dtype.name})"
            for v in row_buffered(sched)]


def deferred_reductions(sched: Schedule, stage: int | None = None) -> list[Node]:
    """Per-element sums and extrema kept in a scalar accumulator (not column partials),
    split out of their stage loop (in all stages, or just `stage`)."""
    stages = range(sched.stages) if stage is None else [stage]
    return [n for s in stages for n in _sinks(sched, s)
            if n.primitive.kind == REDUCTION and not column_reduction(n, sched.kernel)]


def _block_total(node: Node) -> bool:
    """Whether a deferred reduction's block helper returns the block's own total
    (rather than continuing the accumulator): a row's then needs no start."""
    return not node.primitive.monoid.block_continues


def reduction_buffer_declarations(sched: Schedule, names: SourceNames) -> list[str]:
    """`<name>_red`: a block of terms per deferred reduction, one row's worth when the
    kernel has inner loops, else BLOCK elements of the split outer loop."""
    if sched.outer < sched.rank:
        shape = ", ".join(f"n{a}" for a in range(sched.outer, sched.rank)) + ","
    else:
        shape = f"{BLOCK},"
    buffered = row_buffered(sched)
    return [f"{names(n.out)}_red = scalar_math.buffer(({shape}), np.{n.inputs[0].dtype.name})"
            for n in deferred_reductions(sched) if direct_terms(n, sched, names, buffered) is None]


def direct_terms(node: Node, sched: Schedule, names: SourceNames,
                 buffered: list[Value]) -> str | None:
    """(issue 12, W4) A deferred reduction's row of terms where it is in memory already,
    for its block helper to read in place of a `_red` copy: the row of a kernel input
    of the domain's shape (softmax's max of its logits), or the row buffer of a value
    kept for a later stage (softmax's sum of the exponentials it keeps). Same terms,
    same order: the same result, without a store per element and its buffer. None
    where the terms need copying (computed values, broadcast inputs, several inner
    axes, the split outer loop's blocks)."""
    if sched.rank - sched.outer != 1 or sched.outer < 1:
        return None
    x = node.inputs[0]
    if x in buffered:
        return f"{names(x)}_row"
    if x in sched.kernel.levels or x in sched.consts or x.shape != tuple(sched.kernel.domain):
        return None
    return names(x) + index(x.shape[:sched.outer], sched.outer)


def emit_block_sums(w: Writer, sched: Schedule, names: SourceNames, count: str) -> None:
    """After a block of a split outer loop: its terms accumulated."""
    _emit_deferred(w, sched, deferred_reductions(sched), names, count)


def _emit_deferred(w: Writer, sched: Schedule, nodes: list[Node], names: SourceNames,
                   count: str) -> None:
    """The first `count` buffered terms (flattened when the kernel has several inner
    axes) into their accumulators, by their monoid's `scalar_math` block helper."""
    flat = ".ravel()" if sched.rank - sched.outer > 1 else ""
    buffered = row_buffered(sched)
    for node in nodes:
        name = names(node.out)
        monoid = node.primitive.monoid
        terms = direct_terms(node, sched, names, buffered) or f"{name}_red{flat}"
        call = f"scalar_math.{monoid.block}({terms}, {count}"
        if monoid.block_continues:
            w.line(f"{name}_acc = {call}, {name}_acc)")
        elif row_reduction(node, sched.kernel):
            w.line(f"{name}_acc = {call})")   # a row's total is this one block
        else:
            w.line(monoid.update.format(acc=f"{name}_acc", x=call + ")"))


def kernel_parameters(kernel: Kernel, names: SourceNames) -> list[str]:
    """The kernel's arguments, in the order the runtime passes them."""
    params = [names(v) for v in kernel.inputs]
    params += [names(v) + "_out" for v in kernel.outputs]
    params += [names(n.out) + "_part" for n in partial_nodes(kernel)]
    return params + ["nchunks"] + [f"n{a}" for a in range(len(kernel.domain))]


def partial_nodes(kernel: Kernel) -> list[Node]:
    """Reductions that cross chunks: full and column reductions."""
    return [n for n in kernel.nodes
            if n.primitive.kind == REDUCTION and kernel.levels[n.out] == FINAL]


def full_reductions(kernel: Kernel) -> list[Node]:
    """Reductions to one value, accumulated per chunk (CPU) or thread (CUDA) in `<name>_acc`."""
    return [n for n in partial_nodes(kernel) if not column_reduction(n, kernel)]


# ---------------------------------------------------------------- one outer point

def emit_point(w: Writer, sched: Schedule, names: SourceNames, dialect: Dialect,
               block_cell: str | None = None) -> None:
    """The body run once per outer point: row statements between stage loops. With
    `block_cell` (a kernel without inner loops, its outer loop split in blocks), the
    terms of sums go to `<name>_red[block_cell]` for `emit_block_sums`."""
    kernel = sched.kernel
    buffered = row_buffered(sched) if dialect.row_buffers else []
    stored: set[Value] = set()
    for stage in range(sched.stages + 1):
        for node in kernel.nodes:
            level = kernel.levels[node.out]
            if level == ROW and sched.ready[node.out] == stage:
                if row_reduction(node, kernel):
                    w.line(f"{names(node.out)} = {finish(node, names(node.out) + '_acc')}",
                           ir_comment(node, sched, names))
                else:
                    w.line(f"{names(node.out)} = {expression(node, sched, names)}",
                           ir_comment(node, sched, names))
                _single(w, dialect, lambda: store(w, node.out, sched, names))
            elif (level == FINAL and node.primitive.kind == REDUCTION
                  and kernel.levels.get(node.inputs[0]) == ROW
                  and sched.ready[node.inputs[0]] == stage):
                _single(w, dialect, lambda: accumulate(w, node, names(node.out) + "_acc",
                                                       names(node.inputs[0])))
        if dialect.prefetch_rows and stage == _prefetch_stage(sched):
            _prefetch_next_rows(w, sched, names)
        if stage < sched.stages:
            _emit_stage(w, sched, names, stage, dialect, buffered, stored, block_cell)


def _prefetch_stage(sched: Schedule) -> int | None:
    """The first pass after the first that computes a costly function per element
    (softmax's exp): while it keeps the core busy, the next row can come from memory.
    None where no pass does (layernorm: 2.5% slower with the prefetch), or the kernel
    has more than one outer or inner axis."""
    kernel = sched.kernel
    if sched.outer != 1 or sched.rank != 2:
        return None
    return min((sched.ready[n.out] for n in kernel.nodes
                if kernel.levels[n.out] == INNER and n.primitive.cost >= COSTLY
                and sched.ready[n.out] >= 1), default=None)


def _prefetch_next_rows(w: Writer, sched: Schedule, names: SourceNames) -> None:
    """The next row of each input read at the domain's shape."""
    for x in sched.kernel.inputs:
        if x not in sched.consts and x.shape == tuple(sched.kernel.domain):
            w.line(f"scalar_math.prefetch_head({names(x)}, i0 + 1)", "the next row, early")


def _single(w: Writer, dialect: Dialect, emit: Callable[[], None]) -> None:
    """`emit`'s statements, run by one thread of the row where several share it."""
    depth = w.depth
    if dialect.single is not None:
        w.line(f"if {dialect.single}:")
        w.depth += 1
    before = len(w.lines)
    emit()
    if dialect.single is not None and len(w.lines) == before:
        w.lines.pop()             # nothing to guard (a value that is not an output)
    w.depth = depth


def _sinks(sched: Schedule, stage: int) -> list[Node]:
    return [n for n in sched.kernel.nodes if _stage_of_sink(n, sched) == stage]


def _emit_stage(w: Writer, sched: Schedule, names: SourceNames, stage: int,
                dialect: Dialect, buffered: list[Value], stored: set[Value],
                block_cell: str | None) -> None:
    kernel = sched.kernel
    sinks = _sinks(sched, stage)
    if not sinks:
        return
    deferred = deferred_reductions(sched, stage) if dialect.split_reductions else []
    for node in sinks:
        if row_reduction(node, kernel) and not (node in deferred and _block_total(node)):
            w.line(f"{names(node.out)}_acc = {identity(node)}")
    depth = w.depth
    opened = len(w.lines)
    for axis in range(sched.outer, sched.rank):
        (dialect.stage_loop or open_loop)(w, sched, axis)
    body = len(w.lines)
    cell = "[" + ", ".join(f"i{a}" for a in range(sched.outer, sched.rank)) + "]"
    kept = []
    cone = _inner_cone(sinks, sched, stored)
    pairs = _sincos_pairs(cone, stored) if dialect.sincos else {}
    paired = {n for pair in pairs.values() for n in pair}
    for node in cone:
        name = names(node.out)
        if node.out in stored:
            w.line(f"{name} = {name}_row{cell}", f"{names.ir(node.out)}, kept from a pass before")
            continue
        if node in pairs:
            sin, cos = pairs[node]
            argument = operand(sin.inputs[0], sin, sched, names)
            near = "_near" if dialect.near_trig else ""
            w.line(f"{names(sin.out)}, {names(cos.out)} = scalar_math.sincos{near}({argument})",
                   f"{ir_comment(sin, sched, names)}; {ir_comment(cos, sched, names)}")
            flag_far(w, dialect, argument)
        elif node not in paired and dialect.near_trig and near_trig(node):
            argument = operand(node.inputs[0], node, sched, names)
            w.line(f"{name} = scalar_math.{node.primitive.name}_near({argument})",
                   ir_comment(node, sched, names))
            flag_far(w, dialect, argument)
        elif node not in paired:
            w.line(f"{name} = {expression(node, sched, names)}", ir_comment(node, sched, names))
        if node.out in buffered:
            w.line(f"{name}_row{cell} = {name}")
            kept.append(node.out)
    stored.update(kept)
    for node in sinks:
        if node.primitive.kind != REDUCTION:
            store(w, node.out, sched, names)
            continue
        value = _reduced_operand(node, sched, names)
        if column_reduction(node, kernel):
            partial = ", ".join(["chunk"] + [f"i{a}" for a in range(sched.outer, sched.rank)])
            dialect.update_column(w, node, f"{names(node.out)}_part", partial, value)
        elif node in deferred and sched.outer < sched.rank:
            if direct_terms(node, sched, names, row_buffered(sched)) is None:
                w.line(f"{names(node.out)}_red{cell} = {value}")
        elif node in deferred and block_cell is not None:
            w.line(f"{names(node.out)}_red[{block_cell}] = {value}")
        else:
            accumulate(w, node, names(node.out) + "_acc", value)
    if len(w.lines) == body:
        del w.lines[opened:]  # nothing per element: each sink reads its terms in place
    w.depth = depth
    if dialect.after_stage is not None:
        dialect.after_stage(w, [n for n in sinks if row_reduction(n, kernel)], names)
    if deferred and sched.outer < sched.rank:
        count = " * ".join(f"n{a}" for a in range(sched.outer, sched.rank))
        _emit_deferred(w, sched, deferred, names, count)


def _sincos_pairs(cone: list[Node], stored: set[Value]) -> dict[Node, tuple[Node, Node]]:
    """float32 or float64 sin and cos of the same value, both computed in this stage:
    the first of the two (in program order) -> (the sin, the cos)."""
    pairs: dict[Node, tuple[Node, Node]] = {}
    first: dict[tuple[Value, Primitive], Node] = {}
    for node in cone:
        if (node.primitive not in (P.sin, P.cos) or node.out in stored
                or node.out.dtype not in (np.float32, np.float64)):
            continue
        other = P.cos if node.primitive is P.sin else P.sin
        earlier = first.pop((node.inputs[0], other), None)
        if earlier is None:
            first.setdefault((node.inputs[0], node.primitive), node)
        else:
            pairs[earlier] = (earlier, node) if other is P.sin else (node, earlier)
    return pairs


def _stage_of_sink(node: Node, sched: Schedule) -> int | None:
    kernel = sched.kernel
    level = kernel.levels[node.out]
    if node.primitive.kind == REDUCTION:
        x = node.inputs[0]
        if kernel.levels.get(x, INNER) == INNER:
            return sched.ready.get(x, 0)
        return None
    if level == INNER and node.out in kernel.outputs:
        return sched.ready[node.out]
    return None


def _inner_cone(sinks: list[Node], sched: Schedule, stored: set[Value]) -> list[Node]:
    """The per-element nodes the sinks need, in program order: recomputed in each
    stage, except those `stored` in a row buffer by an earlier one (read back)."""
    kernel = sched.kernel
    needed: set[Value] = set()
    for node in sinks:
        if kernel.levels[node.out] == INNER:
            needed.add(node.out)
        needed.update(v for v in node.inputs if kernel.levels.get(v) == INNER)
    cone = []
    for node in reversed(kernel.nodes):
        if node.out in needed:
            cone.append(node)
            if node.out not in stored:
                needed.update(v for v in node.inputs if kernel.levels.get(v) == INNER)
    return cone[::-1]


def _reduced_operand(node: Node, sched: Schedule, names: SourceNames) -> str:
    x = node.inputs[0]
    if x in sched.kernel.levels:
        return names(x)
    if read_once(x, sched):
        return names(x) + "_scalar"
    return names(x) + index(x.shape, len(x.shape))


# ---------------------------------------------------------------- reductions

def identity(node: Node) -> str:
    """The accumulator's start, spelled in its dtype; a 64-bit float one as a Python
    float, which is a float64 already."""
    dtype = accumulator_dtype(node)
    start = node.primitive.monoid.identity
    if node.primitive.monoid.widen and dtype.kind == "f":
        return repr(float(start))
    return literal(start, dtype)


def accumulate(w: Writer, node: Node, target: str, value: str) -> None:
    w.line(node.primitive.monoid.update.format(acc=target, x=accumulated(node, value)))


def accumulator_dtype(node: Node) -> np.dtype:
    """The dtype `identity` and `accumulate` work in: the node's, or 64 bits for a
    monoid that widens (integers in uint64, which wraps; see `Monoid.widen`); `finish`
    casts back to the node's dtype."""
    dtype = node.out.dtype
    if node.primitive.monoid.widen:
        return np.dtype(np.float64 if dtype.kind == "f" else np.uint64)
    return dtype


def accumulated(node: Node, value: str) -> str:
    """A term of the reduction `node` in its accumulator's dtype: an integer term as a
    uint64 (uint64 + int64 would be a float64 in Numba)."""
    if node.primitive.monoid.widen and node.out.dtype.kind != "f":
        return f"np.uint64({value})"
    return value


def finish(node: Node, accumulator: str) -> str:
    """The accumulator as a value of the node's dtype."""
    if node.primitive.monoid.widen:
        return f"np.{node.out.dtype.name}({accumulator})"
    return accumulator


def store(w: Writer, value: Value, sched: Schedule, names: SourceNames) -> None:
    if value in sched.kernel.outputs:
        w.line(f"{names(value)}_out{store_index(value, sched)} = {names(value)}")


# ---------------------------------------------------------------- after the loop

def combine(w: Writer, node: Node, cell: str, name: str) -> None:
    """`<name>_total`: the partials `cell` (indexed by `chunk`) combined over all chunks."""
    w.line(f"{name}_total = {identity(node)}")
    with w.block("for chunk in range(nchunks):"):
        accumulate(w, node, f"{name}_total", cell)


def emit_final_scalar(w: Writer, node: Node, sched: Schedule, names: SourceNames,
                      dialect: Dialect) -> None:
    """A FINAL node other than a column reduction: a full reduction combined from
    its partials, or scalar arithmetic on such values."""
    name = names(node.out)
    if node.primitive.kind != REDUCTION:
        w.line(f"{name} = {expression(node, sched, names)}", ir_comment(node, sched, names))
    else:
        combine(w, node, f"{name}_part[chunk]", name)
        w.line(f"{name} = {finish(node, name + '_total')}", ir_comment(node, sched, names))
    store(w, node.out, sched, names)


def emit_column_result(w: Writer, node: Node, sched: Schedule, names: SourceNames) -> None:
    """One column of a column reduction, combined from its partials; the inner
    indices i<outer>... are set by the caller."""
    name = names(node.out)
    inner = [f"i{a}" for a in range(sched.outer, sched.rank)]
    combine(w, node, f"{name}_part[chunk, {', '.join(inner)}]", name)
    keepdims = len(node.out.shape) == sched.rank
    out_index = "[" + ", ".join(["0"] * (sched.outer if keepdims else 0) + inner) + "]"
    w.line(f"{name}_out{out_index} = {finish(node, name + '_total')}",
           ir_comment(node, sched, names))


# ---------------------------------------------------------------- issue 12: sin, cos near

def near_trig(node: Node) -> bool:
    """A float32 or float64 sin or cos: `Dialect.near_trig` spells it
    `scalar_math.*_near` (float64 since its own vectorizable versions, issue 12)."""
    return node.primitive in (P.sin, P.cos) and node.out.dtype in (np.float32, np.float64)


def flag_far(w: Writer, dialect: Dialect, argument: str) -> None:
    if dialect.near_trig:
        w.line(f"far = far | scalar_math.far_trig({argument})")
