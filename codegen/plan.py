"""Fusion planning: partition a (joint) graph into loop kernels and library calls.

A loop kernel iterates over one *domain* shape D. Its outer axes ``D[:outer]`` are
split into chunks across threads; each outer point runs *stages*, loops over the
inner axes ``D[outer:]``. Every IR value in a kernel has a *level*:

- ``inner``: one value per domain element (shape D), recomputed in each stage that
  needs it (cheap elementwise values are recomputed rather than stored);
- ``row``: one value per outer point (a reduction over the inner axes, e.g. a row
  max of softmax, or elementwise maths on such values);
- ``final``: known only after the whole loop: full reductions (scalars), column
  reductions (over the outer axes, accumulated in per-chunk partial buffers) and
  scalar arithmetic on them (the epilogue).

Matrix products, general reshapes/transposes and index reductions are library
calls (BLAS and NumPy); fusion happens around them. Wherever a node cannot join
a kernel, the plan records why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from fusegrad.ir import primitives as P
from fusegrad.ir.graph import Graph, Node, Shape, Value
from fusegrad.ir.primitive import COSTLY, ELEMENTWISE, REDUCTION

INNER, ROW, FINAL = "inner", "row", "final"

# The most IR nodes one loop kernel takes; a fused group that would grow past it
# continues in a new kernel (values crossing the cut go through memory). Numba's
# compile time grows faster than linearly with a function's statements, and its
# parfors array analysis recurses once per operation along a chain of them, so an
# unbounded kernel (an unrolled loop, a deep eager graph) compiles for minutes or
# raises RecursionError (a chain of about 2,500 nodes does). Measured on a 2-core
# AVX2 machine, one parallel kernel of N nodes costs about 0.8 s + 3 ms * N
# + 2.7 us * N**2 of compile: 2.5 s at 250 nodes, 7.7 s at 1,000, 19 s at 2,000.
# Cut into kernels of at most 256, 512 and 1,024 nodes, a 2,000-node unrolled loop
# compiled in 27, 30 and 36 s; 256 also keeps the recursion ten times below where
# it breaks.
MAX_KERNEL_NODES = 256

# A cheap per-element value that later kernels read is computed again in each of them
# from what they read anyway, rather than stored by its own kernel and read back: one
# array written less, the same arrays read. W3's backward reads 1 - tanh(z)**2 from the
# forward's kernel beside tanh(z), which that kernel stores for the products anyway.
# At most this much Primitive.cost (an add is 1) is computed again per element.
RECOMPUTE_MAX_COST = 3


@dataclass(eq=False)
class Kernel:
    """A fused loop nest. Built incrementally by the planner, then frozen in use."""

    index: int
    domain: Shape
    outer: int | None = None          # number of outer (chunked) axes; None: not fixed yet
    nodes: list[Node] = field(default_factory=list)
    levels: dict[Value, str] = field(default_factory=dict)
    inputs: list[Value] = field(default_factory=list)     # read from memory
    outputs: list[Value] = field(default_factory=list)    # written to memory
    notes: list["Note"] = field(default_factory=list)     # why fusion stopped, per node

    @property
    def name(self) -> str:
        ops = [n.primitive.name for n in self.nodes if n.primitive is not P.const]
        unique = list(dict.fromkeys(ops))
        suffix = "_".join(unique[:3]) + ("_etc" if len(unique) > 3 else "")
        return f"k{self.index}_{suffix or 'fill'}"

    @property
    def outer_axes(self) -> int:
        return len(self.domain) if self.outer is None else self.outer


@dataclass(eq=False, repr=False)
class Note:
    """Why a node of this kernel is not in `other`, a kernel it reads from. Spelled
    only when printed: kernels are renamed as nodes join and renumbered at the end,
    so a name taken at planning time could name a kernel the plan does not have."""

    other: Kernel | None
    reason: str | None = None
    instead: Kernel | None = None     # the node fitted `other` too, but joined this one

    def __str__(self) -> str:
        reason = self.reason or f"it joined {self.instead.name}, which it also reads from"
        return f"not fused into {self.other.name}: {reason}" if self.other else reason

    def __repr__(self) -> str:
        return f"Note({str(self)!r})"


def _add_notes(kernel: Kernel, notes: list[Note]) -> None:
    for note in notes:
        if not any(n.other is note.other and n.reason == note.reason for n in kernel.notes):
            kernel.notes.append(note)


@dataclass(eq=False)
class LibraryCall:
    """One node run by NumPy (BLAS for matmul) between kernels."""

    index: int
    node: Node
    reason: str

    @property
    def name(self) -> str:
        return f"lib{self.index}_{self.node.primitive.name}"

    @property
    def inputs(self) -> list[Value]:
        return list(self.node.inputs)

    @property
    def outputs(self) -> list[Value]:
        return list(self.node.outputs)


Step = Kernel | LibraryCall


@dataclass(eq=False)
class Plan:
    graph: Graph
    steps: list[Step]
    fused: bool


# ---------------------------------------------------------------- classification

def row_shapes(domain: Shape, outer: int) -> tuple[Shape, Shape]:
    """The two spellings of a per-row value: keepdims and not."""
    return domain[:outer] + (1,) * (len(domain) - outer), domain[:outer]


# Python compiles at most 20 nested blocks (CO_MAXBLOCKS). A kernel nests one loop per
# axis larger than 1 (and axis 0, which the CPU's chunks split; see loops.looped) and
# two of its own: the chunk loop and the blocks of a split loop (cpu.py). NumPy allows
# 64 axes; work on a domain with more large axes than this is left to NumPy.
MAX_LOOPED_AXES = 18


def looped_axes(domain: Shape) -> int:
    return sum(1 for axis, size in enumerate(domain) if axis == 0 or size != 1)


def is_scalar_shape(shape: Shape) -> bool:
    return all(d == 1 for d in shape)


def reduction_kind(node: Node, domain: Shape) -> tuple[str, int] | None:
    """('row'|'column'|'full', outer) for a reduction of a domain-shaped value."""
    axes = node.param("axes")
    ndim = len(domain)
    big = tuple(a for a in axes if domain[a] != 1)
    if all(domain[a] == 1 for a in range(ndim) if a not in axes):
        return ("full", ndim)
    if big and axes == tuple(range(axes[0], ndim)):
        return ("row", axes[0])
    if axes == tuple(range(0, axes[-1] + 1)):
        return ("column", axes[-1] + 1)
    return None


def fusable_reduction(node: Node) -> bool:
    return node.inputs[0].dtype.kind in node.primitive.monoid.kinds


def is_unit_reshape(node: Node) -> bool:
    """A reshape that only adds or removes size-1 axes: free inside a kernel."""
    if node.primitive is not P.reshape:
        return False
    strip = lambda s: tuple(d for d in s if d != 1)  # noqa: E731
    return strip(node.inputs[0].shape) == strip(node.out.shape)


def fusable(node: Node) -> str | None:
    """None if the node can live in a loop kernel, else the reason it cannot."""
    kind = node.primitive.kind
    if kind == ELEMENTWISE or is_unit_reshape(node):
        return None
    if kind == REDUCTION:
        return None if fusable_reduction(node) else "reduction of a non-float dtype"
    return {
        "matmul": "matrix product: a BLAS call",
        "layout": f"{node.primitive.name} moves data: a NumPy view or copy",
        "index": "index reduction (argmax/argmin): NumPy",
        "cumulative": f"{node.primitive.name} scans along an axis: NumPy",
        "loop": "a loop: the host runs its compiled body once per step",
    }.get(kind, f"{kind} op")


# ---------------------------------------------------------------- placement

def place(node: Node, kernel: Kernel) -> tuple[str, int | None] | str:
    """(level, outer) for `node` inside `kernel`, or the reason it cannot go there."""
    domain, outer = kernel.domain, kernel.outer
    if looped_axes(domain) > MAX_LOOPED_AXES:
        return (f"{looped_axes(domain)} axes larger than 1 in {domain}: more nested loops "
                f"than Python compiles")
    internal = [kernel.levels[v] for v in node.inputs if v in kernel.levels]
    if node.primitive.kind == REDUCTION:
        return _place_reduction(node, kernel)
    shape = node.out.shape
    if is_unit_reshape(node) and not internal:
        return "reshape of an array from memory: a view"
    if FINAL in internal:
        if is_scalar_shape(shape) and set(internal) == {FINAL} and _scalar_finals(node, kernel):
            return FINAL, outer
        return "uses a reduction of this kernel, known only after its loop"
    if shape == domain and not is_unit_reshape(node):
        return INNER, outer
    if outer is not None and outer < len(domain) and shape in row_shapes(domain, outer):
        if INNER in internal:
            return "per-row value computed from per-element values without a reduction"
        return ROW, outer
    return f"shape {shape} differs from the kernel's domain {domain}"


def _scalar_finals(node: Node, kernel: Kernel) -> bool:
    return all(is_scalar_shape(v.shape) for v in node.inputs if v in kernel.levels)


def _place_reduction(node: Node, kernel: Kernel) -> tuple[str, int | None] | str:
    x = node.inputs[0]
    level = kernel.levels.get(x, INNER if x.shape == kernel.domain else None)
    if level is None:
        return f"reduces a {x.shape} array; the kernel's domain is {kernel.domain}"
    if level == FINAL:
        return "reduces a value known only after this kernel's loop"
    if level == ROW:
        if reduction_kind(node, x.shape) == ("full", len(x.shape)):
            return FINAL, kernel.outer
        return "partial reduction of a per-row value"
    kind = reduction_kind(node, kernel.domain)
    if kind is None:
        return f"reduction over axes {node.param('axes')} is neither row-, column- nor full"
    what, outer = kind
    if what == "full":
        return FINAL, kernel.outer
    if kernel.outer is not None and kernel.outer != outer:
        return (f"reduction splits the domain at axis {outer}, the kernel at axis "
                f"{kernel.outer}")
    return (ROW if what == "row" else FINAL), outer


def start_domain(node: Node) -> Shape:
    return node.inputs[0].shape if node.primitive.kind == REDUCTION else node.out.shape


# ---------------------------------------------------------------- the planner

class _Planner:
    def __init__(self, graph: Graph, fuse: bool, max_nodes: int) -> None:
        self.graph = graph
        self.fuse = fuse
        self.max_nodes = max_nodes
        self.steps: list[Step] = []
        self.step_of: dict[Value, Step] = {}
        self.deps: dict[int, set[int]] = {}
        # Constants are spelled as literals in kernels; those derived from shapes are
        # kernel inputs instead (ops.size_const), so the source fits every batch size.
        self.consts = {n.out for n in graph.nodes
                       if n.primitive is P.const and not n.param("size")}
        self.kernels_of: dict[Shape, list[Kernel]] = {}  # by domain, in creation order
        self._ancestors: set[int] | None = None

    def run(self) -> Plan:
        for node in self.graph.nodes:
            if node.primitive is P.const:
                continue
            reason = fusable(node)
            if reason is not None:
                self._add_step(LibraryCall(len(self.steps) + 1, node, reason), node)
                continue
            self._place(node)
        steps = self._ordered()
        if self.fuse:
            self._recompute_cheap(steps)
            steps = [s for s in steps if not isinstance(s, Kernel) or s.nodes]
            for number, step in enumerate(steps, 1):
                step.index = number
        users = self._users(steps)
        for step in steps:
            if isinstance(step, Kernel):
                self._finish_kernel(step, users)
        return Plan(self.graph, steps, self.fuse)

    @staticmethod
    def _users(steps: list[Step]) -> dict[Value, set[int]]:
        """For each value, the steps (by id) that read it from memory."""
        users: dict[Value, set[int]] = {}
        for step in steps:
            for value in _reads(step):
                users.setdefault(value, set()).add(id(step))
        return users

    def _recompute_cheap(self, steps: list[Step]) -> None:
        """Move cheap per-element values that only later kernels of the same domain read
        into those kernels (RECOMPUTE_MAX_COST), where that reads no more arrays."""
        users = self._users(steps)
        by_id = {id(step): step for step in steps}
        outputs = set(self.graph.outputs)
        position = {node: i for i, node in enumerate(self.graph.nodes)}   # program order
        for kernel in steps:
            if not isinstance(kernel, Kernel):
                continue
            for node in list(kernel.nodes):
                readers = [by_id[i] for i in users.get(node.out, ())]
                if node.out in outputs or not readers or not all(
                        isinstance(r, Kernel) and r.domain == kernel.domain for r in readers):
                    continue
                chain = self._cheap_chain(node, kernel, users, outputs)
                if chain is None or not all(
                        self._recomputes_cheaply(chain, r, kernel) for r in readers):
                    continue
                for reader in readers:
                    added = [n for n in chain if n.out not in reader.levels]
                    reader.nodes = sorted(reader.nodes + added, key=position.__getitem__)
                    reader.levels.update((n.out, INNER) for n in added)
                users = self._users(steps)
                _drop_unused(kernel, users, outputs)

    def _cheap_chain(self, node: Node, kernel: Kernel, users: dict[Value, set[int]],
                     outputs: set[Value]) -> list[Node] | None:
        """The per-element nodes of `kernel` that compute `node` from values in memory
        (its inputs, its stored values) and constants, in program order; None if they
        are more than RECOMPUTE_MAX_COST or not all plain per-element maths."""
        local = {n.out: n for n in kernel.nodes}
        chain: dict[Value, Node] = {}
        stack, cost = [node], 0
        while stack:
            n = stack.pop()
            if n.out in chain:
                continue
            if (n.primitive.kind != ELEMENTWISE or len(n.outputs) != 1
                    or kernel.levels[n.out] != INNER or n.primitive.cost >= COSTLY):
                return None
            cost += n.primitive.cost
            if cost > RECOMPUTE_MAX_COST:
                return None
            chain[n.out] = n
            for x in n.inputs:
                stored = x in outputs or users.get(x, set()) - {id(kernel)}
                if x in local and not stored and x not in self.consts:
                    stack.append(local[x])
        return list(chain.values())

    def _recomputes_cheaply(self, chain: list[Node], reader: Kernel, kernel: Kernel) -> bool:
        """Whether `reader` can compute `chain` reading at most one more domain-sized
        array than now (the one replacing the chain's value), and stays in its size."""
        if len(reader.nodes) + len(chain) > self.max_nodes:
            return False
        computed = {n.out for n in chain}
        size = math.prod(kernel.domain)
        new = {x for n in chain for x in n.inputs
               if x not in computed and x not in self.consts and x not in reader.levels
               and math.prod(x.shape) == size} - _reads(reader)
        return len(new) <= 1

    def _producer_steps(self, node: Node) -> list[Step]:
        seen: list[Step] = []
        for value in node.inputs:
            step = self.step_of.get(value)
            if step is not None and step not in seen:
                seen.append(step)
        return seen

    def _place(self, node: Node) -> None:
        notes: list[Note] = []
        self._ancestors = None  # of this node's producers, found when a sibling asks
        if self.fuse:
            producers = [s for s in reversed(self._producer_steps(node)) if isinstance(s, Kernel)]
            siblings = [s for s in reversed(self.kernels_of.get(start_domain(node), []))
                        if s not in producers]
            chosen = None
            for kernel in producers + siblings:
                if chosen is not None and kernel not in producers:
                    break
                # Every producer kernel is asked, even after one accepted the node: each
                # one the node does not join is a kernel boundary, and the plan says why.
                where = self._fits(node, kernel)
                if isinstance(where, str):
                    if kernel in producers:
                        notes.append(Note(kernel, where))
                elif chosen is None:
                    chosen, level = kernel, where
                else:
                    notes.append(Note(kernel, instead=chosen))
            if chosen is not None:
                self._join(node, chosen, *level)
                _add_notes(chosen, notes)
                return
        else:
            notes.append(Note(None, "fuse=False: one kernel per primitive"))
        kernel = Kernel(len(self.steps) + 1, start_domain(node))
        where = place(node, kernel)
        if isinstance(where, str):  # not loop-shaped even alone: NumPy runs it
            self._add_step(LibraryCall(len(self.steps) + 1, node, where), node)
            return
        _add_notes(kernel, notes)
        self._add_step(kernel, None)
        self._join(node, kernel, *where)

    def _fits(self, node: Node, kernel: Kernel) -> tuple[str, int | None] | str:
        """`place(node, kernel)`, or why not, including a full kernel or a dependency cycle."""
        if len(kernel.nodes) >= self.max_nodes:
            return f"kernel size limit ({self.max_nodes} IR nodes)"
        where = place(node, kernel)
        if not isinstance(where, str) and self._creates_cycle(node, kernel):
            return "it would need its own output"
        return where

    def _join(self, node: Node, kernel: Kernel, level: str, outer: int | None) -> None:
        kernel.outer = outer
        kernel.nodes.append(node)
        kernel.levels[node.out] = level
        self.step_of[node.out] = kernel
        self._record_deps(node, kernel)

    def _add_step(self, step: Step, node: Node | None) -> None:
        self.steps.append(step)
        if isinstance(step, Kernel):
            self.kernels_of.setdefault(step.domain, []).append(step)
        self.deps[id(step)] = set()
        if node is not None:
            for out in node.outputs:
                self.step_of[out] = step
            self._record_deps(node, step)

    def _record_deps(self, node: Node, step: Step) -> None:
        for source in self._producer_steps(node):
            if source is not step:
                self.deps[id(step)].add(id(source))

    def _creates_cycle(self, node: Node, kernel: Kernel) -> bool:
        """Joining is wrong if an input comes from a step that depends on `kernel`."""
        producers = self._producer_steps(node)
        if kernel not in producers:
            # A sibling: one search of the producers' ancestors serves every sibling the
            # node is offered to (a search per sibling made planning an unrolled loop
            # cubic in its length).
            if self._ancestors is None:
                self._ancestors = self._reachable([id(s) for s in producers])
            return id(kernel) in self._ancestors
        stack = [id(s) for s in producers if s is not kernel]
        seen: set[int] = set()
        while stack:
            current = stack.pop()
            if current == id(kernel):
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(self.deps[current])
        return False

    def _reachable(self, stack: list[int]) -> set[int]:
        """The steps in `stack` and every step they depend on, by id."""
        seen: set[int] = set()
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.deps[current])
        return seen

    def _ordered(self) -> list[Step]:
        """Steps in an order that respects their dependencies (creation order if possible)."""
        order: list[Step] = []
        placed: set[int] = set()
        pending = list(self.steps)
        while pending:
            for step in pending:
                if self.deps[id(step)] <= placed:
                    order.append(step)
                    placed.add(id(step))
                    pending.remove(step)
                    break
            else:
                raise AssertionError("fusion planner produced cyclic kernel dependencies")
        for number, step in enumerate(order, 1):
            step.index = number
        return order

    def _finish_kernel(self, kernel: Kernel, users: dict[Value, set[int]]) -> None:
        outside = set(self.graph.outputs)
        for node in kernel.nodes:
            if users.get(node.out, set()) - {id(kernel)}:
                outside.add(node.out)
        for node in kernel.nodes:
            for value in node.inputs:
                if (value not in kernel.levels and value not in self.consts
                        and value not in kernel.inputs):
                    kernel.inputs.append(value)
        kernel.outputs = [n.out for n in kernel.nodes if n.out in outside]


def _reads(step: Step) -> set[Value]:
    """The values a step reads from memory."""
    if isinstance(step, LibraryCall):
        return set(step.node.inputs)
    return {v for n in step.nodes for v in n.inputs if v not in step.levels}


def _drop_unused(kernel: Kernel, users: dict[Value, set[int]], outputs: set[Value]) -> None:
    """Remove the nodes of `kernel` that nothing reads any more (after recomputing)."""
    for node in reversed(list(kernel.nodes)):
        read_here = any(node.out in n.inputs for n in kernel.nodes if n is not node)
        if not read_here and node.out not in outputs and not users.get(node.out):
            kernel.nodes.remove(node)
            del kernel.levels[node.out]


def plan_kernels(graph: Graph, fuse: bool = True, max_nodes: int | None = None) -> Plan:
    """Partition `graph` into fused loop kernels and library calls, none of more
    than `max_nodes` IR nodes (default `MAX_KERNEL_NODES`)."""
    return _Planner(graph, fuse, MAX_KERNEL_NODES if max_nodes is None else max_nodes).run()
