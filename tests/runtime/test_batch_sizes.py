"""A new batch size (same trailing dimensions, same dtypes) runs the kernels compiled
for the last one: the numbers derived from shapes (a mean's 1/N) are kernel inputs,
not literals of the source (ir/ops.py `size_const`)."""
from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg
from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.runtime import loader, stats

FEATURES, HIDDEN, CLASSES = 16, 8, 5


def mlp(X, W1, b1, W2, Y):
    return ((fg.tanh(X @ W1 + b1) @ W2 - Y) ** 2).mean()


def softmax_xent(L, T):
    return (fg.logsumexp(L, 1) - (L * T).sum(axis=1)).mean()


def layernorm(x, g, b):
    centred = x - x.mean(axis=1, keepdims=True)
    y = centred / fg.sqrt(fg.var(x, axis=1, keepdims=True) + 1e-5) * g + b
    # The batch's variance too: its count is the batch size.
    return (y * y).mean() + fg.var(y, dim=0).sum()


def mlp_oracle(X, W1, b1, W2, Y):
    return anp.mean((anp.tanh(X @ W1 + b1) @ W2 - Y) ** 2)


def softmax_xent_oracle(L, T):
    top = anp.max(L, 1, keepdims=True)
    logsumexp = anp.log(anp.sum(anp.exp(L - top), 1)) + top[:, 0]
    return anp.mean(logsumexp - anp.sum(L * T, 1))


def layernorm_oracle(x, g, b):
    centred = x - anp.mean(x, 1, keepdims=True)
    y = centred / anp.sqrt(anp.var(x, 1, keepdims=True) + 1e-5) * g + b
    return anp.mean(y * y) + anp.sum(anp.var(y, 0, ddof=1))   # dim=0: unbiased


LOSSES = {"mlp": mlp, "softmax_xent": softmax_xent, "layernorm": layernorm}
ORACLES = {"mlp": mlp_oracle, "softmax_xent": softmax_xent_oracle, "layernorm": layernorm_oracle}
COMPILED = {name: fg.compile_grad(fn) for name, fn in LOSSES.items()}


def _inputs(name: str, batch: int, dtype) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(batch)
    normal = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    if name == "mlp":
        return (normal(batch, FEATURES), normal(FEATURES, HIDDEN), normal(HIDDEN),
                normal(HIDDEN, CLASSES), normal(batch, CLASSES))
    if name == "softmax_xent":
        targets = np.eye(CLASSES, dtype=dtype)[rng.integers(0, CLASSES, batch)]
        return normal(batch, CLASSES), targets
    return normal(batch, FEATURES), normal(FEATURES), normal(FEATURES)


@pytest.mark.parametrize("name", list(LOSSES))
def test_a_new_batch_size_compiles_no_kernel(name):
    # float32 here; the float64 size arguments are the next test's.
    compiled, dtype = COMPILED[name], np.float32
    compiled(*_inputs(name, 64, dtype))          # warm: compiles (or loads) its kernels
    for batch in (100, 37):                      # 64 = 2**6: its 1/N is exact, 100's not
        args = _inputs(name, batch, dtype)
        files = len(loader._modules)
        stats.reset()
        value, grads = compiled(*args)
        counts = stats.snapshot()
        assert counts["kernels_launched"] > 0
        assert (counts["compiles"], counts["cache_loads"]) == (0, 0), f"batch {batch}"
        assert len(loader._modules) == files     # not one new kernel file either
        # This size's numbers (its 1/N, not the last size's), by HIPS autograd in float64.
        wide = [a.astype(np.float64) for a in args]
        np.testing.assert_allclose(value, ORACLES[name](*wide), rtol=1e-4)
        for i, got in enumerate(grads):
            want = autograd.grad(ORACLES[name], i)(*wide)
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * np.abs(want).max())


def test_mean_gradient_matches_numpy_at_a_new_batch_size():
    """float64: 1/N at the new size, not the old one's, reaches the kernel, exactly."""
    compiled = COMPILED["mlp"]
    for batch in (64, 100):
        X, W1, b1, W2, Y = _inputs("mlp", batch, np.float64)
        h = np.tanh(X @ W1 + b1)
        residual = h @ W2 - Y
        stats.reset()
        value, (_, _, _, gW2, gY) = compiled(X, W1, b1, W2, Y)
        if batch != 64:
            assert stats.snapshot()["compiles"] == 0
        np.testing.assert_allclose(value, (residual ** 2).mean(), rtol=1e-12)
        np.testing.assert_allclose(gW2, h.T @ (2 * residual / residual.size), rtol=1e-12)
        np.testing.assert_allclose(gY, -2 * residual / residual.size, rtol=1e-12)


def _optimized_grad(batch: int):
    def body(x):
        return ops.mean(ops.mul(x, x))
    x = ir.Value((batch, 3), np.dtype(np.float32), "x")
    with ir.building() as builder:
        out = body(x)
    graph = builder.finish((x,), (out,))
    return ir.optimize(ir.vjp_graph(graph, [0]))


def test_the_optimizer_keeps_size_constants_marked_and_the_structure_fixed():
    """The backward folds 1/N times its seed into a constant, still marked; a division
    by a power of two is not turned into a multiply (that would make 64 and 100 two
    different programs); the same value, bit for bit, reaches the kernel."""
    graphs = {batch: _optimized_grad(batch) for batch in (64, 100)}
    shapes = [[n.primitive.name for n in g.nodes] for g in graphs.values()]
    assert shapes[0] == shapes[1]
    for batch, graph in graphs.items():
        sized = [n for n in graph.nodes if ops.is_size_const(n)]
        values = sorted(n.param("value") for n in sized)
        count = float(np.float32(batch * 3))
        assert values == sorted([float(np.float32(1) / np.float32(count)), count])
        assert "div" in [n.primitive.name for n in graph.nodes]
        assert not [n for n in graph.nodes
                    if n.primitive is ir.primitives.const and n.param("value") == count
                    and not ops.is_size_const(n)]


def test_the_dump_names_size_arguments_and_the_source_holds_no_size():
    dump = COMPILED["mlp"].dump(*_inputs("mlp", 64, np.float32))
    plan, source = dump.split("# generated source")
    count = 64 * CLASSES
    assert "size-derived arguments: " in plan and repr(float(count)) in plan
    assert repr(float(count)) not in source
    assert repr(float(np.float32(1) / np.float32(count))) not in source
