"""Integer-array indexing and gathers (issue 11, item 2): ``x[arange, labels]``,
``x[idx]``, mixed basic and advanced indices in NumPy's placement rules, fg.take,
fg.take_along_axis, PyTorch's gather, and NumPy's np.take / np.take_along_axis on
Tensors. Their backward is a scatter-add: duplicate indices accumulate.

Oracles: HIPS autograd (whose integer-array indexing transposes with np.add.at),
np.add.at by hand, the NumPy interpreter of the joint graph, and finite differences.
Every term is concatenated into one vector, so that each dtype compiles two kernels.
"""
from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import fusegrad as fg

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

ROWS = np.arange(5)
CONST = np.array([[2, 0], [2, -3]])          # a constant 2-d index, with a repeat
LABELS = np.array([0, 3, 3, 1, 2], np.int32)
IDX = np.array([1, -1, 1, 3], np.int16)     # a repeat and a negative index
ALONG = np.array([[0, 0], [3, 1], [2, 2], [-1, 0], [1, 3]], np.int64)


def gathers_source(m, weights):
    """Every spelling, each term read through a different index form."""
    def gathers(x, x3, labels, idx, along):
        terms = [
            x[ROWS, labels],                  # the classifier's pick
            x[idx],                           # traced rows, repeated and negative
            x[:, idx],                        # the gathered axis stays in place
            x[CONST],                         # a constant 2-d index
            x[idx, 1:3],                      # then a basic slice
            x3[labels[:3], :, idx[:3]],       # apart: the gathered axes lead (NumPy)
            x3[:, 1, idx],                    # an integer beside an array: consecutive
            x3[0, :, idx],                    # an integer apart from an array: leads
            m.take(x, idx),                   # into the flattened x
            m.take(x, idx, 1),
            m.take_along_axis(x, along, 1),
            m.gather(x, along),               # PyTorch's x.gather(1, along)
        ]
        v = m.concatenate([t.reshape(-1) for t in terms])
        return (v * v * weights).sum()
    return gathers


class Spellings:
    """fusegrad's spellings: NumPy's functions dispatched, fg's, and Tensor methods."""
    concatenate = staticmethod(fg.concatenate)

    @staticmethod
    def take(x, idx, axis=None):
        return np.take(x, idx) if axis is None else x.take(idx, axis=axis)

    take_along_axis = staticmethod(np.take_along_axis)

    @staticmethod
    def gather(x, along):
        return x.gather(1, along)


class Oracle:
    """The same terms for HIPS autograd, from plain integer-array indexing."""
    concatenate = staticmethod(anp.concatenate)

    @staticmethod
    def take(x, idx, axis=None):
        return anp.reshape(x, -1)[idx] if axis is None else x[:, idx]

    @staticmethod
    def take_along_axis(x, along, axis):
        return x[np.arange(x.shape[0])[:, None], along]

    gather = staticmethod(lambda x, along: x[np.arange(x.shape[0])[:, None], along])


SIZE = 5 + 16 + 20 + 16 + 8 + 9 + 20 + 12 + 4 + 20 + 10 + 10
WEIGHTS = np.random.default_rng(4).uniform(0.5, 1.5, SIZE)
COMPILED = {d: fg.compile_grad(gathers_source(Spellings, WEIGHTS.astype(d))) for d in (F32, F64)}


def inputs(dtype):
    rng = np.random.default_rng(11)
    return (rng.standard_normal((5, 4)).astype(dtype), rng.standard_normal((5, 3, 4)).astype(dtype),
            LABELS, IDX, ALONG)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_gathers_match_autograd_and_the_interpreter(dtype, interpret, assert_all_close, flatten):
    args = inputs(dtype)
    results = flatten(COMPILED[dtype](*args))
    assert [r.dtype for r in results] == [dtype] * 3
    assert_all_close(results, interpret(COMPILED[dtype], *args), dtype, what="vs interpreter")
    reference = gathers_source(Oracle, WEIGHTS)
    args64 = [a.astype(F64) for a in args[:2]] + list(args[2:])
    expected = [reference(*args64)] + [autograd.grad(reference, i)(*args64) for i in (0, 1)]
    assert_all_close(results, expected, dtype, what="vs autograd")


def test_gathers_gradcheck():
    assert fg.gradcheck(gathers_source(Spellings, WEIGHTS), *inputs(F64))


def test_the_gradient_of_repeated_indices_accumulates_as_np_add_at():
    x = fg.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    index = np.array([[0, 0, 3], [1, 1, 1], [-1, 2, 0]])
    y = x.gather(1, fg.tensor(index))
    assert y.grad_fn.name() == "GatherBackward0"
    np.testing.assert_array_equal(y.detach().numpy(), np.take_along_axis(x.detach().numpy(), index, 1))
    cotangent = np.arange(9.0).reshape(3, 3) + 1
    y.backward(fg.tensor(cotangent))
    expected = np.zeros((3, 4))
    np.add.at(expected, (np.arange(3)[:, None], index), cotangent)
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_second_derivative_through_the_scatter_add():
    x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x[np.array([0, 0, 2])] ** 3).sum()
    (g,) = fg.autograd.grad(y, x, create_graph=True)
    counts, values = np.array([2.0, 0.0, 1.0]), np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(g.detach().numpy(), 3 * counts * values ** 2)
    (g ** 2).sum().backward()   # d/dx sum(g^2) = 2 g * 6 c x
    np.testing.assert_allclose(x.grad.numpy(), 2 * (3 * counts * values ** 2) * 6 * counts * values)


# ---------------------------------------------------------------- the classifier idiom

def cross_entropy(logits, labels):
    log_probs = logits - fg.logsumexp(logits, axis=1, keepdims=True)
    return -log_probs[np.arange(logits.shape[0]), labels].mean()


CROSS_ENTROPY = {fuse: fg.compile_grad(cross_entropy, fuse=fuse) for fuse in (True, False)}


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_cross_entropy_with_integer_labels(dtype, assert_all_close, flatten):
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((6, 5)) * 3).astype(dtype)
    labels = np.array([4, 0, 0, 2, 4, 1])
    fused = flatten(CROSS_ENTROPY[True](logits, labels))
    x = logits.astype(F64)
    log_probs = x - np.log(np.exp(x).sum(1, keepdims=True))
    one_hot = np.eye(5)[labels]
    expected = [-log_probs[np.arange(6), labels].mean(), (np.exp(log_probs) - one_hot) / 6]
    assert_all_close(fused, expected, dtype, what="fused vs formula")
    if dtype == F64:   # one dtype unfused: one kernel per primitive compiles slowly
        assert_all_close(flatten(CROSS_ENTROPY[False](logits, labels)), fused, dtype,
                         what="unfused vs fused")


def test_embedding_lookup_with_np_take():
    """np.take on a traced table dispatches to fg.take (NumPy dispatches np.take on its
    first argument only: a constant table with traced tokens is fg.take(table, tokens))."""
    table = np.random.default_rng(0).standard_normal((6, 3))

    def lookup(w, tokens):
        return (np.take(w, tokens, axis=0) * fg.take(table, tokens, axis=0)).sum()
    tokens = np.array([[5, 0], [5, 5]])
    value, gw = fg.compile_grad(lookup, wrt=0)(table * 2, tokens)
    assert np.isclose(value, (table[tokens] ** 2).sum() * 2)
    expected = np.zeros((6, 3))
    np.add.at(expected, tokens, table[tokens])
    np.testing.assert_allclose(gw, expected)


# ---------------------------------------------------------------- masks

def test_a_traced_boolean_mask_is_a_clear_error():
    with pytest.raises(fg.TraceError, match=r"boolean mask .*fg\.where\(mask, x, 0\)"):
        fg.compile_grad(lambda x: x[x > 0].sum())(np.ones(3))


def test_known_boolean_masks_select_as_numpy():
    mask = np.array([True, False, True, True])
    value, (g,) = fg.compile_grad(lambda x: (x[mask] ** 2).sum())(np.arange(4.0))
    assert value == 0 + 4 + 9 and g.tolist() == [0.0, 0.0, 4.0, 6.0]
    x = fg.tensor(np.arange(4.0), requires_grad=True)
    y = x[fg.tensor(mask)]
    (y * y).sum().backward()
    assert y.tolist() == [0.0, 2.0, 3.0] and x.grad.tolist() == [0.0, 0.0, 4.0, 6.0]


# ---------------------------------------------------------------- errors

OUT_OF_BOUNDS = fg.compile_grad(lambda x, i: x[np.arange(2), i].sum())


def test_an_out_of_bounds_index_is_an_error_at_run_time():
    x = np.ones((2, 3))
    assert OUT_OF_BOUNDS(x, np.array([2, -3]))[0] == 2.0
    with pytest.raises(fg.BoundsError, match=r"out of bounds .*\n  traced at .*test_gather\.py"):
        OUT_OF_BOUNDS(x, np.array([0, 3]))
    with pytest.raises(IndexError, match="out of bounds"):
        OUT_OF_BOUNDS(x, np.array([-4, 0]))
    with pytest.raises(IndexError, match="out of bounds"):   # eager too, as NumPy
        fg.take(fg.tensor([1.0, 2.0], requires_grad=True), np.array([2]))


@pytest.mark.parametrize("call, error, message", [
    (lambda x: x[np.array([0.0, 1.0])], fg.DTypeError, "index arrays must be integers"),
    (lambda x: x[np.array([0]), None], fg.UnsupportedError, "fg.expand_dims"),
    (lambda x: x[np.array([0]), 5], fg.ShapeError, "index 5 is out of bounds for axis 1"),
    (lambda x: x[np.array([0, 1]), np.array([0, 1, 2])], fg.ShapeError, "cannot be broadcast"),
    (lambda x: fg.take_along_axis(x, np.array([0]), 1), fg.ShapeError, "same number of dim"),
    (lambda x: fg.gather(x, 0, np.zeros((2, 4), np.int64)), fg.ShapeError,
     "size does not match at dimension 1"),
], ids=["float", "newaxis", "integer", "broadcast", "along-ndim", "gather-size"])
def test_bad_indices_are_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        fg.compile_grad(lambda x: call(x).sum())(np.ones((2, 3)))


def test_eager_spellings_and_grad_fn_names():
    x = fg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    idx = fg.tensor([2, 0, 2])
    assert x[:, idx].grad_fn.name() == "IndexBackward0"
    assert fg.take(x, idx).tolist() == [2.0, 0.0, 2.0]
    assert fg.take_along_dim(x, fg.tensor([[1], [2]]), 1).tolist() == [[1.0], [5.0]]
    assert np.take_along_axis(x, np.array([[1], [2]]), 1).grad_fn.name() == "TakeAlongDimBackward0"
    plain = fg.tensor(np.arange(6.0).reshape(2, 3))
    assert plain[np.array([1, 1]), idx[:2]].tolist() == [5.0, 3.0]


def test_an_ndarray_indexed_by_a_traced_tensor_says_what_to_write():
    table = np.ones((5, 3))
    with pytest.raises(fg.TraceError, match=r"fg\.take\(array, index, axis=0\).*\n  at .*test_gather"):
        fg.compile_grad(lambda x, i: (x * table[i]).sum())(np.ones((2, 3)), np.array([0, 1]))
