"""Fusion planning and kernel emission. Imports only `fusegrad.ir`."""
from fusegrad.codegen.cpu import emit_cpu, kernel_parameters, partial_nodes
from fusegrad.codegen.describe import describe_plan
from fusegrad.codegen.plan import Kernel, LibraryCall, Plan, plan_kernels
from fusegrad.codegen.source import SourceNames

__all__ = ["emit", "emit_cpu", "kernel_parameters", "partial_nodes", "describe_plan", "Kernel",
           "LibraryCall", "Plan", "plan_kernels", "SourceNames"]


def emit(kernel: Kernel, names: SourceNames, plan: Plan, device: str = "cpu") -> str:
    """Source text of `kernel` for `device`."""
    consts = {n.out: n for n in plan.graph.nodes if n.primitive.name == "const"}
    if device == "cpu":
        return emit_cpu(kernel, names, consts)
    from fusegrad.codegen.cuda import emit_cuda
    return emit_cuda(kernel, names, consts)
