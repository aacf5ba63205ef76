"""The reductions and matrix helpers of issue 11 (item 7): std, cumsum, cumprod, prod,
norm (and fg.linalg.norm), diag, diagonal, trace, tril, triu, outer, any and all.

One compiled function per dtype holds them all (value and gradients against HIPS
autograd, the NumPy interpreter and the unfused plan); the gradients of prod and cumprod
where elements are zero against hand-written products and finite differences, second
derivatives included; the norm's gradient at the zero vector; NumPy's and PyTorch's
defaults (ddof, unbiased); NumPy dispatch; the eager spellings; and the errors.
"""
from __future__ import annotations

import types

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
INF = float("inf")


# ---------------------------------------------------------------- oracles

def _cumprod_by_prefixes(x, axis):
    """HIPS autograd has no VJP for cumprod; the products of the prefixes have one."""
    x = anp.moveaxis(x, axis, 0)
    lines = [anp.prod(x[:i + 1], axis=0) for i in range(x.shape[0])]
    return anp.moveaxis(anp.stack(lines), 0, axis)


def _norm_by_formula(x, ord=None, axis=None):
    """np.linalg.norm's meaning written out (autograd's norm lacks ord=1 for matrices
    and computes ord=inf through a power)."""
    if axis is None and ord is None:
        return anp.sqrt(anp.sum(x * x))
    if axis is None:
        axis = 0 if x.ndim == 1 else (0, 1)
    if isinstance(axis, int):
        vector = {None: lambda: anp.sqrt(anp.sum(x * x, axis=axis)),
                  1: lambda: anp.sum(anp.abs(x), axis=axis),
                  INF: lambda: anp.max(anp.abs(x), axis=axis),
                  -INF: lambda: anp.min(anp.abs(x), axis=axis)}
        return vector[ord]()
    rows, cols = axis
    matrix = {1: lambda: anp.max(anp.sum(anp.abs(x), axis=rows)),
              INF: lambda: anp.max(anp.sum(anp.abs(x), axis=cols)),
              -INF: lambda: anp.min(anp.sum(anp.abs(x), axis=cols)),
              "fro": lambda: anp.sqrt(anp.sum(x * x))}
    return matrix[ord]()


def _diagonal_by_indexing(x, offset):
    """HIPS autograd's diagonal takes no offset, and its VJP of diag(matrix, k) has the
    wrong shape for a non-square matrix."""
    return anp.stack([x[i, i + offset] for i in range(x.shape[0])
                      if 0 <= i + offset < x.shape[1]])


AUTOGRAD = types.SimpleNamespace(
    std=anp.std, cumsum=anp.cumsum, prod=anp.prod, trace=anp.trace,
    tril=anp.tril, triu=anp.triu, outer=anp.outer,
    cumprod=lambda x, axis: _cumprod_by_prefixes(x, axis),
    norm=_norm_by_formula, diagonal=_diagonal_by_indexing,
    diag=lambda x, k=0: anp.diag(x, k) if x.ndim == 1 else _diagonal_by_indexing(x, k))


# ---------------------------------------------------------------- every op, compiled

WEIGHTS = np.random.default_rng(7).standard_normal(64)


def all_reductions_source(m, weights):
    """Every op of item 7 in one function; each result weighted so that every gradient
    entry counts."""
    def all_reductions(x, v):                   # x: (3, 4), v: (4,)
        terms = [
            m.std(x),                               # NumPy's default: ddof=0, everything
            m.std(x, axis=1, ddof=1),
            m.cumsum(x, axis=1) * x,
            m.cumsum(x),                            # axis=None: the flattened array
            m.cumprod(x, axis=0),
            m.prod(x, axis=1, keepdims=True) * x,
            m.prod(v),
            m.norm(v),
            m.norm(x),                              # Frobenius
            m.norm(x, ord=1, axis=1),
            m.norm(x, ord=INF, axis=0),
            m.norm(x, ord=1),                       # a matrix: the largest column sum
            m.norm(x, ord=-INF),                    # the smallest row sum
            m.norm(x, ord="fro"),
            m.diag(v, 1),                           # (5, 5)
            m.diag(x, -1),
            m.diagonal(x, 1),
            m.trace(x, 1) * m.trace(x),
            m.tril(x, -1) * x,
            m.triu(x, 1),
            m.outer(v, x[0]),
        ]
        total = 0.0
        for i, t in enumerate(terms):
            flat = t.reshape(-1)
            total = total + (flat * np.resize(weights, flat.shape[0])).sum() * (i + 1)
        return total
    return all_reductions


def new_primitives_source(m, weights):
    """The new primitives (cumsum, cumprod) and the compositions most likely to meet
    fusion (std, prod, norm, the masked select of tril, diag of a vector, outer): small,
    so that it also compiles unfused (one kernel per primitive) in little time."""
    w = weights[:12].reshape(3, 4)
    def new_primitives(x, v):                   # x: (3, 4), v: (4,)
        return ((m.cumsum(x, axis=1) * w).sum() + (m.cumprod(x, axis=0) * w).sum()
                + (m.prod(x, axis=1) * v[:3]).sum() + m.std(x, axis=0, ddof=1).sum()
                + m.norm(x) * m.norm(v) + (m.tril(x, 1) * w).sum() + (m.diag(v) * x[0]).sum()
                + (m.outer(v, v) * x[:, 0].sum()).sum())
    return new_primitives


def unfused_source(m, weights):
    """The two new primitives, and a composition (the norm's guarded sqrt) in few
    primitives: unfused, each is a kernel, and compiling them dominates this file's time."""
    w = weights[:12].reshape(3, 4)
    def tiny(x, v):
        return (m.cumprod(m.cumsum(x, axis=1), axis=0) * w).sum() * m.norm(v)
    return tiny


# Compiling dominates: every op in float64 (fused); fewer in float32; fewest unfused
# against fused.
COMPILED = fg.compile_grad(all_reductions_source(fg, WEIGHTS))
SMALL_F32 = fg.compile_grad(new_primitives_source(fg, WEIGHTS.astype(F32)))
TINY = {fuse: fg.compile_grad(unfused_source(fg, WEIGHTS), fuse=fuse) for fuse in (True, False)}


def inputs(dtype):
    """No zeros and no ties (which HIPS autograd's prod and max do not handle as PyTorch)."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 1.5, (3, 4)) * rng.choice([-1.0, 1.0], (3, 4))
    return x.astype(dtype), rng.uniform(0.5, 2.0, 4).astype(dtype)


def check_against_oracles(compiled, source, dtype, interpret, assert_all_close, flatten):
    args = inputs(dtype)
    results = flatten(compiled(*args))
    assert [r.dtype for r in results] == [dtype] * 3
    assert_all_close(results, interpret(compiled, *args), dtype, what="vs interpreter")
    reference = source(AUTOGRAD, WEIGHTS)
    args64 = [a.astype(F64) for a in args]
    expected = [np.asarray(reference(*args64))]
    expected += [autograd.grad(reference, i)(*args64) for i in range(2)]
    assert_all_close(results, expected, dtype, what="vs autograd")


def test_every_op_fused_matches_autograd_and_the_interpreter(interpret, assert_all_close,
                                                               flatten):
    check_against_oracles(COMPILED, all_reductions_source, F64, interpret, assert_all_close,
                          flatten)


def test_float32_fused_matches_autograd_and_the_interpreter(interpret, assert_all_close,
                                                            flatten):
    check_against_oracles(SMALL_F32, new_primitives_source, F32, interpret, assert_all_close,
                          flatten)


def test_unfused_matches_fused_and_autograd(interpret, assert_all_close, flatten):
    check_against_oracles(TINY[False], unfused_source, F64, interpret, assert_all_close,
                          flatten)
    args = inputs(F64)
    assert_all_close(flatten(TINY[False](*args)), flatten(TINY[True](*args)), F64,
                     what="unfused vs fused")


# ---------------------------------------------------------------- zeros in prod and cumprod

LINE_WEIGHTS = np.array([[0.5, -1.0, 2.0, 1.5], [1.0, 0.25, -0.5, 3.0],
                         [2.0, 1.0, -1.5, 0.5], [1.0, 1.0, 1.0, 1.0]])


@fg.compile_grad
def products(x):
    """prod and cumprod along the rows of x (4, 4), weighted."""
    return ((fg.prod(x, axis=1) * LINE_WEIGHTS[:, 0]).sum()
            + (fg.cumprod(x, axis=1) * LINE_WEIGHTS).sum())


# One zero, two zeros (one of them first), a zero at the end, none.
WITH_ZEROS = np.array([[2.0, 0.0, 3.0, -0.5],
                       [0.0, 1.5, 0.0, 2.0],
                       [1.5, -2.0, 0.5, 0.0],
                       [1.5, -2.0, 0.5, 3.0]])


def products_gradient_by_hand(x):
    """d prod / d x_j = the product of the others; d cumprod_l / d x_j = the product of
    x_k, k <= l, k != j, for l >= j."""
    grad = np.zeros_like(x)
    for r, row in enumerate(x):
        for j in range(row.size):
            grad[r, j] = LINE_WEIGHTS[r, 0] * np.prod(np.delete(row, j))
            grad[r, j] += sum(LINE_WEIGHTS[r, l] * np.prod(np.delete(row[:l + 1], j))
                              for l in range(j, row.size))
    return grad


def test_prod_and_cumprod_gradients_are_exact_at_zeros(assert_close):
    value, (grad,) = products(WITH_ZEROS)
    assert_close(value, (np.prod(WITH_ZEROS, 1) * LINE_WEIGHTS[:, 0]).sum()
                 + (np.cumprod(WITH_ZEROS, 1) * LINE_WEIGHTS).sum(), F64)
    assert np.isfinite(grad).all()
    assert_close(grad, products_gradient_by_hand(WITH_ZEROS), F64)
    assert fg.gradcheck(products, WITH_ZEROS)


def _hessian(function, row):
    """The Hessian of the scalar function at `row`, a row at a time: the gradient is
    IR, so differentiating it again (eager create_graph) gives the second derivatives."""
    x = fg.tensor(row, requires_grad=True)
    (grad,) = fg.autograd.grad(function(x), [x], create_graph=True)
    return np.array([fg.autograd.grad(grad[i], [x], retain_graph=True)[0].numpy()
                     for i in range(row.size)])


@pytest.mark.parametrize("row", [[0.0, 1.5, 0.0, 2.0], [1.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 2.0],
                                 [2.0, 0.0, 3.0, -0.5], [1.5, -2.0, 0.5, 3.0]],
                         ids=["zeros-0-2", "zeros-1-3", "three-zeros", "one-zero", "no-zero"])
def test_prod_and_cumprod_hessians_at_zeros(row):
    """d2 cumprod_l / dx_i dx_j = the product of x_k, k <= l, k != i, j (for l >= i, j):
    nonzero between the first two zeros of a line, so the gradient at the second zero,
    0 in value, must keep the first zero as a factor."""
    row = np.array(row)
    w = LINE_WEIGHTS[1]
    expected = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if i != j:
                expected[i, j] = sum(w[l] * np.prod(np.delete(row[:l + 1], [i, j]))
                                     for l in range(max(i, j), 4))
                expected[i, j] += w[0] * np.prod(np.delete(row, [i, j]))
    hessian = _hessian(lambda x: (fg.cumprod(x, 0) * fg.tensor(w)).sum() + w[0] * x.prod(), row)
    np.testing.assert_allclose(hessian, expected, rtol=1e-12, atol=1e-15)


def test_cumsum_second_derivative_through_its_reversed_cumsum():
    x = fg.tensor([1.0, -2.0, 0.5], dtype=fg.float64, requires_grad=True)
    (grad,) = fg.autograd.grad((fg.cumsum(x * x, 0) ** 2).sum(), [x], create_graph=True)
    (hvp,) = fg.autograd.grad(grad.sum(), [x])
    expected = autograd.hessian(lambda z: (anp.cumsum(z * z) ** 2).sum())(x.detach().numpy())
    np.testing.assert_allclose(hvp.numpy(), expected.sum(0), rtol=1e-12)


def test_prod_edge_cases():
    assert fg.prod(fg.tensor(np.ones((2, 0)))).item() == 1.0           # the empty product
    np.testing.assert_array_equal(fg.prod(fg.tensor(np.ones((2, 0))), axis=1).numpy(), [1, 1])
    ints = fg.prod(fg.tensor(np.array([[3, 4], [5, 6]], dtype=np.int32)), 0)
    assert ints.dtype == fg.int64 and ints.tolist() == [15, 24]        # as NumPy and PyTorch
    bools = fg.tensor([True, False, True])
    assert fg.cumsum(bools, 0).tolist() == [1, 1, 2] and fg.cumsum(bools, 0).dtype == fg.int64
    x = np.arange(24.0).reshape(2, 3, 4) / 10 + 0.5
    np.testing.assert_allclose(fg.prod(fg.tensor(x), axis=(0, 2)).numpy(), np.prod(x, (0, 2)))
    np.testing.assert_allclose(fg.prod(fg.tensor(x), -1, keepdims=True).numpy(),
                               np.prod(x, -1, keepdims=True))
    np.testing.assert_allclose(fg.cumprod(fg.tensor(x), dim=-2).numpy(), np.cumprod(x, -2))


# ---------------------------------------------------------------- norms

def test_norm_gradient_at_zero_is_zero_as_in_pytorch():
    x = fg.zeros(3, requires_grad=True)
    fg.norm(x).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 0])
    m = fg.zeros(2, 2, requires_grad=True)
    m.norm(dim=1).sum().backward()                       # each row a zero vector
    np.testing.assert_array_equal(m.grad.numpy(), np.zeros((2, 2)))
    fro = fg.compile_grad(lambda a: fg.linalg.norm(a) + fg.norm(a, ord=INF, axis=1).sum())
    value, (grad,) = fro(np.zeros((2, 3)))
    assert value == 0 and np.array_equal(grad, np.zeros((2, 3)))


@pytest.mark.parametrize("ord_, axis", [(None, None), (2, None), (1, None), (INF, None),
                                        (-INF, None), (0, None), (None, 1), (1, 0),
                                        (INF, 1), ("fro", None), (-1, None), (None, (1, 0))])
def test_norm_values_match_numpy(ord_, axis):
    x = np.array([[3.0, -4.0, 0.0], [1.0, 2.0, -2.0]])
    if ord_ == 2 or ord_ == 0:
        x = x[0]                                          # vector ords: a vector
    expected = np.linalg.norm(x, ord_, axis)
    np.testing.assert_allclose(fg.norm(fg.tensor(x), ord=ord_, axis=axis).numpy(), expected)
    np.testing.assert_allclose(fg.linalg.norm(fg.tensor(x), ord_, axis, keepdims=True).numpy(),
                               np.linalg.norm(x, ord_, axis, keepdims=True))


def test_torch_norm_spellings():
    x = np.array([[3.0, -4.0], [1.0, 2.0]])
    t = fg.tensor(x)
    np.testing.assert_allclose(t.norm().item(), np.sqrt((x ** 2).sum()))
    np.testing.assert_allclose(t.norm(1).item(), np.abs(x).sum())     # a vector norm of all
    np.testing.assert_allclose(t.norm(2, 1).numpy(), np.linalg.norm(x, axis=1))
    np.testing.assert_allclose(t.norm(p=INF, dim=0, keepdim=True).numpy(), [[3.0, 4.0]])
    np.testing.assert_allclose(fg.norm(t, p=1, dim=(0, 1)).item(), 10.0)
    np.testing.assert_allclose(fg.norm(t, 1).item(), 10.0)             # torch.norm(x, 1)
    np.testing.assert_allclose(fg.norm(t, ord=1).item(), 6.0)          # np.linalg.norm(x, 1)
    np.testing.assert_allclose(fg.norm(t, 2, 0).numpy(), np.linalg.norm(x, axis=0))
    np.testing.assert_allclose(fg.linalg.vector_norm(t, 1, dim=1).numpy(), [7.0, 3.0])
    assert t.requires_grad_().norm().grad_fn.name() == "LinalgVectorNormBackward0"


# ---------------------------------------------------------------- std and var defaults

def test_std_and_var_defaults_numpy_for_fg_torch_for_methods():
    x = np.array([[1.0, 2.0, 4.0], [0.5, -1.0, 3.0]])
    t = fg.tensor(x)
    close = np.testing.assert_allclose
    close(fg.std(t).item(), np.std(x))                        # NumPy: ddof=0
    close(fg.std(t, axis=1, ddof=1).numpy(), np.std(x, axis=1, ddof=1))
    close(fg.std(t, dim=1).numpy(), np.std(x, axis=1, ddof=1))  # PyTorch's spelling: unbiased
    close(t.std().item(), np.std(x, ddof=1))                  # PyTorch's method: unbiased
    close(t.var().item(), np.var(x, ddof=1))
    close(t.std(1).numpy(), np.std(x, axis=1, ddof=1))
    close(t.std(False).item(), np.std(x))                     # std(unbiased=False)
    close(t.std(0, unbiased=False, keepdim=True).numpy(), np.std(x, 0, keepdims=True))
    close(t.var(dim=0, correction=0).numpy(), np.var(x, 0))
    close(t.std(axis=0).numpy(), np.std(x, 0))                # NumPy's keyword: NumPy's default
    close(np.std(t).item(), np.std(x))                        # NumPy dispatch: NumPy's
    t.requires_grad_()
    s = t.std()
    assert s.grad_fn.name() == "StdBackward0"
    s.backward()
    n = x.size
    close(t.grad.numpy(), (x - x.mean()) / ((n - 1) * np.std(x, ddof=1)))
    with pytest.raises(TypeError, match="ddof"):
        fg.std(t, ddof=1, unbiased=True)


# ---------------------------------------------------------------- any and all

def test_any_all_values_axes_nan_and_empty():
    x = np.array([[0.0, 1.0, 0.0], [0.0, np.nan, 2.0]])
    t = fg.tensor(x)
    for axis in (None, 0, 1, (0, 1), -1):
        for keep in (False, True):
            for ours, theirs in ((fg.any, np.any), (fg.all, np.all)):
                result = ours(t, axis, keepdims=keep)
                assert result.dtype == fg.bool
                np.testing.assert_array_equal(result.numpy(), theirs(x, axis, keepdims=keep))
    assert t.any().item() is True and t.all().item() is False
    np.testing.assert_array_equal(t.any(dim=1).numpy(), [True, True])
    np.testing.assert_array_equal(t.all(1, keepdim=True).numpy(), [[False], [False]])
    empty = fg.tensor(np.zeros((0, 2)))
    assert fg.any(empty).item() is False and fg.all(empty).item() is True
    ones = fg.tensor(np.ones(3), requires_grad=True)
    assert not fg.all(ones).requires_grad and fg.all(ones).grad_fn is None


def test_any_all_inside_a_trace_select_and_have_no_gradient():
    @fg.compile_grad
    def f(x):
        keep = fg.all(x > 0, axis=1, keepdims=True) | fg.any(x > 5, axis=1, keepdims=True)
        return fg.where(keep, x, 0.0).sum()
    x = np.array([[1.0, 2.0], [-1.0, 3.0], [-1.0, 6.0]])
    value, (grad,) = f(x)
    assert value == 3.0 + 5.0
    np.testing.assert_array_equal(grad, [[1, 1], [0, 0], [1, 1]])


# ---------------------------------------------------------------- matrix helpers

def test_diag_diagonal_trace_tril_triu_outer_match_numpy():
    x = np.arange(12.0).reshape(3, 4)
    v = np.array([1.0, -2.0, 3.0])
    t, tv = fg.tensor(x), fg.tensor(v)
    for k in (-4, -1, 0, 1, 3, 5):
        np.testing.assert_array_equal(fg.diag(t, k).numpy(), np.diag(x, k))
        np.testing.assert_array_equal(fg.diag(tv, k).numpy(), np.diag(v, k))
        np.testing.assert_array_equal(t.tril(k).numpy(), np.tril(x, k))
        np.testing.assert_array_equal(fg.triu(t, diagonal=k).numpy(), np.triu(x, k))
        assert fg.trace(t, k).item() == np.trace(x, k)
    cube = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(fg.diagonal(fg.tensor(cube), 1, 2, 0).numpy(),
                                  np.diagonal(cube, 1, 2, 0))
    np.testing.assert_array_equal(fg.trace(fg.tensor(cube), -1, 1, 2).numpy(),
                                  np.trace(cube, -1, 1, 2))
    np.testing.assert_array_equal(fg.tril(fg.tensor(cube), 1).numpy(), np.tril(cube, 1))
    np.testing.assert_array_equal(fg.triu(tv).numpy(), np.triu(v))     # NumPy: a 1-d row
    np.testing.assert_array_equal(fg.outer(t, tv).numpy(), np.outer(x, v))
    np.testing.assert_array_equal(tv.outer(tv).numpy(), np.outer(v, v))
    ints = fg.tensor(np.arange(4, dtype=np.int32).reshape(2, 2))
    assert fg.trace(ints).dtype == fg.int64 and fg.tril(ints).dtype == fg.int32


def test_eager_gradients_and_grad_fn_names():
    x = fg.tensor(np.arange(1.0, 10.0).reshape(3, 3), requires_grad=True)
    v = fg.tensor([1.0, 2.0], requires_grad=True)
    results = {"TrilBackward0": x.tril(), "TriuBackward0": x.triu(1),
               "TraceBackward0": x.trace(), "DiagonalBackward0": x.diag(1),
               "DiagEmbedBackward0": v.diag(-1), "CumsumBackward0": x.cumsum(1),
               "CumprodBackward0": x.cumprod(0), "ProdBackward1": x.prod(1),
               "ProdBackward0": x.prod(), "MulBackward0": fg.outer(v, v)}
    for name, result in results.items():
        assert result.grad_fn.name() == name
    total = sum(((r * (i + 1)).sum() for i, r in enumerate(results.values())), fg.tensor(0.0))
    total.backward()
    data = x.detach().numpy()
    expected = (np.tril(np.ones((3, 3))) + 2 * np.triu(np.ones((3, 3)), 1) + 3 * np.eye(3)
                + 4 * np.eye(3, k=1))
    expected += 6 * np.array([[3, 2, 1]] * 3)                            # cumsum
    cumprod_grad = np.array([[1 + data[1, c] + data[1, c] * data[2, c],
                              data[0, c] + data[0, c] * data[2, c],
                              data[0, c] * data[1, c]] for c in range(3)]).T
    expected += 7 * cumprod_grad
    expected += 8 * np.prod(data, 1, keepdims=True) / data
    expected += 9 * np.prod(data) / data
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(v.grad.numpy(), [5 + 2 * 10 * 3, 5 + 2 * 10 * 3])


def numpy_functions_source(m):
    def f(x, v):
        return (m.std(x) + m.cumsum(x, axis=1).sum() + m.prod(x) + m.linalg.norm(x)
                + m.diag(x).sum() + m.diag(v).sum() + m.trace(x) + m.tril(x).sum()
                + m.triu(x, 1).sum() + m.outer(v, v).sum()
                + m.where(m.any(x > 1, axis=1, keepdims=True) & m.all(x > 0), x, 0.0).sum())
    return f


def test_numpy_functions_dispatch_eagerly():
    x = np.array([[1.0, 2.0], [0.5, 1.5]])
    v = np.array([2.0, -1.0])
    f = numpy_functions_source(np)              # NumPy's functions, given Tensors
    tx, tv = fg.tensor(x, requires_grad=True), fg.tensor(v, requires_grad=True)
    result = f(tx, tv)
    assert isinstance(result, fg.Tensor)
    np.testing.assert_allclose(result.item(), f(x, v))
    result.backward()
    reference = numpy_functions_source(anp)
    np.testing.assert_allclose(tx.grad.numpy(), autograd.grad(reference, 0)(x, v))
    np.testing.assert_allclose(tv.grad.numpy(), autograd.grad(reference, 1)(x, v))
    np.testing.assert_allclose(np.cumprod(tx, axis=0).detach().numpy(), np.cumprod(x, axis=0))
    np.testing.assert_allclose(np.diagonal(tx, 0).detach().numpy(), np.diagonal(x))


def test_numpy_functions_dispatch_inside_a_trace():
    def f(x):
        return (np.linalg.norm(np.cumsum(x, axis=0)) * np.prod(x)
                + np.where(np.any(x > 1.8), np.std(x), 0.0))
    x = np.array([[1.0, 2.0], [0.5, 1.5]])
    compiled = fg.compile_grad(f)
    value, _ = compiled(x)
    np.testing.assert_allclose(value, f(x))               # NumPy itself is the oracle
    assert fg.gradcheck(compiled, x)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("call, error, message", [
    (lambda x: fg.cumsum(x, 2), ValueError, "cumsum: axis 2 is out of range"),
    (lambda x: fg.prod(x, (0, 0)), ValueError, "repeated axis"),
    (lambda x: fg.norm(x[0], ord=3), NotImplementedError, "norm: vector ord 3 is not supported"),
    (lambda x: fg.norm(x, ord=2, axis=(0, 1)), NotImplementedError, "matrix ord 2 is not "
                                                                    "supported"),
    (lambda x: fg.norm(x, p="nuc"), NotImplementedError, "singular values"),
    (lambda x: fg.norm(fg.reshape(x, 1, 2, 3), ord=1), ValueError, "1-d or 2-d"),
    (lambda x: fg.diag(fg.reshape(x, 1, 2, 3)), ValueError, "diag: input must be 1-d or 2-d, "
                                                            "got f64[1,2,3]"),
    (lambda x: fg.diagonal(x, 0, 1, 1), ValueError, "diagonal: axis1 and axis2 cannot be the "
                                                    "same (f64[2,3])"),
    (lambda x: fg.trace(x[0]), ValueError, "diagonal: needs at least 2 dimensions"),
    (lambda x: fg.tril(x.sum()), ValueError, "tril: needs at least 1 dimension"),
])
def test_errors_name_the_op_and_the_shapes(call, error, message):
    x = fg.tensor(np.ones((2, 3)), dtype=fg.float64, requires_grad=True)
    with pytest.raises(error) as caught:
        call(x)
    assert message in str(caught.value)
    assert isinstance(caught.value, fg.FusegradError)


def test_traced_error_names_the_users_line():
    def f(x):
        return fg.cumprod(x, axis=3).sum()       # the line the error names
    with pytest.raises(fg.ShapeError, match=r"(?s)cumprod: .*test_reductions_more.py:\d+"):
        fg.compile_grad(f)(np.ones((2, 3)))
