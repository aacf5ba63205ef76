"""Batched matmul, einsum and axis permutations (issue 11, item 1).

One compiled function holds the spellings a sequence model writes (folded rows,
equal and broadcast batch dimensions, 1-d operands, einsum, swapaxes, moveaxis,
NumPy's transpose); it is compiled fused and unfused and checked against HIPS
autograd in float32 and float64. The einsum table runs eagerly (the eager API
interprets small programs, so it compiles nothing) against NumPy's einsum, and its
gradients against autograd and central differences. The CUDA kernel for batched
products runs on the simulator in tests/codegen/test_cuda.py (the attention workload).
"""
from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
SHAPES = [(2, 3, 4), (4, 5), (2, 2, 3, 4), (2, 2, 3, 4), (2, 4, 3), (4,)]


def model(x, W, q, k, u, r):
    h = fg.tanh(x @ W)                                   # (2,3,4) @ (4,5): rows folded
    s = q @ k.swapaxes(-1, -2)                           # equal batches (2,2)
    c = fg.reshape(x, (2, 1, 3, 4)) @ u                  # (2,1,..) with (2,..): broadcast
    e = fg.einsum("bhqd,bhkd->bhqk", q, k)
    d = fg.einsum("bhii->bhi", s)                        # a diagonal
    t = x.transpose(2, 0, 1) * fg.moveaxis(x, -1, 0)     # NumPy's permutation; moveaxis
    v = r @ W + fg.matmul(x, r).sum()                    # 1-d on either side
    return ((h * h).sum() + (fg.sin(c) * s).sum() + 0.5 * (s * e).sum() + (d ** 2).sum()
            + (t * x.transpose((2, 0, 1))).sum() + fg.tanh(v).sum())


def reference(x, W, q, k, u, r):
    h = anp.tanh(x @ W)
    s = q @ anp.swapaxes(k, -1, -2)
    c = anp.reshape(x, (2, 1, 3, 4)) @ u
    e = anp.einsum("bhqd,bhkd->bhqk", q, k)
    d = anp.stack([s[..., i, i] for i in range(3)], axis=-1)
    t = anp.transpose(x, (2, 0, 1)) * anp.moveaxis(x, -1, 0)
    v = r @ W + anp.matmul(x, r).sum()
    return ((h * h).sum() + (anp.sin(c) * s).sum() + 0.5 * (s * e).sum() + (d ** 2).sum()
            + (t * anp.transpose(x, (2, 0, 1))).sum() + anp.tanh(v).sum())


FUSED = fg.compile_grad(model)
UNFUSED = fg.compile_grad(model, fuse=False)


def model_inputs(dtype):
    rng = np.random.default_rng(11)
    return [(rng.standard_normal(shape) / 2).astype(dtype) for shape in SHAPES]


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_model_matches_autograd_fused_and_unfused(dtype, assert_all_close, flatten, interpret):
    args = model_inputs(dtype)
    fused = flatten(FUSED(*args))
    assert [a.dtype for a in fused] == [dtype] * 7
    args64 = [a.astype(F64) for a in args]
    expected = [np.asarray(reference(*args64))]
    expected += list(autograd.grad(reference, tuple(range(6)))(*args64))
    assert_all_close(fused, expected, dtype, what="fused vs autograd")
    assert_all_close(fused, interpret(FUSED, *args), dtype, what="fused vs interpreter")
    if dtype == F64:
        assert_all_close(flatten(UNFUSED(*args)), fused, dtype, what="unfused vs fused")


def test_model_gradients_match_central_differences():
    assert fg.gradcheck(model, *model_inputs(F64))


def test_folded_rows_are_one_matrix_product_and_batches_are_library_calls(traced_for):
    from fusegrad.ir import primitives as P
    joint = traced_for(FUSED, *model_inputs(F64)).joint
    shapes = [(n.inputs[0].shape, n.inputs[1].shape) for n in joint.nodes
              if n.primitive is P.matmul]
    assert ((6, 4), (4, 5)) in shapes          # x(2,3,4) @ W(4,5), as rows
    assert ((2, 2, 3, 4), (2, 2, 4, 3)) in shapes
    assert ((2, 1, 3, 4), (2, 4, 3)) in shapes  # broadcast inside the primitive: no copy


# ---------------------------------------------------------------- einsum

EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("i,i->", [(4,), (4,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ij,kj", [(1, 3), (4, 3)]),                # implicit output; a size-1 label broadcasts
    ("ij,ij->", [(1, 3), (4, 3)]),              # ... also where it is summed
    ("...ij,...jk", [(2, 1, 3, 4), (5, 4, 2)]),
    ("bij,jk->bik", [(2, 3, 4), (4, 5)]),
    ("ijk,jl,lk->i", [(2, 3, 4), (3, 5), (5, 4)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("bii->bi", [(2, 3, 3)]),
    ("iij->ji", [(3, 3, 2)]),
]
# autograd's einsum cannot differentiate repeated labels: those use central differences.
HAS_DIAGONAL = {"ii->i", "ii", "bii->bi", "iij->ji"}


def _central_differences(subscripts, arrays, weights, eps=1e-6):
    grads = []
    for i, array in enumerate(arrays):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[i][index] += eps
            minus[i][index] -= eps
            grad[index] = ((np.einsum(subscripts, *plus) * weights).sum()
                           - (np.einsum(subscripts, *minus) * weights).sum()) / (2 * eps)
        grads.append(grad)
    return grads


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("subscripts, shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum_value_and_gradient(subscripts, shapes, dtype, assert_close):
    rng = np.random.default_rng(len(subscripts))
    arrays = [rng.standard_normal(shape) for shape in shapes]
    expected = np.einsum(subscripts, *arrays)
    weights = rng.standard_normal(expected.shape)
    tensors = [fg.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out = fg.einsum(subscripts, *tensors)
    assert_close(out.detach().numpy(), expected, dtype, what="value")
    (out * fg.tensor(weights.astype(dtype))).sum().backward()
    if subscripts in HAS_DIAGONAL:
        grads = _central_differences(subscripts, arrays, weights)
    else:
        weighted = lambda *a: (anp.einsum(subscripts, *a) * weights).sum()  # noqa: E731
        grads = autograd.grad(weighted, tuple(range(len(arrays))))(*arrays)
    for i, (tensor, grad) in enumerate(zip(tensors, grads)):
        assert_close(tensor.grad.numpy(), grad, dtype, what=f"gradient {i}")


def test_einsum_spellings_numpy_dispatch_torch_list_and_integers():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    ta, tb = fg.tensor(a, requires_grad=True), fg.tensor(b)
    expected = np.einsum("bij,bjk->bik", a, b)
    np.testing.assert_allclose(np.einsum("bij,bjk->bik", ta, tb, optimize=True).detach().numpy(),
                               expected)
    np.testing.assert_allclose(fg.einsum("bij,bjk->bik", [ta, tb]).detach().numpy(), expected)
    ia, ib = rng.integers(-5, 5, (3, 4)).astype(np.int32), rng.integers(-5, 5, (4, 2)).astype(np.int32)
    got = fg.einsum("ij,jk->ik", fg.tensor(ia), fg.tensor(ib)).numpy()
    assert got.dtype == np.int32 and np.array_equal(got, np.einsum("ij,jk->ik", ia, ib))


@pytest.mark.parametrize("subscripts, shapes, match", [
    ("ij,jk", [(2, 3, 4), (4, 5)], r"'ij' has 2 label\(s\) for f64\[2,3,4\]"),
    ("ij,jk->ik", [(3, 4), (3, 5)], r"label 'j' has sizes 4 and 3 in f64\[3,4\], f64\[3,5\]"),
    ("ij,jk->il", [(3, 4), (4, 5)], r"output label 'l' is in no operand"),
    ("ij->ii", [(3, 4)], r"repeats in the output"),
    ("ij", [(3, 4), (4, 5)], r"name 1 operand\(s\), got 2"),
    ("i1", [(3, 4)], r"labels must be letters"),
    ("...i->i", [(2, 3)], r"output needs '...'"),
    ("ii->i", [(1, 4)], r"diagonal needs equal sizes"),
])
def test_einsum_errors_say_what_is_wrong(subscripts, shapes, match):
    tensors = [fg.tensor(np.ones(s)) for s in shapes]
    with pytest.raises(fg.ShapeError, match=match) as error:
        fg.einsum(subscripts, *tensors)
    assert "einsum" in str(error.value) and isinstance(error.value, ValueError)


def test_einsum_of_booleans_is_refused_with_what_to_write():
    with pytest.raises(fg.DTypeError, match=r"astype"):
        fg.einsum("i,i->", fg.tensor([True, False]), fg.tensor([True, True]))


# ---------------------------------------------------------------- eager matmul and bmm

def test_bmm_and_batched_matmul_backward_match_autograd():
    rng = np.random.default_rng(2)
    a, b, w = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5)), rng.standard_normal((4, 5))
    ta, tb, tw = (fg.tensor(v, requires_grad=True) for v in (a, b, w))
    y = fg.bmm(ta, tb)
    z = ta.matmul(tw)
    assert y.grad_fn.name() == "BmmBackward0" and z.grad_fn.name() == "UnsafeViewBackward0"
    assert ta.bmm(tb).grad_fn.name() == "BmmBackward0"
    (fg.tanh(y).sum() + (z * z).sum()).backward()
    f = lambda a, b, w: anp.tanh(a @ b).sum() + ((a @ w) ** 2).sum()  # noqa: E731
    for tensor, grad in zip((ta, tb, tw), autograd.grad(f, (0, 1, 2))(a, b, w)):
        np.testing.assert_allclose(tensor.grad.numpy(), grad, rtol=1e-12, atol=1e-12)


def test_second_derivative_through_a_broadcast_batched_matmul():
    """The VJP rule is graph operations (matmul, swapaxes, sum_to): differentiable again."""
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((5, 4, 2))
    ta, tb = fg.tensor(a, requires_grad=True), fg.tensor(b, requires_grad=True)
    grad_a, = fg.autograd.grad(fg.tanh(ta @ tb).sum(), (ta,), create_graph=True)
    (grad_a ** 2).sum().backward()
    penalty = lambda a, b: (autograd.grad(lambda a: anp.tanh(a @ b).sum())(a) ** 2).sum()  # noqa: E731
    for tensor, grad in zip((ta, tb), autograd.grad(penalty, (0, 1))(a, b)):
        np.testing.assert_allclose(tensor.grad.numpy(), grad, rtol=1e-10, atol=1e-12)


def test_two_dimensional_grad_fn_names_are_kept():
    a = fg.tensor(np.ones((3, 4)), requires_grad=True)
    assert (a @ fg.tensor(np.ones((4, 2)))).grad_fn.name() == "MmBackward0"
    assert (a @ fg.tensor(np.ones(4))).grad_fn.name() == "MvBackward0"


@pytest.mark.parametrize("a_shape, b_shape, match", [
    ((2, 3, 4), (4, 5, 6), r"bmm: batch sizes differ: shapes \(2, 3, 4\) and \(4, 5, 6\)"),
    ((3, 4), (4, 5), r"bmm: both operands must be 3-d, got shapes \(3, 4\) and \(4, 5\)"),
    ((2, 3, 4), (2, 4), r"bmm: both operands must be 3-d"),
])
def test_bmm_errors_name_the_shapes(a_shape, b_shape, match):
    with pytest.raises(fg.ShapeError, match=match):
        fg.bmm(fg.tensor(np.ones(a_shape)), fg.tensor(np.ones(b_shape)))


def traced_error(function, *shapes):
    with pytest.raises(fg.ShapeError) as error:
        fg.compile_grad(function)(*(np.ones(s) for s in shapes))
    return str(error.value)


def test_traced_matmul_errors_name_shapes_and_the_line():
    def inner(x, w):
        return (x @ w).sum()  # <- inner

    def batch(x, w):
        return (x @ w).sum()  # <- batch
    message = traced_error(inner, (2, 3, 4), (3, 5))
    assert "inner dimensions differ: f64[2,3,4], f64[3,5] (4 != 3)" in message
    assert "<- inner" in message or "test_batched_matmul.py" in message
    message = traced_error(batch, (2, 3, 4), (3, 4, 5))
    assert "batch dimensions (2,) and (3,) cannot be broadcast together" in message
    assert "test_batched_matmul.py" in message


def test_matmul_of_a_scalar_says_to_multiply():
    with pytest.raises(fg.ShapeError, match=r"use \*"):
        fg.matmul(fg.tensor(np.ones((2, 2))), fg.tensor(2.0))


@pytest.mark.parametrize("a_shape, b_shape", [
    ((2, 3, 4), (4, 5)), ((4,), (2, 4, 5)), ((2, 3, 4), (4,)), ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)), ((2, 0, 4), (4, 3)), ((2, 3, 0), (0, 5))])
def test_matmul_shapes_and_values_follow_numpy(a_shape, b_shape):
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    got = (fg.tensor(a) @ fg.tensor(b)).numpy()
    np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12)
    assert got.shape == (a @ b).shape


# ---------------------------------------------------------------- axis permutations

X = np.arange(24.0).reshape(2, 3, 4)


@pytest.mark.parametrize("spelling, expected", [
    (lambda t: t.transpose(), X.transpose()),
    (lambda t: t.transpose(2, 0, 1), X.transpose(2, 0, 1)),          # NumPy: one int per axis
    (lambda t: t.transpose((2, 0, 1)), X.transpose((2, 0, 1))),
    (lambda t: t.transpose(-1, 0, 1), X.transpose(-1, 0, 1)),
    (lambda t: fg.transpose(t, axes=[1, 2, 0]), np.transpose(X, [1, 2, 0])),
    (lambda t: t.transpose(0, 2), X.swapaxes(0, 2)),                 # PyTorch: two ints swap
    (lambda t: fg.transpose(t, dim0=1, dim1=-1), X.swapaxes(1, -1)),
    (lambda t: fg.swapaxes(t, 0, -1), X.swapaxes(0, -1)),
    (lambda t: t.swapdims(1, 2), X.swapaxes(1, 2)),
    (lambda t: t.mT, X.swapaxes(-1, -2)),
    (lambda t: fg.moveaxis(t, 0, -1), np.moveaxis(X, 0, -1)),
    (lambda t: t.movedim([0, 1], [-1, -2]), np.moveaxis(X, [0, 1], [-1, -2])),
    (lambda t: t.permute(-1, 0, 1), X.transpose(-1, 0, 1)),
    (lambda t: np.transpose(t, (1, -1, 0)), np.transpose(X, (1, -1, 0))),
    (lambda t: np.swapaxes(t, 0, 1), np.swapaxes(X, 0, 1)),
    (lambda t: np.moveaxis(t, -1, 1), np.moveaxis(X, -1, 1)),
])
def test_axis_spellings_match_numpy(spelling, expected):
    np.testing.assert_array_equal(spelling(fg.tensor(X)).numpy(), expected)


def test_a_matrix_transpose_with_two_ints_is_both_libraries_swap():
    m = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(fg.tensor(m).transpose(1, 0).numpy(), m.transpose(1, 0))


def test_axis_permutation_gradients_and_grad_fn_names():
    t = fg.tensor(X, requires_grad=True)
    weights = np.random.default_rng(4).standard_normal((4, 2, 3))
    terms = [t.transpose(2, 0, 1), fg.moveaxis(t, -1, 0), t.permute(2, 0, 1),
             t.swapaxes(0, 2).swapaxes(1, 2)]
    assert [r.grad_fn.name() for r in terms] == ["PermuteBackward0", "PermuteBackward0",
                                                 "PermuteBackward0", "TransposeBackward0"]
    sum((r * fg.tensor(weights)).sum() for r in terms).backward()
    np.testing.assert_allclose(t.grad.numpy(), 4 * np.transpose(weights, (1, 2, 0)))


@pytest.mark.parametrize("call, match", [
    (lambda t: t.transpose(0, 1, 1), r"\(0, 1, 1\) are not a permutation of the 3 axes of f64\[2,3,4\]"),
    (lambda t: t.transpose(0, 1, 2, 3), r"give no axes .*two .*or 3"),
    (lambda t: t.swapaxes(0, 3), r"swapaxes: axis 3 is out of bounds for f64\[2,3,4\]"),
    (lambda t: fg.moveaxis(t, (0, 1), 2), r"same number of elements"),
    (lambda t: fg.moveaxis(t, (0, 0), (1, 2)), r"repeated axis"),
    (lambda t: fg.tensor(np.ones(3)).mT, r"at least 2 dimensions, got f64\[3\]"),
])
def test_axis_errors_name_the_shape(call, match):
    with pytest.raises(fg.ShapeError, match=match):
        call(fg.tensor(X))
