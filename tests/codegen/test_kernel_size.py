"""Loop kernels have a bounded size: a long fused group (an unrolled loop, a deep
eager graph) is cut into kernels of at most `MAX_KERNEL_NODES` IR nodes, so that
Numba compiles it in time linear in its size and never overflows its recursion.

Graphs are built directly with `ir.ops` and differentiated with `ir.vjp_graph`,
without the optimisation passes, so that a change in the passes cannot change them.
"""
from __future__ import annotations

import numpy as np

from fusegrad import ir
from fusegrad.codegen import Kernel, SourceNames, describe_plan, plan_kernels
from fusegrad.codegen.plan import MAX_KERNEL_NODES
from fusegrad.ir import ops
from fusegrad.ir.graph import Value
from fusegrad.ir.primitive import ELEMENTWISE, REDUCTION
from fusegrad.runtime import Executable

F64 = np.dtype(np.float64)


def unrolled_rnn(steps: int, n: int = 6):
    """sum(h) after `steps` of h = tanh(h * w + x), and its gradients: one fused group."""
    h, w, x = (Value((n,), F64, name) for name in "hwx")
    with ir.building() as builder:
        state = h
        for _ in range(steps):
            state = ops.tanh(ops.add(ops.mul(state, w), x))
        loss = ops.reduce_sum(state)
    return ir.vjp_graph(builder.finish((h, w, x), (loss,)), [0, 1, 2])


def loop_node_count(graph) -> int:
    """Nodes a kernel can compute: all but constants and the seed's reshape."""
    return sum(n.primitive.kind in (ELEMENTWISE, REDUCTION) and n.primitive.name != "const"
               for n in graph.nodes)


def check_cut(plan, bound: int) -> list[Kernel]:
    """Every loop node is in exactly one kernel, and no kernel is over `bound`."""
    kernels = [s for s in plan.steps if isinstance(s, Kernel)]
    placed = [id(node) for k in kernels for node in k.nodes]
    assert len(placed) == len(set(placed)) == loop_node_count(plan.graph)
    assert max(len(k.nodes) for k in kernels) <= bound
    assert len(kernels) >= -(-len(placed) // bound)
    return kernels


def test_a_long_fused_group_is_cut_at_the_kernel_size_limit():
    graph = unrolled_rnn(steps=30)
    assert loop_node_count(graph) > MAX_KERNEL_NODES
    plan = plan_kernels(graph)
    kernels = check_cut(plan, MAX_KERNEL_NODES)
    assert len(kernels) > 1
    reasons = [str(note) for k in kernels for note in k.notes]
    assert any("kernel size limit" in r for r in reasons), reasons
    assert f"kernel size limit ({MAX_KERNEL_NODES} IR nodes)" in describe_plan(
        plan, SourceNames(graph))


def test_kernels_cut_at_the_limit_compute_what_the_interpreter_does(assert_all_close):
    # Few and small kernels to compile: a bound of 12 on a graph of about 30 nodes.
    graph = unrolled_rnn(steps=3)
    plan = plan_kernels(graph, max_nodes=12)
    assert len(check_cut(plan, 12)) >= 3
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(6) * 0.5 for _ in range(3)]
    assert_all_close(Executable(plan)(args), ir.evaluate(graph, args), F64)
