"""Fusion planning and kernel emission. Imports only `fusegrad.ir`."""
from fusegrad.codegen.cpu import compile_cpu, emit_cpu, kernel_parameters, partial_nodes
from fusegrad.codegen.describe import describe_plan
from fusegrad.codegen.kernel_source import Buffer, KernelSource
from fusegrad.codegen.plan import Kernel, LibraryCall, Plan, plan_kernels
from fusegrad.codegen.source import KernelNames, SourceNames

__all__ = ["Buffer", "KernelSource", "compile_kernel", "emit", "emit_cpu", "kernel_parameters", "partial_nodes", "describe_plan", "Kernel",
           "LibraryCall", "Plan", "plan_kernels", "SourceNames", "compile_shared"]


def compile_kernel(kernel: Kernel, names: SourceNames, plan: Plan,
                   device: str = "cpu", function: str | None = None) -> KernelSource:
    """`kernel` for `device`: its source and how to launch it. `function` names the
    CPU entry point (default: the kernel's name)."""
    # Size-derived constants are not literals: the plan made them kernel inputs.
    consts = {n.out: n for n in plan.graph.nodes
              if n.primitive.name == "const" and not n.param("size")}
    if device == "cpu":
        return compile_cpu(kernel, names, consts, function)
    from fusegrad.codegen.cuda import compile_cuda
    return compile_cuda(kernel, names, consts)


def emit(kernel: Kernel, names: SourceNames, plan: Plan, device: str = "cpu") -> str:
    """Source text of `kernel` for `device`."""
    return compile_kernel(kernel, names, plan, device).text


# ---------------------------------------------------------------- issue 12: compile time

def compile_shared(kernel: Kernel, plan: Plan) -> KernelSource:
    """`kernel` for the CPU as it is compiled: under names local to it (`KernelNames`)
    and a function name without the kernel's position in the plan, so that kernels
    doing the same work on the same shapes share one file and one compilation."""
    ops = kernel.name.split("_", 1)[1]  # the name is k<index>_<ops>
    return compile_kernel(kernel, KernelNames(kernel), plan, "cpu", function=f"k_{ops}")
