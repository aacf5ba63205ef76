"""Fusion planning and kernel emission. Imports only `fusegrad.ir`."""
from fusegrad.codegen.cpu import compile_cpu, emit_cpu, kernel_parameters, partial_nodes
from fusegrad.codegen.describe import describe_plan
from fusegrad.codegen.kernel_source import Buffer, KernelSource
from fusegrad.codegen.plan import Kernel, LibraryCall, Plan, plan_kernels
from fusegrad.codegen.source import SourceNames

__all__ = ["Buffer", "KernelSource", "compile_kernel", "emit", "emit_cpu", "kernel_parameters", "partial_nodes", "describe_plan", "Kernel",
           "LibraryCall", "Plan", "plan_kernels", "SourceNames"]


def compile_kernel(kernel: Kernel, names: SourceNames, plan: Plan,
                   device: str = "cpu") -> KernelSource:
    """`kernel` for `device`: its source and how to launch it."""
    # Size-derived constants are not literals: the plan made them kernel inputs.
    consts = {n.out: n for n in plan.graph.nodes
              if n.primitive.name == "const" and not n.param("size")}
    if device == "cpu":
        return compile_cpu(kernel, names, consts)
    from fusegrad.codegen.cuda import compile_cuda
    return compile_cuda(kernel, names, consts)


def emit(kernel: Kernel, names: SourceNames, plan: Plan, device: str = "cpu") -> str:
    """Source text of `kernel` for `device`."""
    return compile_kernel(kernel, names, plan, device).text
