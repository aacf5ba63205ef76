"""Compiling plans to callables, caching them, and running them. Imports ir, codegen."""
from __future__ import annotations

import numpy as np

from fusegrad.codegen import Kernel, compile_shared, plan_kernels
from fusegrad.ir.graph import Graph
from fusegrad.runtime import stats
from fusegrad.runtime.executable import Executable
from fusegrad.runtime.loader import compiled_before

__all__ = ["Executable", "compilable", "compile_graph", "compile_seconds", "stats"]

# What Numba takes to compile a parallel loop kernel, in seconds of one core with a
# cold cache (measured on a 2-core AVX2 machine): about 0.8 s for any kernel, plus
# up to 10 ms per IR node in it (eager backward kernels of 10, 100 and 256 nodes,
# which read many saved arrays: 0.9, 1.8 and 3.5 s; compile_grad's read fewer and
# take 4-7 ms a node). Linear, because the planner cuts kernels at
# `codegen.plan.MAX_KERNEL_NODES` nodes, below where Numba turns quadratic.
COMPILE_KERNEL_SECONDS = 0.8
COMPILE_NODE_SECONDS = 0.01
# A kernel compiled before (in Numba's disk cache, or loaded by this process) only
# loads: 0.1-0.25 s for a whole workload's kernels from the cache (`bench --cold`).
LOAD_KERNEL_SECONDS = 0.05


def compilable(graph: Graph) -> bool:
    """Whether the CPU kernels can hold every value of `graph`: bool, integer, float32
    and float64 arrays in the machine's byte order (Numba has no float16 array). An
    eager graph of other dtypes (NumPy's float16, say) stays on the interpreter."""
    values = [*graph.inputs, *(out for node in graph.nodes for out in node.outputs)]
    values += [value for value, _ in graph.constants]
    return all(_kernel_dtype(value.dtype) for value in values)


def _kernel_dtype(dtype: np.dtype) -> bool:
    return dtype.isnative and (dtype.kind in "biu" or dtype in (np.float32, np.float64))


def compile_graph(graph: Graph, *, device: str = "cpu", fuse: bool = True) -> Executable:
    """Plan `graph` into kernels and load them (Numba compiles each on first call,
    or loads it from the disk cache)."""
    if device == "cuda":
        from fusegrad.runtime.cuda import CudaExecutable  # imports numba.cuda: only when asked
        return CudaExecutable(plan_kernels(graph, fuse=fuse))
    return Executable(plan_kernels(graph, fuse=fuse), device=device)


def compile_seconds(graph: Graph, *, fuse: bool = True) -> float:
    """A prediction of how long compiling `graph` for the CPU takes (library calls
    compile nothing; kernels compiled before load), for callers choosing between
    compiling and interpreting."""
    plan = plan_kernels(graph, fuse=fuse)
    kernels = [step for step in plan.steps if isinstance(step, Kernel)]
    sources = [compile_shared(kernel, plan) for kernel in kernels]
    compiled = compiled_before([(source.text, source.entry) for source in sources])
    return sum(LOAD_KERNEL_SECONDS if done else
               COMPILE_KERNEL_SECONDS + COMPILE_NODE_SECONDS * len(kernel.nodes)
               for kernel, done in zip(kernels, compiled))
