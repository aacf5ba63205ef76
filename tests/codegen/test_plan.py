"""The fusion planner's decisions on the benchmark workloads, at small shapes.

Plans come from `dump`, which traces, plans and emits the kernels without running
(so without compiling) them; only W1 and W2 are run, to count their launches.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.bench_workloads import find_workload
from fusegrad.codegen import Kernel, LibraryCall, plan_kernels
from fusegrad.codegen.loops import schedule
from fusegrad.codegen.plan import INNER, is_unit_reshape
from fusegrad.ir import primitives as P
from fusegrad.ir.primitive import ELEMENTWISE, REDUCTION
from fusegrad.runtime import stats


def _normal(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def layernorm_with_var(x, g, b):
    """API-style layernorm (fg.var) summed against a fixed array: compare W5."""
    y = (x - x.mean(1, keepdims=True)) / fg.sqrt(fg.var(x, 1, keepdims=True) + 1e-5) * g + b
    return (y * WEIGHTS).sum()


def broadcast_chain(x, y):
    """W2 with y a row vector broadcast over x: y's own work has a smaller domain."""
    return (x**2 * fg.exp(x) + fg.sin(x) * y - fg.tanh(x * y) + fg.sqrt(fg.abs(y) + 1)).sum()


WEIGHTS = _normal(20, 6, 7)

# name -> (compiled function, small inputs)
WORKLOADS = {
    key: (fg.compile_grad(find_workload(key).loss(fg), wrt=find_workload(key).wrt), args)
    for key, args in [
        ("W1", find_workload("W1").make_inputs(50)),
        ("W2", find_workload("W2").make_inputs(50)),
        ("W3", (_normal(1, 8, 5), _normal(2, 5, 6), _normal(3, 6), _normal(4, 6, 3),
                _normal(5, 3), _normal(6, 8, 3))),
        ("W4", (_normal(7, 6, 7), np.eye(6, 7, dtype=np.float32))),
        ("W5", (_normal(8, 6, 7), _normal(9, 7), _normal(10, 7), _normal(11, 6, 7))),
    ]
}
WORKLOADS["layernorm-var"] = (fg.compile_grad(layernorm_with_var),
                              (_normal(12, 6, 7), _normal(13, 7), _normal(14, 7)))
WORKLOADS["broadcast-chain"] = (fg.compile_grad(broadcast_chain),
                                (_normal(15, 4, 5), _normal(16, 5)))


def traced(name, traced_for):
    f, args = WORKLOADS[name]
    return traced_for(f, *args)


def kernels(plan) -> list[Kernel]:
    return [s for s in plan.steps if isinstance(s, Kernel)]


def library_calls(plan) -> list[LibraryCall]:
    return [s for s in plan.steps if isinstance(s, LibraryCall)]


def loop_nodes(graph) -> list:
    """Nodes a loop kernel can compute: elementwise (not constants) and reductions."""
    return [n for n in graph.nodes if n.primitive is not P.const
            and n.primitive.kind in (ELEMENTWISE, REDUCTION)]


# ---------------------------------------------------------------- single-kernel workloads

@pytest.mark.parametrize("name", ["W1", "W2"])
def test_elementwise_workloads_are_one_pass(name, traced_for, assert_all_close):
    t = traced(name, traced_for)
    plan = t.executable.plan
    assert len(plan.steps) == 1 and isinstance(plan.steps[0], Kernel), plan.steps
    kernel = plan.steps[0]
    # The value and both gradients come out of the same loop over x and y.
    assert set(kernel.outputs) == set(t.joint.outputs)
    assert schedule(kernel, {}).stages == 1
    f, args = WORKLOADS[name]
    f(*args)  # compiles (once) outside the counted call
    stats.reset()
    value, grads = f(*args)
    counts = stats.snapshot()
    assert counts["kernels_launched"] == 1 and counts["library_calls"] == 0
    reference_value, reference_grads = find_workload(name).numpy_grad(*args)
    assert_all_close([value, *grads], [np.float32(reference_value), *reference_grads],
                     np.float32, what=name)


def test_softmax_cross_entropy_is_one_kernel(traced_for):
    plan = traced("W4", traced_for).executable.plan
    assert len(plan.steps) == 1 and isinstance(plan.steps[0], Kernel)
    kernel = plan.steps[0]
    levels = set(kernel.levels.values())
    assert levels == {"inner", "row", "final"}  # row max and sum, then the mean after the loop


@pytest.mark.parametrize("name", ["W5", "layernorm-var"])
def test_layernorm_forward_and_backward_is_one_loop_kernel(name, traced_for):
    t = traced(name, traced_for)
    plan = t.executable.plan
    assert len(kernels(plan)) == 1
    # Anything else only renames memory: size-1 axes added or dropped, no copies.
    for call in library_calls(plan):
        assert is_unit_reshape(call.node), call.name
    kernel = kernels(plan)[0]
    assert all(n in kernel.nodes for n in loop_nodes(t.joint))


def test_mlp_matmuls_are_library_calls_with_the_rest_fused_around_them(traced_for):
    t = traced("W3", traced_for)
    plan = t.executable.plan
    calls = library_calls(plan)
    matmuls = [n for n in t.joint.nodes if n.primitive is P.matmul]
    assert len(matmuls) == 6  # 2 forward, 4 backward
    assert {c.node for c in calls if c.node.primitive is P.matmul} == set(matmuls)
    for call in calls:
        assert call.node.primitive.kind not in (ELEMENTWISE, REDUCTION), call.name
    in_kernels = {n for k in kernels(plan) for n in k.nodes}
    assert set(loop_nodes(t.joint)) <= in_kernels
    # Three loops: bias + tanh; the residual, the loss and its gradient; tanh's
    # derivative with the bias gradient. Never one per primitive.
    assert len(kernels(plan)) <= 3 < len(loop_nodes(t.joint))
    # The bias gradients (column sums) are computed in kernels that also do
    # per-element work, not in reduction-only loops of their own.
    value, gX, gW1, gb1, gW2, gb2 = t.joint.outputs
    for grad in (gb1, gb2):
        kernel = _kernel_computing(plan, grad)
        assert any(kernel.levels[n.out] == INNER for n in kernel.nodes), kernel.name


def test_cheap_values_are_recomputed_where_read_not_stored(traced_for):
    # 1 - tanh(z)**2 (tanh's derivative) is needed by the backward kernel after the
    # products; that kernel reads tanh(z) anyway (stored for the products): it computes
    # the derivative itself and the forward kernel writes one array, not two.
    plan = traced("W3", traced_for).executable.plan
    forward, _, backward = kernels(plan)
    tanh = next(n for n in forward.nodes if n.primitive is P.tanh)
    assert forward.outputs == [tanh.out]
    derivative = [n for n in backward.nodes if tanh.out in n.inputs]
    assert derivative and tanh.out in backward.inputs
    assert not set(forward.levels) & set(backward.inputs) - {tanh.out}


@fg.compile_grad(wrt=2)
def _two_sources(x, y, w):
    a = fg.exp(x) * y   # stored for the product
    u = x * y           # cheap, but computed after the product it would read x and y
    v = a + 1.0         # cheap, and a is in memory anyway
    return (fg.tanh(a @ w) * u * v).sum()


def test_recomputing_never_reads_more_arrays(traced_for):
    x, y, w = _normal(30, 8, 8), _normal(31, 8, 8), _normal(32, 8, 8)
    plan = traced_for(_two_sources, x, y, w).executable.plan
    first, later = kernels(plan)
    exp = next(n for n in first.nodes if n.primitive is P.exp)
    a = next(n for n in first.nodes if n.primitive is P.mul and exp.out in n.inputs)
    u = next(n for n in first.nodes if n.primitive is P.mul and n is not a)
    v = next(n for n in first.nodes + later.nodes if n.primitive is P.add)
    assert u not in later.nodes and v not in first.nodes
    assert set(first.outputs) == {a.out, u.out}   # u: one write for x and y not read again
    assert set(later.inputs) & set(first.outputs) == {a.out, u.out}   # a read, not v
    value, grad = _two_sources(x, y, w)
    expected_value, expected_grad = fg.compile_grad(_two_sources.__wrapped__, wrt=2,
                                                    fuse=False)(x, y, w)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)


def _kernel_computing(plan, value) -> Kernel:
    """The kernel that computes `value`, looking through reshapes that are views."""
    for step in plan.steps:
        if value in step.outputs:
            if isinstance(step, LibraryCall) and is_unit_reshape(step.node):
                return _kernel_computing(plan, step.node.inputs[0])
            assert isinstance(step, Kernel), step.name
            return step
    raise AssertionError("no step computes the value")


# ---------------------------------------------------------------- fuse=False

@pytest.mark.parametrize("name", list(WORKLOADS))
def test_unfused_plan_has_one_kernel_per_loop_node(name, traced_for):
    graph = traced(name, traced_for).joint
    plan = plan_kernels(graph, fuse=False)
    assert not plan.fused
    assert [k.nodes for k in kernels(plan)] == [[n] for n in loop_nodes(graph)
                                                if not is_unit_reshape(n)]
    assert all(str(note) == "fuse=False: one kernel per primitive"
               for k in kernels(plan) for note in k.notes)


def test_unfused_dump_says_so(traced_for):
    f, args = WORKLOADS["W4"]
    unfused = fg.compile_grad(f.fn, wrt=f.wrt, fuse=False)
    plan = _plan_section(unfused.dump(*args))
    assert plan.splitlines()[0].endswith("unfused (fuse=False)")
    kernel_lines = re.findall(r"^k\d+_", plan, re.MULTILINE)
    assert len(kernel_lines) == len(loop_nodes(traced_for(unfused, *args).joint))


# ---------------------------------------------------------------- reasons

def _plan_section(dump: str) -> str:
    return dump[dump.index("# kernel plan"):dump.index("# generated source")]


def _blocks(plan_text: str) -> dict[str, str]:
    """Step name -> its lines in the plan section."""
    blocks: dict[str, str] = {}
    name = None
    for line in plan_text.splitlines()[1:]:
        match = re.match(r"^((?:k|lib)\d+_\w+)", line)
        if match:
            name = match.group(1)
            blocks[name] = line
        elif name and line.strip():
            blocks[name] += "\n" + line
    return blocks


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_every_kernel_boundary_has_a_recorded_reason(name, traced_for):
    f, args = WORKLOADS[name]
    plan = traced(name, traced_for).executable.plan
    blocks = _blocks(_plan_section(f.dump(*args)))
    assert set(blocks) == {s.name for s in plan.steps}
    written_by = {v: s for s in plan.steps for v in s.outputs}
    for step in plan.steps:
        if isinstance(step, LibraryCall):
            assert re.search(r" -- \S", blocks[step.name]), f"{step.name} gives no reason"
            continue
        for value in step.inputs:
            producer = written_by.get(value)
            if isinstance(producer, Kernel):
                assert f"fusion stopped: not fused into {producer.name}:" in blocks[step.name], (
                    f"{producer.name} -> {step.name} has no reason in\n{blocks[step.name]}")


def test_reasons_name_kernels_of_the_plan(traced_for):
    names = {s.name for s in traced("broadcast-chain", traced_for).executable.plan.steps}
    f, args = WORKLOADS["broadcast-chain"]
    mentioned = re.findall(r"not fused into (\S+):", f.dump(*args))
    assert mentioned and set(mentioned) <= names


def test_plans_are_deterministic(traced_for):
    f, args = WORKLOADS["W3"]
    again = fg.compile_grad(f.fn, wrt=f.wrt)
    assert _plan_section(again.dump(*args)) == _plan_section(f.dump(*args))


def test_domains_with_too_many_large_axes_are_left_to_numpy(assert_all_close):
    """19 axes of size 2: kernels would nest loops deeper than Python compiles (20
    blocks), so NumPy runs that work, and the plan says why; nothing is generated."""
    from fusegrad import ir
    from fusegrad.ir import ops
    from fusegrad.ir.graph import Value
    from fusegrad.runtime import Executable

    shape = (1, 1) + (2,) * 19
    x = Value(shape, np.dtype(np.float32), "x")
    with ir.building() as builder:
        y = ops.mul(ops.tanh(x), ops.reduce_sum(x, len(shape) - 1, keepdims=True))
        total = ops.reduce_sum(ops.mul(y, y))
    graph = builder.finish((x,), (y, total))
    plan = plan_kernels(graph)
    assert plan.steps and all(isinstance(s, LibraryCall) for s in plan.steps)
    assert all("more nested loops than Python compiles" in s.reason for s in plan.steps)
    executable = Executable(plan)
    assert executable.kernel_count == 0
    args = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
    assert_all_close(executable(args), ir.evaluate(graph, args), np.float32, what="19 axes")
