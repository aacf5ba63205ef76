"""ir/passes.py: each pass on small handcrafted graphs, and the pipeline on a joint graph.

Every check also runs the passes one by one through `optimize_verified`, which
verifies each result and that no pass edits the graph it was given.
"""
from __future__ import annotations

import numpy as np
import pytest

from fusegrad import ir
from fusegrad.ir import ops, passes
from fusegrad.ir import primitives as P
from fusegrad.ir.graph import Graph, Node, Value

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def build(make_outputs, *types, names="xyzw") -> Graph:
    """A graph of ``make_outputs(*inputs)``; `types` are (shape, dtype) pairs."""
    inputs = tuple(Value(shape, dtype, name) for (shape, dtype), name in zip(types, names))
    with ir.building() as builder:
        outputs = make_outputs(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return builder.finish(inputs, outputs)


def primitive_names(graph: Graph) -> list[str]:
    return [node.primitive.name for node in graph.nodes]


def assert_same_results(graph: Graph, optimized: Graph, args) -> None:
    """Bit for bit: NaN where NaN, and the sign of every zero."""
    for before, after in zip(ir.evaluate(graph, args), ir.evaluate(optimized, args)):
        assert after.shape == before.shape and after.dtype == before.dtype
        np.testing.assert_array_equal(after, before)
        if after.dtype.kind == "f":
            np.testing.assert_array_equal(np.signbit(after[after == 0]),
                                          np.signbit(before[before == 0]), err_msg="sign of 0")


# ---------------------------------------------------------------- simplify

@pytest.mark.parametrize("make, dtype", [
    (lambda x: x * 1, F32), (lambda x: 1 * x, F32), (lambda x: x * 1.0, F32),
    (lambda x: x + -0.0, F32), (lambda x: -0.0 + x, F32), (lambda x: x - 0, F32),
    (lambda x: x / 1, F32), (lambda x: -(-x), F32),
    (lambda x: ops.reshape(ops.reshape(x, (6,)), (2, 3)), F32),
    (lambda x: x + 0, np.int32), (lambda x: 0 + x, np.uint8), (lambda x: x - 0, np.int8),
], ids=["x*1", "1*x", "x*1.0", "x+-0.0", "-0.0+x", "x-0", "x/1", "neg(neg(x))",
        "reshape(reshape(x))", "int x+0", "int 0+x", "int x-0"])
def test_simplify_removes_identities(make, dtype, optimize_verified):
    graph = build(make, ((2, 3), dtype))
    assert graph.nodes  # the builder kept the node; the pass is what removes it
    simplified = passes.simplify(graph)
    ir.verify(simplified)
    assert simplified.outputs == graph.inputs
    assert optimize_verified(graph).nodes == ()


@pytest.mark.parametrize("make", [
    lambda x: 0 - x, lambda x: 1 / x, lambda x: x * 0, lambda x: x - x,
    # -0.0 + 0.0 is +0.0, and so is -0.0 - -0.0: these normalise the sign of zero.
    lambda x: x + 0.0, lambda x: 0.0 + x, lambda x: x - -0.0,
], ids=["0-x", "1/x", "x*0", "x-x", "x+0.0", "0.0+x", "x--0.0"])
def test_simplify_keeps_what_is_not_an_identity(make, optimize_verified):
    graph = build(make, ((4,), F64))
    optimized = optimize_verified(graph)
    assert optimized.nodes and optimized.outputs != graph.inputs
    assert_same_results(graph, optimized, [np.array([2.0, -0.5, np.inf, -0.0])])


@pytest.mark.parametrize("make", [lambda x: x * -1, lambda x: -1.0 * x, lambda x: -(x * -1)],
                         ids=["x*-1", "-1*x", "-(x*-1)"])
def test_simplify_turns_a_product_with_minus_one_into_a_negation(make, optimize_verified):
    graph = build(make, ((3,), F32))
    optimized = optimize_verified(graph)
    assert primitive_names(optimized) in (["neg"], [])
    assert_same_results(graph, optimized, [np.array([2.0, -0.0, np.nan], np.float32)])


def test_simplify_keeps_an_identity_that_broadcasts():
    """x:f32[] * ones(3) is not x: the result has the shape of the ones."""
    graph = build(lambda x: x * ops.broadcast_to(ops.const(1.0, F32), (3,)), ((), F32))
    optimized = ir.optimize(graph)
    assert optimized.outputs[0].shape == (3,)
    np.testing.assert_array_equal(ir.evaluate(optimized, [np.float32(2)])[0], [2, 2, 2])


def test_simplify_keeps_an_identity_that_changes_dtype():
    """An int32 x times 1.0 is x cast to float32, not x."""
    graph = build(lambda x: x * 1.0, ((3,), np.int32))
    optimized = ir.optimize(graph)
    assert optimized.outputs[0].dtype == F32
    assert primitive_names(optimized) == ["cast"]


def test_simplify_absorbs_a_broadcast_into_an_elementwise_op():
    graph = build(lambda x, y: x + ops.broadcast_to(y, (2, 3)), ((2, 3), F64), ((3,), F64))
    simplified = passes.simplify(graph)
    assert simplified.nodes[-1].inputs == graph.inputs  # the broadcast_to is now dead
    assert primitive_names(passes.eliminate_dead_code(simplified)) == ["add"]


# ---------------------------------------------------------------- fold_constants

def test_fold_constants_folds_a_scalar_chain(optimize_verified):
    def make(x):
        c = ops.const(2.0, F32)
        return x * ops.sqrt(c * 3.0 + 10.0)          # sqrt(16) = 4
    graph = build(make, ((3,), F32))
    optimized = optimize_verified(graph)
    assert primitive_names(optimized) == ["const", "mul"]
    assert optimized.nodes[0].param("value") == 4.0
    assert optimized.nodes[0].param("dtype") == F32
    assert_same_results(graph, optimized, [np.array([1, 2, 3], F32)])


def test_fold_constants_folds_broadcast_constants(optimize_verified):
    def make(x):
        two = ops.broadcast_to(ops.const(2.0, F64), (2, 3))
        three = ops.broadcast_to(ops.reshape(ops.const(3.0, F64), (1, 1)), (2, 3))
        return two * three, x + two * three
    graph = build(make, ((2, 3), F64))
    folded = passes.fold_constants(graph)
    ir.verify(folded)
    optimized = optimize_verified(graph)
    # The product is one constant, broadcast once, shared by both outputs; the add
    # takes the scalar directly.
    assert sorted(primitive_names(optimized)) == ["add", "broadcast_to", "const"]
    (const,) = [n for n in optimized.nodes if n.primitive is P.const]
    assert const.param("value") == 6.0
    x = np.arange(6.0).reshape(2, 3)
    six, shifted = ir.evaluate(optimized, [x])
    np.testing.assert_array_equal(six, np.full((2, 3), 6.0))
    np.testing.assert_array_equal(shifted, x + 6)


def test_fold_constants_keeps_the_dtype_of_the_node():
    graph = build(lambda x: x * (ops.const(1.0, F32) / 3.0), ((), F32))
    (const,) = [n for n in ir.optimize(graph).nodes if n.primitive is P.const]
    assert const.param("value") == float(np.float32(1) / np.float32(3))
    assert const.param("value") != 1 / 3


def test_fold_constants_folds_comparisons_and_where():
    def make(x):
        two = ops.const(2.0, F64)
        return ops.where(ops.gt(two, 1.0), x, two * 10.0)
    graph = build(make, ((3,), F64))
    optimized = ir.optimize(graph)
    # where(true, x, 20.0) is not folded away (x is not constant) but its condition is.
    (cond,) = [n for n in optimized.nodes if n.out.dtype == np.bool_]
    assert cond.primitive is P.const and cond.param("value") is True
    assert_same_results(graph, optimized, [np.array([1.0, 2.0, 3.0])])


# ---------------------------------------------------------------- CSE

def test_cse_merges_duplicate_nodes(optimize_verified):
    graph = build(lambda x: ops.exp(x) * 2.0 + ops.exp(x) * 2.0, ((3,), F64))
    assert primitive_names(graph).count("exp") == 2
    merged = passes.eliminate_common_subexpressions(graph)
    ir.verify(merged)
    add = merged.nodes[-1]
    assert add.primitive is P.add and add.inputs[0] is add.inputs[1]
    optimized = optimize_verified(graph)
    assert primitive_names(optimized).count("exp") == 1
    assert_same_results(graph, optimized, [np.array([0.0, 1.0, -1.0])])


def test_cse_keeps_nodes_that_differ_in_params():
    graph = build(lambda x: (ops.reduce_sum(x, 0), ops.reduce_sum(x, 0, keepdims=True),
                             ops.reduce_sum(x, 1)), ((3, 3), F64))
    merged = passes.eliminate_common_subexpressions(graph)
    assert primitive_names(merged) == ["reduce_sum"] * 3


def test_cse_keeps_nodes_that_differ_in_operand_order():
    graph = build(lambda x, y: (x - y, y - x), ((2,), F64), ((2,), F64))
    assert primitive_names(passes.eliminate_common_subexpressions(graph)) == ["sub", "sub"]


def test_cse_keeps_zero_and_negative_zero_apart(optimize_verified):
    """0.0 == -0.0, but x / 0.0 is inf and x / -0.0 is -inf."""
    def make(x):
        return x / ops.const(0.0, F64) + x / ops.const(-0.0, F64), x / -ops.const(0.0, F64)
    graph = build(make, ((1,), F64))
    with np.errstate(divide="ignore", invalid="ignore"):
        assert_same_results(graph, optimize_verified(graph), [np.ones(1)])


# ---------------------------------------------------------------- DCE

def test_dce_drops_unused_nodes_and_constants(optimize_verified):
    x = Value((3,), F64, "x")
    used, unused = np.arange(3.0), np.ones(3)
    with ir.building() as builder:
        dead = ops.sin(x * builder.capture(unused))
        live = ops.exp(x) + builder.capture(used)
    # finish() already prunes, so assemble the graph with the dead code by hand.
    graph = Graph((x,), tuple(builder.nodes), (live,), tuple(builder.constants.values()))
    assert len(graph.constants) == 2 and dead is graph.nodes[1].out
    cleaned = passes.eliminate_dead_code(graph)
    ir.verify(cleaned)
    assert primitive_names(cleaned) == ["exp", "add"]
    assert [array for _, array in cleaned.constants] == [used]
    assert_same_results(graph, optimize_verified(graph), [np.array([0.0, 1.0, 2.0])])


def test_dce_keeps_every_output():
    graph = build(lambda x: (ops.exp(x), ops.sin(x)), ((3,), F64))
    unused = Node(P.cos, graph.inputs, (), (Value((3,), F64),))
    graph = graph.replace(nodes=graph.nodes + (unused,))
    assert primitive_names(passes.eliminate_dead_code(graph)) == ["exp", "sin"]


# ---------------------------------------------------------------- purity and the pipeline

def sample_graphs() -> list[Graph]:
    def mlp(x, w, b):
        return ops.reduce_sum(ops.tanh(ops.matmul(x, w) + b) * 1.0)
    graph = build(mlp, ((4, 3), F32), ((3, 2), F32), ((2,), F32))
    return [
        graph,
        ir.vjp_graph(graph, (0, 1, 2)),
        build(lambda x: ops.logsumexp(-(-x) + 0.0, 1), ((3, 4), F64)),
        build(lambda x: ops.exp(x) * ops.exp(x) * ops.broadcast_to(ops.const(1.0, F64), (3,)),
              ((3,), F64)),
    ]


@pytest.mark.parametrize("run_pass", ir.PIPELINE, ids=lambda p: p.__name__)
@pytest.mark.parametrize("index", range(4))
def test_passes_never_edit_their_input(run_pass, index):
    graph = sample_graphs()[index]
    before = ir.pretty(graph)
    nodes, outputs, constants = graph.nodes, graph.outputs, graph.constants
    result = run_pass(graph)
    assert ir.pretty(graph) == before
    assert graph.nodes is nodes and graph.outputs is outputs and graph.constants is constants
    assert result is not graph
    ir.verify(result)


def test_optimize_runs_the_pipeline_in_order():
    graph = sample_graphs()[1]
    by_hand = graph
    for run_pass in ir.PIPELINE:
        by_hand = run_pass(by_hand)
    assert ir.pretty(ir.optimize(graph)) == ir.pretty(by_hand)


def test_seed_of_the_backward_pass_folds_away(optimize_verified):
    """In d/d(x, y) sum(x**2 + 3*y**2), the seed's array of ones disappears."""
    graph = build(lambda x, y: ops.reduce_sum(x ** 2 + 3 * y ** 2), ((4,), F32), ((4,), F32))
    joint = ir.vjp_graph(graph, (0, 1))
    assert "broadcast_to" in primitive_names(joint)
    optimized = optimize_verified(joint)
    assert "broadcast_to" not in primitive_names(optimized)
    assert "reshape" not in primitive_names(optimized)
    consts = [n.param("value") for n in optimized.nodes if n.primitive is P.const]
    assert 1.0 not in consts
    x, y = np.arange(4, dtype=F32), np.ones(4, F32)
    value, gx, gy = ir.evaluate(optimized, [x, y])
    assert value == 26
    np.testing.assert_array_equal(gx, 2 * x)
    np.testing.assert_array_equal(gy, 6 * y)


def test_optimize_reaches_a_fixed_point_on_a_joint_graph():
    joint = sample_graphs()[1]
    once = ir.optimize(joint)
    assert ir.pretty(ir.optimize(once)) == ir.pretty(once)
    assert len(once.nodes) < len(joint.nodes)


# ---------------------------------------------------------------- exact at the extremes

F32_INFO = np.finfo(F32)
# Every value class of float32: zeros of both signs, infinities, NaN, the largest
# finite numbers, subnormals (1e-40, the smallest one) and ordinary numbers.
EXTREMES = np.array([0.0, -0.0, 1.0, -3.0, np.inf, -np.inf, np.nan, F32_INFO.max, -F32_INFO.max,
                     1e-40, F32_INFO.smallest_subnormal, 0.1], F32)

EXACT_CASES = {
    "x+-0.0": lambda x, r: x + -0.0,
    "x+0.0": lambda x, r: x + 0.0,
    "x-0.0": lambda x, r: x - 0.0,
    "x*1": lambda x, r: x * 1.0,
    "x/1": lambda x, r: x / 1.0,
    "x*-1": lambda x, r: x * -1.0,
    "-(-x)": lambda x, r: -(-x),
    "x+x": lambda x, r: x + x,
    "x/4": lambda x, r: x / 4.0,
    "x/2**-100": lambda x, r: x / 2.0 ** -100,
    "x/2**-130": lambda x, r: x / 2.0 ** -130,  # 2**130 overflows float32
    "x/3": lambda x, r: x / 3.0,
    "x/r": lambda x, r: x / r,
    "sum(x*r, 1)": lambda x, r: ops.reduce_sum(x * r, 1),
    "sum(x/r, 1)": lambda x, r: ops.reduce_sum(x / r, 1),
    "sum(-x, 1)": lambda x, r: ops.reduce_sum(-x, 1),
    "sum(2*x)": lambda x, r: ops.reduce_sum(x * 2.0),
    "mean(x, 1)": lambda x, r: ops.mean(x, 1),
}


@pytest.mark.parametrize("finite", [False, True], ids=["all", "finite"])
@pytest.mark.parametrize("name", EXACT_CASES)
def test_optimized_graphs_are_exact_at_the_extremes(name, finite, optimize_verified):
    """Every rewrite of the pipeline keeps the result bit for bit, on every pair of
    extreme values (x along rows, r a per-row value); the finite ones alone too, or
    a NaN in every row would hide what happens to the sums."""
    values = EXTREMES[np.isfinite(EXTREMES)] if finite else EXTREMES
    size = len(values)
    graph = build(EXACT_CASES[name], ((size, size), F32), ((size, 1), F32))
    x = np.broadcast_to(values, (size, size)).copy()
    r = values[:, None].copy()
    assert_same_results(graph, optimize_verified(graph), [x, r])


def test_overflow_of_a_factored_row_sum_is_gone():
    """sum(x * w, 1) with w per row was rewritten to sum(x, 1) * w, which overflows
    float32 where the true value (4e18 here) does not."""
    graph = build(lambda x, w: ops.reduce_sum(x * w, 1), ((1, 4), F32), ((1, 1), F32))
    x, w = np.full((1, 4), 1e38, F32), np.full((1, 1), 1e-20, F32)
    (value,) = ir.evaluate(ir.optimize(graph), [x, w])
    np.testing.assert_allclose(value, [4e18], rtol=1e-6)


def test_division_by_a_subnormal_stays_finite():
    """a / b became a * (1 / b), and 1 / 1e-40 overflows float32."""
    graph = build(lambda a, b: a / b, ((2, 3), F32), ((2, 1), F32))
    a, b = np.full((2, 3), 1e-39, F32), np.full((2, 1), 1e-40, F32)
    (value,) = ir.evaluate(ir.optimize(graph), [a, b])
    np.testing.assert_allclose(value, a / b)
    assert np.isfinite(value).all()


def test_division_by_a_power_of_two_becomes_an_exact_multiply():
    graph = build(lambda x: x / 256.0, ((3, 5), F32))
    optimized = passes.simplify(graph)
    assert primitive_names(passes.eliminate_dead_code(optimized)) == ["const", "mul"]
    assert optimized.outputs == graph.outputs  # the result keeps its identity


@pytest.mark.parametrize("divisor", [3.0, 2.0 ** -130], ids=["3", "2**-130"])
def test_division_by_a_constant_without_an_exact_reciprocal_stays(divisor):
    graph = build(lambda x: x / divisor, ((3, 5), F32))
    assert primitive_names(passes.simplify(graph)) == primitive_names(graph)
