"""The schedule of one loop kernel: which statement runs at which stage, and how
each value is indexed. Targets (CPU, CUDA) share it and differ only in loop syntax."""
from __future__ import annotations

from dataclasses import dataclass

from fusegrad.codegen.plan import FINAL, INNER, ROW, Kernel, is_unit_reshape, reduction_kind
from fusegrad.codegen.source import SourceNames, Writer
from fusegrad.ir import primitives as P
from fusegrad.ir.graph import Node, Value, dtype_str
from fusegrad.ir.primitive import REDUCTION, literal


@dataclass
class Schedule:
    kernel: Kernel
    consts: dict[Value, Node]         # constants, spelled as literals where used
    ready: dict[Value, int]           # stage from which a value can be computed
    stages: int                       # number of inner-loop stages per outer point

    @property
    def rank(self) -> int:
        return len(self.kernel.domain)

    @property
    def outer(self) -> int:
        return self.kernel.outer_axes

    def level(self, value: Value) -> str | None:
        return self.kernel.levels.get(value)


def looped(sched: Schedule, axis: int) -> bool:
    """Whether `axis` gets a loop. One of size 1 does not, its index is 0: that loop
    would run once, and Python nests at most 20 blocks while NumPy allows 64 axes,
    which beyond a few are mostly of size 1 (see plan.MAX_LOOPED_AXES)."""
    return sched.kernel.domain[axis] != 1


def open_loop(w: Writer, sched: Schedule, axis: int) -> None:
    """`for i<axis> in range(n<axis>):`, the writer one level deeper; for an axis of
    size 1, `i<axis> = 0` at this level instead. The caller restores the depth."""
    if looped(sched, axis):
        w.line(f"for i{axis} in range(n{axis}):")
        w.depth += 1
    else:
        unit_index(w, axis)


def unit_index(w: Writer, axis: int) -> None:
    w.line(f"i{axis} = 0", "size 1: no loop")


def schedule(kernel: Kernel, consts: dict[Value, Node]) -> Schedule:
    ready: dict[Value, int] = {}
    stages = 0
    for node in kernel.nodes:
        start = max((ready.get(v, 0) for v in node.inputs), default=0)
        level = kernel.levels[node.out]
        # A row sum is known only after the stage loop that accumulates it.
        ready[node.out] = start + 1 if row_reduction(node, kernel) else start
        # Stores of per-element values, and reductions of them, need a stage loop.
        reads_elements = (node.primitive.kind == REDUCTION
                          and kernel.levels.get(node.inputs[0], INNER) == INNER)
        if reads_elements or (level == INNER and node.out in kernel.outputs):
            stages = max(stages, start + 1)
    return Schedule(kernel, consts, ready, stages)


def row_reduction(node: Node, kernel: Kernel) -> bool:
    return node.primitive.kind == REDUCTION and kernel.levels[node.out] == ROW


def column_reduction(node: Node, kernel: Kernel) -> bool:
    if node.primitive.kind != REDUCTION or kernel.levels[node.out] != FINAL:
        return False
    x = node.inputs[0]
    if kernel.levels.get(x) == ROW:
        return False
    return reduction_kind(node, kernel.domain)[0] == "column"


# ---------------------------------------------------------------- spelling

def index(shape: tuple[int, ...], consumer_rank: int) -> str:
    """Subscript reading an array of `shape`, right-aligned to a value whose dims
    are the domain's first `consumer_rank` axes (size-1 dims broadcast: index 0)."""
    if not shape:
        return "[0]"  # 0-d arrays are passed as shape (1,)
    offset = consumer_rank - len(shape)
    parts = ["0" if d == 1 else f"i{offset + j}" for j, d in enumerate(shape)]
    return f"[{', '.join(parts)}]"


def read_once(value: Value, sched: Schedule) -> bool:
    """Whether `value` is a kernel input of one element (0-d, as a mean's 1/N or a
    Python number of an eager op; or every dim of size 1), the same at every point:
    the kernel reads it once, into `<name>_scalar`, before its loops. Read inside
    them, it was a load LLVM could not hoist (the loop's stores might write it) and
    a branch it could not turn into a select (a clamp's `where`): no SIMD. An eager
    clamp of 4096x256 float32 took 0.6 ms so, 0.1 with the reads hoisted."""
    return (value not in sched.kernel.levels and value not in sched.consts
            and all(d == 1 for d in value.shape))


def emit_scalar_reads(w: Writer, sched: Schedule, names: SourceNames) -> None:
    """`<name>_scalar = <name>[0]` for each input `read_once` (at a kernel's start)."""
    for value in sched.kernel.inputs:
        if read_once(value, sched):
            w.line(f"{names(value)}_scalar = {names(value)}{index(value.shape, len(value.shape))}")


def operand(value: Value, consumer: Node, sched: Schedule, names: SourceNames) -> str:
    const = sched.consts.get(value)
    if const is not None:
        return literal(const.param("value"), const.param("dtype"))
    if value in sched.kernel.levels:
        return names(value)
    if read_once(value, sched):
        return names(value) + "_scalar"
    # Reductions read their input over the whole domain; other nodes at their own rank.
    rank = len(value.shape) if consumer.primitive.kind == REDUCTION else len(consumer.out.shape)
    return names(value) + index(value.shape, rank)


def expression(node: Node, sched: Schedule, names: SourceNames) -> str:
    args = [operand(v, node, sched, names) for v in node.inputs]
    if node.primitive is P.reshape and is_unit_reshape(node):
        return args[0]
    if node.out.dtype.kind == "i" and node.primitive.modular:
        # Numba's signed arithmetic is `nsw` (overflow is undefined, and LLVM
        # optimizes as if it never happened); unsigned arithmetic wraps, and has the
        # same low bits.
        args = [f"np.uint64({a})" for a in args]
    return _wrapped(node.primitive.spell(args, node.out.dtype, node.attrs), args, node)


def _wrapped(text: str, args: list[str], node: Node) -> str:
    """`text` cast back to the node's dtype where Numba would widen it. Numba computes
    integer arithmetic in 64 bits (uint8 - uint8 is a uint64, int8 * int8 an int64,
    True + True the int64 2) where NumPy wraps around in the array's dtype, so
    `u - 1` at u = 0 would be 2**64 - 1 for what follows instead of 255; the cast
    keeps the low bits, as NumPy does. Float arithmetic stays as written (Numba
    keeps float32 in float32), so float kernels do not change."""
    dtype = node.out.dtype
    widens = dtype.kind in "iu" or (dtype.kind == "b" and any(v.dtype.kind == "b"
                                                              for v in node.inputs))
    # A bare operand or a typed constructor (cast, const) already has the dtype.
    if not widens or text in args or node.primitive in (P.cast, P.const):
        return text
    return f"np.{dtype.name}({text})"


def ir_comment(node: Node, sched: Schedule, names: SourceNames) -> str:
    """The IR line a statement implements, spelled as the dump prints it."""
    def spell(value: Value) -> str:
        const = sched.consts.get(value)
        if const is None:
            return names.ir(value)
        return f"{const.param('value')!r}:{dtype_str(const.param('dtype'))}"
    args = " ".join(spell(v) for v in node.inputs)
    return f"{names.ir(node.out)} = {node.primitive.name} {args}".rstrip()


def store_index(value: Value, sched: Schedule) -> str:
    """Subscript writing `value` (an output) from inside the loops."""
    level = sched.level(value)
    if level == INNER:
        return "[" + ", ".join(f"i{a}" for a in range(sched.rank)) + "]" if sched.rank else "[0]"
    if level == ROW:
        return index(value.shape, len(value.shape))
    return "[" + ", ".join("0" for _ in value.shape) + "]" if value.shape else "[0]"
