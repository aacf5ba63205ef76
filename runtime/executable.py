"""Running a kernel plan: buffers, launches in order, outputs."""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np

from fusegrad.codegen import (Kernel, KernelSource, LibraryCall, Plan, SourceNames,
                              compile_kernel, compile_shared)
from fusegrad.codegen.describe import annotate, split_source
from fusegrad.ir import primitives as P
from fusegrad.ir.graph import Value
from fusegrad.ir.interpreter import run_node
from fusegrad.ir.loops import run_scan
from fusegrad.runtime import blas, buffers, stats
from fusegrad.runtime.loader import ChunkLauncher, Launcher, load, source_path
from fusegrad.runtime.threads import thread_count


# Below this many domain elements a kernel runs its chunks in one call on the calling
# thread: handing chunks to the pool and waiting for them costs about 10-20 us more
# than that call (milliseconds when the machine is busy), and the work itself less
# than that. Measured on a 2-core Xeon: W1 at 10^5 took 39-47 us in one call, 63-74 us
# on two threads. Tests lower it to exercise the threads.
PARALLEL_MIN_SIZE = 1 << 17


class KernelStep:
    """One compiled loop kernel and how to call it."""

    def __init__(self, kernel: Kernel, compiled: KernelSource, launch: Callable,
                 shown: Callable[[], KernelSource] | None = None) -> None:
        self.kernel = kernel          # the plan's, for descriptions; launches read `compiled`
        self.compiled = compiled
        # The kernel under the graph's names, for the dump: `compiled` may be spelled
        # with names local to the kernel (codegen.compile_shared). Made when asked.
        self._shown = shown
        self.launch = launch
        self.inputs = compiled.inputs
        self.outputs = compiled.outputs
        self.entry = compiled.entry

    def shown(self) -> KernelSource:
        """The kernel as the dump shows it: the code that runs, under the graph's names."""
        if callable(self._shown):
            self._shown = self._shown()
        return self.compiled if self._shown is None else self._shown

    @property
    def source(self) -> str:
        return self.shown().text

    @property
    def threaded(self) -> bool:
        """Whether the kernel's chunks run on the thread pool (at these shapes)."""
        return isinstance(self.launch, ChunkLauncher)

    def note(self) -> str:
        """For the dump: whether the chunks run on threads, and why."""
        if not self.compiled.runs_chunks:
            return ""
        size = self.compiled.size
        if self.threaded:
            return f"; threaded: {size} points >= PARALLEL_MIN_SIZE"
        return f"; single-threaded: {size} points < PARALLEL_MIN_SIZE"

    # Inputs another kernel of the same executable made: fresh C-contiguous arrays of
    # at least one dimension, which _kernel_array would pass as they are (Executable
    # sets it; a small call is mostly such per-call Python work).
    trusted: frozenset = frozenset()

    def run(self, env: dict, threads: int) -> None:
        domain = self.compiled.domain
        prepared = self._prepared
        if prepared is None or prepared[0] != (threads, domain):
            prepared = self._prepare(threads, domain)
        _, tail, allocations, checked, reshaped = prepared
        args = [_kernel_array(env[v]) if check else env[v] for v, check in checked]
        arrays = [make(shape, dtype) for shape, dtype, make in allocations]
        self.launch(*args, *arrays, *tail)
        for (value, shape), array in zip(reshaped, arrays):
            env[value] = array if shape is None else array.reshape(shape)

    _prepared: tuple | None = None

    def _prepare(self, threads: int, domain: tuple) -> tuple:
        """What run works out from the thread count and the domain alone, once."""
        nchunks = max(1, min(threads, domain[0])) if domain else 1
        allocations = []
        for b in self.compiled.buffers:
            shape = (nchunks,) + b.shape if b.chunked else b.shape
            allocations.append((shape, b.dtype, _allocator(shape, b.dtype, b.fill)))
        checked = [(v, v not in self.trusted) for v in self.inputs]
        # Per output, the shape to view its buffer as, where that differs.
        reshaped = [(v, None if a[0] == v.shape else v.shape)
                    for a, v in zip(allocations, self.outputs)]
        tail = (int(nchunks), *(int(n) for n in domain))
        if self.compiled.runs_chunks and not isinstance(self.launch, ChunkLauncher):
            tail += (0, int(nchunks), True)   # every chunk and the epilogue, in one call
        self._prepared = ((threads, domain), tail, allocations, checked, reshaped)
        return self._prepared


def _allocator(shape: tuple, dtype: np.dtype, fill) -> Callable:
    """How to make a kernel's buffer, called with (shape, dtype): np.full's result,
    with less Python per call for the common cases."""
    if fill is None:
        small = math.prod(shape) * dtype.itemsize < buffers.MIN_BYTES
        return np.empty if small else buffers.empty   # small ones gain nothing from the pool
    if fill == 0 and not np.signbit(fill):
        return np.zeros
    return functools.partial(_full, fill=fill)


def _full(shape: tuple, dtype: np.dtype, fill) -> np.ndarray:
    return np.full(shape, fill, dtype)


class LibraryStep:
    def __init__(self, call: LibraryCall) -> None:
        self.node = call.node
        self.inputs = call.inputs
        self.outputs = call.outputs

    def run(self, env: dict, threads: int) -> None:
        env[self.node.out] = run_node(self.node, [env[v] for v in self.node.inputs])
        stats.count("library_calls")


class MatmulStep(LibraryStep):
    """A matrix product: NumPy's, with BLAS on one thread and the product split across
    the kernels' threads (runtime.blas)."""

    def run(self, env: dict, threads: int) -> None:
        a, b = [env[v] for v in self.node.inputs]
        out = self.node.out
        with np.errstate(all="ignore"):
            result = blas.matmul(a, b, threads)
        env[out] = result.astype(out.dtype, copy=False).reshape(out.shape)
        stats.count("library_calls")


class ScanStep(LibraryStep):
    """A scan: the host loop (`ir.loops.run_scan`) calling the body compiled once, on
    the CPU, with the same plan options as the graph around it (fuse=False too)."""

    def __init__(self, call: LibraryCall, fuse: bool) -> None:
        super().__init__(call)
        self.name = call.name
        from fusegrad.codegen import plan_kernels
        self.params = self.node.attrs
        self.body = Executable(plan_kernels(self.params["body"].graph, fuse=fuse))
        # The loop runs under one np.errstate: entering one per library call of the
        # body, each step, was a third of a small body's host time.
        self.body.steps = [_QuietLibraryStep(s) if type(s) in (LibraryStep, MatmulStep) else s
                           for s in self.body.steps]

    def run(self, env: dict, threads: int) -> None:
        with np.errstate(all="ignore"):
            results = run_scan(self.body, [env[v] for v in self.node.inputs], **self.params)
        env.update(zip(self.node.outputs, results))
        stats.count("library_calls")


class _QuietLibraryStep:
    """A library call of a scan's body: `run_node` without its np.errstate, which
    the loop around it holds."""

    def __init__(self, step: LibraryStep) -> None:
        node = step.node
        self.node, self.inputs, self.outputs = node, step.inputs, step.outputs
        self.impl, self.attrs = node.primitive.impl, node.attrs
        self.matmul = node.primitive is P.matmul   # runtime.blas's, with the thread count
        self.out = node.out

    def run(self, env: dict, threads: int) -> None:
        if self.matmul:
            result = blas.matmul(*[env[v] for v in self.node.inputs], threads)
        else:
            result = self.impl(*[env[v] for v in self.node.inputs], **self.attrs)
        out = self.out
        env[out] = np.asarray(result).astype(out.dtype, copy=False).reshape(out.shape)
        stats.count("library_calls")


class Executable:
    """A compiled graph: call it with the input arrays, get the output arrays."""

    def __init__(self, plan: Plan, device: str = "cpu") -> None:
        self.plan = plan
        self.device = device
        graph = plan.graph
        self.names = SourceNames(graph)
        self.steps = [self._compile(step) for step in plan.steps]
        made_by_kernels = {v for s in self.steps if isinstance(s, KernelStep)
                           for v in s.outputs if v.shape != ()}
        for step in self.steps:
            if isinstance(step, KernelStep):
                step.trusted = frozenset(made_by_kernels & set(step.inputs))
        self.inputs = graph.inputs
        self.outputs = graph.outputs
        self.constants = {v: a for v, a in graph.constants}
        self.constants.update({n.out: n.primitive.impl(**n.attrs) for n in graph.nodes
                               if n.primitive is P.const})
        own = set(graph.inputs) | set(self.constants)
        # Outputs that are inputs, constants or repeats must be copies: callers may
        # write to what they get back, and must never write to what they passed in.
        # A reshape or transpose run by NumPy is a view, so an output is compared by
        # the array whose memory it shares (its root), not by its own value.
        roots = _view_roots(plan)
        owners = [roots.get(v, v) for v in graph.outputs]
        self._copy = [owner in own or owner in owners[:i] for i, owner in enumerate(owners)]
        self._copies = any(self._copy)
        self._threads = thread_count()

    def _compile(self, step):
        if isinstance(step, LibraryCall):
            if step.node.primitive is P.scan:
                return ScanStep(step, self.plan.fused)
            if step.node.primitive is P.matmul:
                return MatmulStep(step)
            return LibraryStep(step)
        # Compiled under names local to the kernel, so that kernels doing the same
        # work share one file and one compilation; the dump shows the graph's names.
        compiled = compile_shared(step, self.plan)
        shown = lambda: compile_kernel(step, self.names, self.plan, self.device)  # noqa: E731
        launch = Launcher(load(compiled.text, compiled.entry))
        # Shapes are static, so the threaded-or-not choice is made once, here: a small
        # kernel's launch is the dispatcher's call alone (KernelStep._prepare).
        if compiled.runs_chunks and compiled.size >= PARALLEL_MIN_SIZE:
            launch = ChunkLauncher(launch, len(compiled.inputs) + len(compiled.buffers))
        return KernelStep(step, compiled, launch, shown=shown)

    def __call__(self, args: Sequence[np.ndarray]) -> list[np.ndarray]:
        # The steps as one generated function (see `_runner`): a small call is
        # mostly this per-call Python, which the step-by-step loop spends per step.
        runner = self._runner
        if runner is None or runner.steps is not self.steps:
            runner = self._runner = _runner(self)
        return runner(args)

    # Built on the first call, and again if `steps` is replaced (ScanStep does, after
    # construction, for its body).
    _runner = None

    def run_steps(self, args: Sequence[np.ndarray]) -> list[np.ndarray]:
        """What the generated runner does, step by step over a dictionary of values
        (tests check the two against each other)."""
        env: dict[Value, np.ndarray] = dict(self.constants)
        env.update(zip(self.inputs, args))
        threads = self._threads
        for step in self.steps:
            step.run(env, threads)
        if self._copies:
            return [np.array(env[v]) if copy else env[v] for v, copy in zip(self.outputs, self._copy)]
        return [env[v] for v in self.outputs]

    @property
    def kernel_count(self) -> int:
        return sum(isinstance(s, KernelStep) for s in self.steps)

    def describe(self) -> str:
        """The kernel plan and the generated source, for dumps; the header the kernel
        files share is shown once."""
        from fusegrad.codegen import describe_plan
        lines = [describe_plan(self.plan, self.names), "", "# generated source"]
        shown_header = None
        for step in self.steps:
            if not isinstance(step, KernelStep):
                continue
            header, functions = split_source(step.source)
            if header != shown_header:
                lines.append(header)
                shown_header = header
            lines.append(f"\n# ---- {step.kernel.name}  "
                         f"({source_path(step.compiled.text).name}{step.note()})")
            lines.append("\n\n".join(annotate(text, step.kernel, self.names)
                                     for text in functions.values()))
        for step in self.steps:
            if isinstance(step, ScanStep):   # its body's own plan and kernels
                lines.append(f"\n# ==== the body of {step.name}, run once per step "
                             f"(names are the body's, as its IR prints them)")
                lines.append(step.body.describe())
        return "\n".join(lines) + "\n"


# Library calls whose NumPy result is a view of their first input.
_VIEWS = (P.reshape, P.transpose, P.broadcast_to, P.slice_)


def _view_roots(plan: Plan) -> dict[Value, Value]:
    """For each value a library call returns as a view: the value that owns its memory."""
    roots: dict[Value, Value] = {}
    for step in plan.steps:
        if isinstance(step, LibraryCall) and step.node.primitive in _VIEWS:
            source = step.node.inputs[0]
            roots[step.node.out] = roots.get(source, source)
    return roots


def _kernel_array(array: np.ndarray) -> np.ndarray:
    # One compiled specialization per kernel: C-contiguous, writeable, at least 1-d.
    if not (array.flags.c_contiguous and array.flags.writeable):
        array = np.array(array, order="C")
    return array.reshape(1) if array.ndim == 0 else array


# ---------------------------------------------------------------- the generated runner (issue 12, small calls)
# An executable's steps as one straight-line Python function: arrays in locals instead
# of a dictionary keyed by Value, each kernel's buffers, launch arguments and output
# shapes written in as constants (shapes are static). For W1 at 10^3 this per-call
# Python was most of the call (about 4 us of 5.6; the kernel itself runs in 0.7).
# It does what `Executable.run_steps` does; `KernelStep.run` is the reference for a
# kernel, and any other step runs through its own `run(env, threads)`.

def _runner(executable: Executable) -> Callable[[Sequence[np.ndarray]], list]:
    steps = executable.steps
    names: dict[Value, str] = {}
    scope: dict[str, object] = {"_kernel_array": _kernel_array, "_ndarray": np.ndarray,
                                "_copy": np.array}

    def bind(obj: object, prefix: str) -> str:
        """A global of the generated function holding `obj`."""
        name = f"{prefix}{len(scope)}"
        scope[name] = obj
        return name

    def local(value: Value) -> str:
        name = names[value] = f"v{len(names)}"
        return name

    inputs = [local(v) for v in executable.inputs]
    lines = [f"    {', '.join(inputs)}, = args" if inputs else ""]
    for value, array in executable.constants.items():
        names[value] = bind(array, "c")
    threads = executable._threads
    for index, step in enumerate(steps):
        if type(step) is KernelStep:
            lines += _kernel_lines(step, step._prepare(threads, step.compiled.domain),
                                   f"s{index}", names, local, bind)
        else:
            lines += _step_lines(step, threads, names, local, bind)
    outputs = [f"_copy({names[v]})" if copy else names[v]
               for v, copy in zip(executable.outputs, executable._copy)]
    lines.append(f"    return [{', '.join(outputs)}]")
    source = "def run(args):\n" + "\n".join(line for line in lines if line) + "\n"
    exec(compile(source, "<fusegrad executable runner>", "exec"), scope)
    run = scope["run"]
    run.steps = steps
    run.source = source
    return run


def _kernel_lines(step: KernelStep, prepared: tuple, prefix: str, names: dict, local,
                  bind) -> list[str]:
    """`KernelStep.run`, written out for one step's static shapes."""
    _, tail, allocations, checked, reshaped = prepared
    lines, arguments = [], []
    for value, check in checked:
        name = names[value]
        if check:   # _kernel_array's test, inline for the common case it passes; the
            # value itself stays as it is (it may be an output too, or read elsewhere)
            argument = f"{name}_k"
            lines.append(f"    {argument} = {name} if {name}.__class__ is _ndarray and {name}.ndim "
                         f"and {name}.flags.c_contiguous and {name}.flags.writeable "
                         f"else _kernel_array({name})")
            name = argument
        arguments.append(name)
    buffers = []
    for shape, dtype, make in allocations:
        buffer = f"{prefix}_b{len(buffers)}"
        lines.append(f"    {buffer} = {bind(make, 'make')}({_literal(shape)}, {bind(dtype, 'dtype')})")
        buffers.append(buffer)
    sizes = [repr(n) for n in tail]   # nchunks, the domain, and a small kernel's chunks
    lines.append(f"    {bind(step.launch, 'launch')}({', '.join(arguments + buffers + sizes)})")
    for (value, shape), buffer in zip(reshaped, buffers):
        lines.append(f"    {local(value)} = {buffer}" if shape is None else
                     f"    {local(value)} = {buffer}.reshape({_literal(shape)})")
    return lines


def _literal(shape: tuple) -> str:
    return repr(tuple(int(d) for d in shape))


def _step_lines(step, threads: int, names: dict, local, bind) -> list[str]:
    """Any other step: its own `run`, over a dictionary of what it reads."""
    reads = ", ".join(f"{bind(v, 'V')}: {names[v]}" for v in dict.fromkeys(step.inputs))
    lines = [f"    env = {{{reads}}}", f"    {bind(step, 'step')}.run(env, {threads!r})"]
    for value in step.outputs:
        value_global = bind(value, "V")
        lines.append(f"    {local(value)} = env[{value_global}]")
    return lines
