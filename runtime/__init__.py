"""Compiling plans to callables, caching them, and running them. Imports ir, codegen."""
from __future__ import annotations

from fusegrad.codegen import plan_kernels
from fusegrad.ir.graph import Graph
from fusegrad.runtime import stats
from fusegrad.runtime.executable import Executable

__all__ = ["Executable", "compile_graph", "stats"]


def compile_graph(graph: Graph, *, device: str = "cpu", fuse: bool = True) -> Executable:
    """Plan `graph` into kernels and load them (Numba compiles each on first call,
    or loads it from the disk cache)."""
    if device == "cuda":
        from fusegrad.runtime.cuda import CudaExecutable  # imports numba.cuda: only when asked
        return CudaExecutable(plan_kernels(graph, fuse=fuse))
    return Executable(plan_kernels(graph, fuse=fuse), device=device)
