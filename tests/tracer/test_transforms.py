"""fg.grad, fg.value_and_grad, fg.vjp, fg.jvp, fg.hessian: inside compile_grad (second
derivatives through the symbolic backward) and eagerly on arrays.

Second and third derivatives of every op's VJP rule are checked on the NumPy
interpreter of the traced graph (no kernel compiles) against HIPS autograd; the
compiled paths (gradient penalty, Newton step, eager calls) run few small graphs,
fused against unfused, against autograd and finite differences.
"""
import numpy as np
import pytest

import autograd
import autograd.numpy as anp

import fusegrad as fg
from fusegrad import ir
from fusegrad.ir.graph import Value
from fusegrad.tracer.dispatch import Tracing
from fusegrad.tracer.state import TensorState
from fusegrad.tracer.transforms import tree_flatten, tree_unflatten


def evaluate(fn, *arrays):
    """fn on traced arguments, its graph optimised, verified and run by the NumPy
    interpreter: what a transform computes, with no kernel compiled."""
    inputs = tuple(Value(a.shape, a.dtype, name=f"x{i}") for i, a in enumerate(arrays))
    with Tracing() as builder:
        result = fn(*[TensorState._traced(v) for v in inputs])
    leaves, spec = tree_flatten(result)
    graph = ir.optimize(builder.finish(inputs, tuple(leaf._mode.value for leaf in leaves)))
    ir.verify(graph)
    return tree_unflatten(spec, ir.evaluate(graph, arrays))


RNG = np.random.default_rng(0)
A = RNG.normal(size=(3, 3))
V3, V4, M23 = RNG.normal(size=3), RNG.normal(size=4), RNG.normal(size=(2, 3))

# name: (fusegrad function, autograd function, point). Each op is composed with
# something nonlinear so that its rule is exercised at second and third order.
CASES = {
    "tanh": (lambda x: fg.tanh(x @ A).sum(), lambda x: anp.tanh(anp.dot(x, A)).sum(), V3),
    "exp": (lambda x: (fg.exp(x @ A) * x).sum(), lambda x: (anp.exp(anp.dot(x, A)) * x).sum(), V3),
    "log": (lambda x: (fg.log(x * x + 1) * x).sum(), lambda x: (anp.log(x * x + 1) * x).sum(), V3),
    "sin": (lambda x: (fg.sin(x @ A) ** 2).sum(), lambda x: (anp.sin(anp.dot(x, A)) ** 2).sum(), V3),
    "cos": (lambda x: (fg.cos(x @ A) * x).sum(), lambda x: (anp.cos(anp.dot(x, A)) * x).sum(), V3),
    "sigmoid": (lambda x: (fg.sigmoid(x @ A) * x).sum(),
                lambda x: (1 / (1 + anp.exp(-anp.dot(x, A))) * x).sum(), V3),
    "sqrt": (lambda x: (fg.sqrt(x * x + 1) * x).sum(), lambda x: (anp.sqrt(x * x + 1) * x).sum(), V3),
    "pow_float": (lambda x: ((x * x + 1) ** 2.5).sum(), lambda x: ((x * x + 1) ** 2.5).sum(), V3),
    "pow_int": (lambda x: ((x @ A) ** 3).sum(), lambda x: (anp.dot(x, A) ** 3).sum(), V3),
    "rpow": (lambda x: (2.0 ** (x @ A)).sum(), lambda x: (2.0 ** anp.dot(x, A)).sum(), V3),
    "div": (lambda x: (x / (x * x + 2)).sum() + (1 / (x + 3)).sum(),
            lambda x: (x / (x * x + 2)).sum() + (1 / (x + 3)).sum(), V3),
    "sum": (lambda x: (x.sum(0) ** 2).sum() + (x.sum(1) ** 3).sum(),
            lambda x: (x.sum(0) ** 2).sum() + (x.sum(1) ** 3).sum(), M23),
    "mean": (lambda x: (x.mean(1) ** 3).sum(), lambda x: (x.mean(1) ** 3).sum(), M23),
    "max": (lambda x: (fg.max(fg.sin(x), axis=1) ** 2).sum() + fg.max(x * x),
            lambda x: (anp.max(anp.sin(x), axis=1) ** 2).sum() + anp.max(x * x), M23),
    "min": (lambda x: (fg.min(fg.sin(x), axis=0) ** 3).sum(),
            lambda x: (anp.min(anp.sin(x), axis=0) ** 3).sum(), M23),
    "where_relu": (lambda x: (fg.where(x > 0, x, 0) ** 3).sum(),
                   lambda x: (anp.where(x > 0, x, 0) ** 3).sum(), V4),
    "relu": (lambda x: (fg.relu(x @ A) ** 2).sum(), lambda x: (anp.maximum(anp.dot(x, A), 0) ** 2).sum(), V3),
    "abs": (lambda x: (fg.abs(x) ** 3).sum(), lambda x: (anp.abs(x) ** 3).sum(), V3),
    "maximum": (lambda x: (fg.maximum(x, x[::-1] * 0.5) ** 3).sum(),
                lambda x: (anp.maximum(x, x[::-1] * 0.5) ** 3).sum(), V3),
    "logsumexp": (lambda x: fg.logsumexp(x @ A), lambda x: anp.log(anp.exp(anp.dot(x, A)).sum()), V3),
    "softmax": (lambda x: (fg.softmax(x @ A) * x).sum(),
                lambda x: (anp.exp(anp.dot(x, A)) / anp.exp(anp.dot(x, A)).sum() * x).sum(), V3),
    "matmul": (lambda x: fg.tanh(x.reshape(3, 1) @ x.reshape(1, 3) @ A).sum(),
               lambda x: anp.tanh(anp.dot(anp.outer(x, x), A)).sum(), V3),
    "transpose": (lambda x: fg.tanh(x.reshape(2, 2).T @ x.reshape(2, 2)).sum(),
                  lambda x: anp.tanh(anp.dot(x.reshape(2, 2).T, x.reshape(2, 2))).sum(), V4),
    "slices": (lambda x: (x[1:] * x[:-1]).sum() ** 2, lambda x: (x[1:] * x[:-1]).sum() ** 2, V4),
    "broadcast": (lambda x: fg.exp(x.reshape(3, 1) + x.reshape(1, 3)).sum(),
                  lambda x: anp.exp(x.reshape(3, 1) + x.reshape(1, 3)).sum(), V3),
    "var": (lambda x: fg.var(x) ** 2, lambda x: anp.var(x) ** 2, V4),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_hessian_of_each_rule_matches_autograd(name, dtype):
    f, af, x = CASES[name]
    H = evaluate(lambda x: fg.hessian(f)(x), x.astype(dtype))
    assert H.shape == x.shape + x.shape and H.dtype == dtype
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(H, autograd.hessian(af)(x), **tol)


@pytest.mark.parametrize("name", list(CASES))
def test_third_derivative_of_each_rule_matches_autograd(name):
    # The gradient of a weighted sum of the Hessian: the backward of the backward of
    # the backward, each emitted by the rules as IR.
    f, af, x = CASES[name]
    C = np.random.default_rng(1).normal(size=x.shape + x.shape)
    got = evaluate(lambda x: fg.grad(lambda z: (fg.hessian(f)(z) * C).sum())(x), x)
    want = autograd.grad(lambda z: (autograd.hessian(af)(z) * C).sum())(x)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("f, af", [
    (lambda a, b: (a ** b).sum(), lambda a, b: (a ** b).sum()),
    (lambda a, b: (a / (b * b + 1)).sum(), lambda a, b: (a / (b * b + 1)).sum()),
    (lambda a, b: fg.tanh(a.reshape(3, 1) @ b.reshape(1, 3)).sum(),
     lambda a, b: anp.tanh(anp.outer(a, b)).sum()),
], ids=["pow", "div", "matmul"])
@pytest.mark.filterwarnings("ignore:Output seems independent")   # autograd, on d2(a/c)/da2 = 0
def test_hessian_blocks_of_two_arguments(f, af):
    x, y = RNG.uniform(0.5, 1.5, size=3), RNG.normal(size=3)
    H = evaluate(lambda a, b: fg.hessian(f, argnums=(0, 1))(a, b), x, y)
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(H[i][j], autograd.jacobian(autograd.grad(af, i), j)(x, y),
                                       rtol=1e-10, atol=1e-12)


def test_jvp_and_vjp_match_autograd():
    f = lambda x: fg.sin(x @ A) * x                     # noqa: E731
    af = lambda x: anp.sin(anp.dot(x, A)) * x           # noqa: E731
    t, u = RNG.normal(size=3), RNG.normal(size=3)

    def both(x):
        out, tangent = fg.jvp(f, (x,), (t,))
        out2, vjp_fn = fg.vjp(f, x)
        return out, tangent, vjp_fn(u)

    out, tangent, (cotangent,) = evaluate(both, V3)
    np.testing.assert_allclose(out, af(V3), rtol=1e-12)
    np.testing.assert_allclose(tangent, autograd.make_jvp(af)(V3)(t)[1], rtol=1e-10)
    np.testing.assert_allclose(cotangent, autograd.make_vjp(af)(V3)[0](u), rtol=1e-10)


def test_vjp_and_jvp_of_several_outputs_and_pytrees():
    def f(p):
        return {"a": fg.tanh(p["w"] * p["b"]), "s": (p["w"] ** 2).sum()}
    p = {"w": V3, "b": RNG.normal(size=3)}
    ct = {"a": RNG.normal(size=3), "s": np.array(2.0)}

    def both(w, b):
        out, vjp_fn = fg.vjp(f, {"w": w, "b": b})
        _, tangent = fg.jvp(f, ({"w": w, "b": b},), ({"w": np.ones(3), "b": np.zeros(3)},))
        return vjp_fn(ct)[0], tangent
    (g, tangent) = evaluate(both, p["w"], p["b"])
    w, b = p["w"], p["b"]
    sech2 = 1 - np.tanh(w * b) ** 2
    np.testing.assert_allclose(g["w"], ct["a"] * sech2 * b + 2 * 2 * w, rtol=1e-12)
    np.testing.assert_allclose(g["b"], ct["a"] * sech2 * w, rtol=1e-12)
    np.testing.assert_allclose(tangent["a"], sech2 * b, rtol=1e-12)
    np.testing.assert_allclose(tangent["s"], 2 * w.sum(), rtol=1e-12)


def test_grad_of_a_pytree_argument_and_tuple_argnums():
    def f(params, x, scale):
        return scale * (fg.tanh(x @ params["w"]) ** 2).sum() + (params["b"] ** 2).sum()
    w, b, x = RNG.normal(size=(3, 2)), RNG.normal(size=2), RNG.normal(size=(4, 3))

    def run(w, b, x):
        g = fg.grad(f)({"w": w, "b": b}, x, 0.5)
        gp, gx = fg.grad(f, argnums=(0, -2))({"w": w, "b": b}, x, 0.5)
        return g, gp, gx
    g, gp, gx = evaluate(run, w, b, x)
    af = lambda w, x: 0.5 * (anp.tanh(anp.dot(x, w)) ** 2).sum()   # noqa: E731
    np.testing.assert_allclose(g["w"], autograd.grad(af, 0)(w, x), rtol=1e-10)
    np.testing.assert_allclose(g["b"], 2 * b, rtol=1e-12)
    np.testing.assert_allclose(gp["w"], g["w"], rtol=1e-12)
    np.testing.assert_allclose(gx, autograd.grad(af, 1)(w, x), rtol=1e-10)


def test_closed_over_values_are_constants_of_the_inner_derivative():
    # d/dz (z * x) at z = x is x, not 2x: the closure's x is not the argument z,
    # even though both are the same traced value (JAX agrees).
    got = evaluate(lambda x: fg.grad(lambda z: (z * x).sum())(x), V3)
    np.testing.assert_allclose(got, V3)
    # ... while the outer derivative sees both uses: d/dx sum(x * c) for c = x.
    outer = evaluate(lambda x: fg.grad(lambda y: (fg.grad(lambda z: (z * y).sum())(y) * y).sum())(x), V3)
    np.testing.assert_allclose(outer, 2 * V3)


def test_has_aux_and_value_and_grad_inside_a_trace():
    def f(x):
        y = fg.tanh(x)
        return (y ** 2).sum(), {"y": y, "n": 3}

    def run(x):
        g, aux = fg.grad(f, has_aux=True)(x)
        (v, aux2), g2 = fg.value_and_grad(f, has_aux=True)(x)
        assert aux["n"] == 3 and aux2["n"] == 3
        return g, aux["y"], v, g2
    g, y, v, g2 = evaluate(run, V3)
    np.testing.assert_allclose(y, np.tanh(V3))
    np.testing.assert_allclose(v, (np.tanh(V3) ** 2).sum())
    np.testing.assert_allclose(g, 2 * np.tanh(V3) * (1 - np.tanh(V3) ** 2), rtol=1e-12)
    np.testing.assert_allclose(g2, g)


# ---------------------------------------------------------------- errors

def test_errors_are_clear():
    with pytest.raises(fg.ShapeError, match="must return a scalar"):
        fg.grad(lambda x: x * 2)(V3)
    with pytest.raises(fg.DTypeError, match="only floating-point arrays have gradients"):
        fg.grad(lambda x: (x * 2.0).sum())(np.arange(3))
    with pytest.raises(fg.TraceError, match=r"pair \(output, aux\)"):
        fg.grad(lambda x: (x.sum(), 1, 2), has_aux=True)(V3)
    with pytest.raises(TypeError, match="argnums=3 is out of range"):
        fg.grad(lambda x: x.sum(), argnums=3)(V3)
    with pytest.raises(fg.UnsupportedError, match=r"fg.jvp\(fg.grad\(f\), \(x,\), \(v,\)\)"):
        fg.hessian(lambda x: (x ** 2).sum())(np.zeros(2000))
    with pytest.raises(TypeError, match="primals and tangents must be tuples"):
        fg.jvp(lambda x: x, V3, V3)


# ---------------------------------------------------------------- compiled

def _f(x, w):
    return (fg.tanh(x @ w) ** 2).sum()


def _af(x, w):
    return (anp.tanh(anp.dot(x, w)) ** 2).sum()


def _penalty(x, w):
    # WGAN-GP style: the loss plus the squared norm of its gradient with respect to x.
    g = fg.grad(_f)(x, w)
    return _f(x, w) + 0.5 * ((g * g).sum() - 1.0) ** 2


def _apenalty(x, w):
    g = autograd.grad(_af)(x, w)
    return _af(x, w) + 0.5 * ((g * g).sum() - 1.0) ** 2


PENALTY = fg.compile_grad(_penalty)
PENALTY_UNFUSED = fg.compile_grad(_penalty, fuse=False)


def _central_differences(f, args, i, eps=1e-6):
    args = [a.copy() for a in args]
    grad = np.zeros_like(args[i])
    for k in range(args[i].size):
        old = args[i].flat[k]
        args[i].flat[k] = old + eps
        up = f(*args)
        args[i].flat[k] = old - eps
        down = f(*args)
        args[i].flat[k] = old
        grad.flat[k] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradient_penalty_compiles_and_matches_autograd_and_differences(dtype):
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)) * 0.5
    value, (gx, gw) = PENALTY(x.astype(dtype), w.astype(dtype))
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(value, _apenalty(x, w), **tol)
    np.testing.assert_allclose(gx, autograd.grad(_apenalty, 0)(x, w), **tol)
    np.testing.assert_allclose(gw, autograd.grad(_apenalty, 1)(x, w), **tol)
    assert gx.dtype == dtype
    if dtype == np.float64:
        # finite differences of the compiled value itself (the same kernels)
        np.testing.assert_allclose(gw, _central_differences(lambda *a: PENALTY(*a)[0], [x, w], 1),
                                   rtol=1e-6, atol=1e-7)
        unfused = PENALTY_UNFUSED(x, w)
        np.testing.assert_allclose(unfused[0], value, rtol=1e-12)
        for a, b in zip(unfused[1], (gx, gw)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def _scalar_f(x):
    return fg.exp(x) - 2 * x + x ** 4 * 0.1


@fg.compile_grad
def _newton_loss(x):
    # One Newton step on a scalar, then f at the new point: differentiated through
    # the Hessian (third derivatives of f).
    step = x - fg.grad(_scalar_f)(x) / fg.hessian(_scalar_f)(x)
    return _scalar_f(step)


def test_newton_step_compiles_and_matches_autograd():
    af = lambda x: anp.exp(x) - 2 * x + x ** 4 * 0.1    # noqa: E731
    aloss = lambda x: af(x - autograd.grad(af)(x) / autograd.hessian(af)(x))   # noqa: E731
    x = np.array(0.3)
    value, (g,) = _newton_loss(x)
    np.testing.assert_allclose(value, aloss(x), rtol=1e-12)
    np.testing.assert_allclose(g, autograd.grad(aloss)(x), rtol=1e-10)


def test_eager_transforms_on_arrays_and_a_newton_iteration():
    # Outside a trace the transforms take arrays (and eager tensors) and return arrays.
    f = lambda x: (fg.exp(x * 0.5) + x * x).sum() - x[0] * x[1]   # noqa: E731 (convex)
    af = lambda x: (anp.exp(x * 0.5) + x * x).sum() - x[0] * x[1]  # noqa: E731
    grad, hess = fg.grad(f), fg.hessian(f)
    x = np.array([1.0, -2.0, 0.5])
    for _ in range(6):
        x = x - np.linalg.solve(hess(x), grad(x))
    np.testing.assert_allclose(grad(x), 0, atol=1e-12)
    np.testing.assert_allclose(hess(x), autograd.hessian(af)(x), rtol=1e-12)
    assert isinstance(grad(fg.tensor(x)), np.ndarray)
    value, g = fg.value_and_grad(f)(x)
    np.testing.assert_allclose(value, af(x), rtol=1e-12)
    assert fg.grad(lambda s: s * s * 3.0)(2.0) == 12.0
    # Hessian-vector product: forward over reverse
    v = np.array([1.0, 0.0, -1.0])
    _, hvp = fg.jvp(fg.grad(f), (x,), (v,))
    np.testing.assert_allclose(hvp, autograd.hessian(af)(x) @ v, rtol=1e-12)
    out, vjp_fn = fg.vjp(lambda x: fg.sin(x) * 2, x)
    np.testing.assert_allclose(out, 2 * np.sin(x))
    np.testing.assert_allclose(vjp_fn(v)[0], 2 * np.cos(x) * v, rtol=1e-12)


def test_the_gradient_penalty_example_runs(capsys):
    import runpy
    from pathlib import Path
    example = Path(__file__).resolve().parents[2] / "examples" / "gradient_penalty.py"
    errors = runpy.run_path(str(example))["main"]()
    assert errors["penalty"] < 1e-6 and errors["hvp"] < 1e-5 and errors["hessian"] < 1e-9
    assert "Hessian-vector product" in capsys.readouterr().out


def test_inside_compile_grad_on_a_constant_point_with_a_traced_closure():
    # The transform's argument is an array constant, its function closes over the
    # traced w: the gradient depends on w and is differentiated by compile_grad.
    x0 = np.array([0.5, -1.0, 2.0])
    f = fg.compile_grad(lambda w: (fg.grad(lambda x: fg.tanh(x * w).sum())(x0) ** 2).sum())
    traced = f.trace(V3)
    (g,) = ir.evaluate(traced.joint, [V3])[1:]
    af = lambda w: (autograd.grad(lambda x: anp.tanh(x * w).sum())(x0) ** 2).sum()   # noqa: E731
    np.testing.assert_allclose(g, autograd.grad(af)(V3), rtol=1e-10)


def test_eager_float32_stays_float32_and_python_floats_are_constants_unless_differentiated():
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    g = fg.grad(lambda x, s: (fg.sin(x) * s).sum())(x, 0.5)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 0.5 * np.cos(x), rtol=1e-6)
    assert fg.grad(lambda x, s: (x * s).sum(), argnums=1)(x, 0.5).dtype == np.float64


def test_eager_has_aux_spellings():
    x = np.array([0.1, 0.2])
    f = lambda x: ((x ** 2).sum(), {"y": fg.sin(x), "k": "label"})   # noqa: E731
    g, aux = fg.grad(f, has_aux=True)(x)
    np.testing.assert_allclose(g, 2 * x)
    np.testing.assert_allclose(aux["y"], np.sin(x))
    assert aux["k"] == "label"
    (value, aux), g = fg.value_and_grad(f, has_aux=True)(x)
    np.testing.assert_allclose(value, (x ** 2).sum())
    out, vjp_fn, aux = fg.vjp(lambda x: (x * 3, x.sum()), x, has_aux=True)
    np.testing.assert_allclose(aux, x.sum())
    np.testing.assert_allclose(vjp_fn(np.ones(2))[0], [3.0, 3.0])
    out, tangent, aux = fg.jvp(lambda x: (x * 3, x.sum()), (x,), (np.ones(2),), has_aux=True)
    np.testing.assert_allclose(tangent, [3.0, 3.0])
    H, aux = fg.hessian(f, has_aux=True)(x)
    np.testing.assert_allclose(H, 2 * np.eye(2))
