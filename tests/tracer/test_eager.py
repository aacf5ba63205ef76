"""The eager autograd API: PyTorch's semantics.

Everything here runs on the NumPy interpreter except `test_large_backward_is_compiled`,
the one test that compiles (a small fused kernel, once).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.autograd import Variable
from fusegrad.tracer import engine

pytestmark = pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")


def values(t):
    return t.detach().numpy().tolist()


# ---------------------------------------------------------------- leaves and grads

def test_leaves_non_leaves_and_requires_grad_propagation():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    c = fg.tensor([3.0, 4.0])
    y = x * c
    z = c * 2
    assert x.is_leaf and c.is_leaf and not y.is_leaf and z.is_leaf
    assert y.requires_grad and not z.requires_grad
    assert x.grad_fn is None and z.grad_fn is None and y.grad_fn.name() == "MulBackward0"
    (y.sum()).backward()
    assert values(x.grad) == [3.0, 4.0]
    assert c.grad is None
    with pytest.warns(UserWarning, match="not a leaf Tensor"):
        assert y.grad is None


def test_gradients_accumulate_until_zeroed():
    x = fg.ones(3, requires_grad=True)
    for n in (1, 2, 3):
        (x * 2).sum().backward()
        assert values(x.grad) == [2.0 * n] * 3
    grad = x.grad
    x.grad.zero_()
    (x * 2).sum().backward()
    assert x.grad is grad and values(x.grad) == [2.0] * 3   # accumulated in place
    x.grad = None
    (x * 5).sum().backward()
    assert values(x.grad) == [5.0] * 3


def test_backward_twice_through_saved_values_is_allowed():
    # PyTorch raises here without retain_graph=True; fusegrad recomputes (documented).
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x.exp()).sum()
    y.backward()
    first = values(x.grad)
    y.backward()
    np.testing.assert_allclose(values(x.grad), np.multiply(first, 2), rtol=1e-6)


def test_backward_with_gradient_is_a_vjp():
    x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x ** 2
    y.backward(fg.tensor([1.0, 0.1, 0.01]))
    np.testing.assert_allclose(values(x.grad), [2.0, 0.4, 0.06], rtol=1e-6)
    s = (x * 3).sum()
    x.grad = None
    s.backward(fg.tensor(2.0))      # a 0-d gradient for a 0-d output
    assert values(x.grad) == [6.0, 6.0, 6.0]


def test_backward_errors_as_pytorch():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="^grad can be implicitly created only for scalar outputs$"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match=re.escape(
            "Mismatch in shape: grad_output[0] has a shape of fusegrad.Size([3]) and output[0] "
            "has a shape of fusegrad.Size([2]).")):
        (x * 2).backward(fg.ones(3))
    with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad"):
        fg.ones(2).sum().backward()


def test_only_floating_tensors_require_grad():
    # PyTorch's messages, one per spelling.
    with pytest.raises(RuntimeError, match="^Only Tensors of floating point and complex dtype "
                                           "can require gradients$"):
        fg.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(RuntimeError, match="^only Tensors of floating point dtype can require "
                                           "gradients$"):
        fg.arange(3).requires_grad_()
    with pytest.raises(RuntimeError, match="^only Tensors of floating point and complex dtype"):
        fg.arange(3).requires_grad = True
    assert fg.arange(3.0).requires_grad_().requires_grad


def test_requires_grad_on_non_leaf():
    x = fg.ones(2, requires_grad=True)
    y = x * 2
    assert y.requires_grad_() is y
    with pytest.raises(RuntimeError, match="only change requires_grad flags of leaf variables"):
        y.requires_grad = False


def test_no_grad_context_and_decorators():
    x = fg.ones(2, requires_grad=True)
    with fg.no_grad():
        y = x * 2
        with fg.enable_grad():
            assert (x * 2).requires_grad
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf

    @fg.no_grad()
    def called(t):
        return t * 2

    @fg.no_grad
    def bare(t):
        return t * 2

    assert not called(x).requires_grad and not bare(x).requires_grad
    assert fg.is_grad_enabled()
    with fg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad


def test_detach_and_detach_():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    d.numpy()[0] = 7.0              # detach shares storage
    assert values(y)[0] == 7.0
    y.detach_()
    assert not y.requires_grad and y.is_leaf
    x.detach_()
    assert not x.requires_grad


def test_data_shares_storage():
    x = fg.ones(2, 2, requires_grad=True)
    data = x.data
    assert not data.requires_grad
    data.zero_()
    assert values(x) == [[0.0, 0.0], [0.0, 0.0]]
    x.data = fg.full((2, 2), 3.0)
    assert values(x) == [[3.0, 3.0], [3.0, 3.0]] and x.requires_grad


def test_from_numpy_and_numpy_share_memory():
    a = np.arange(3.0)
    t = fg.from_numpy(a)
    assert t.dtype == fg.float64
    a[0] = 10.0
    assert values(t)[0] == 10.0
    t.add_(1)
    assert a.tolist() == [11.0, 2.0, 3.0]
    assert t.numpy() is a


def test_numpy_of_a_tensor_requiring_grad():
    x = fg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=re.escape("Use tensor.detach().numpy() instead.")):
        x.numpy()
    with pytest.raises(RuntimeError, match="requires grad"):
        np.asarray(x)
    assert x.detach().numpy().tolist() == [1.0, 1.0]


def test_item_tolist_and_conversions():
    t = fg.tensor([[1.5]])
    assert t.item() == 1.5 and float(t) == 1.5 and t.tolist() == [[1.5]]
    with pytest.raises(RuntimeError, match="a Tensor with 2 elements cannot be converted to Scalar"):
        fg.ones(2).item()
    assert int(fg.tensor(3)) == 3 and bool(fg.tensor(True))
    with pytest.raises(ValueError, match="only one element tensors can be converted"):
        float(fg.ones(2))


# ---------------------------------------------------------------- autograd.grad

def test_autograd_grad_returns_a_tuple_and_leaves_grad_alone():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    w = fg.tensor([3.0, 4.0], requires_grad=True)
    z = (w * x).sum()
    gx, gw = fg.autograd.grad(z, (x, w))
    assert values(gx) == [3.0, 4.0] and values(gw) == [1.0, 2.0]
    assert x.grad is None and w.grad is None
    assert not gx.requires_grad


def test_autograd_grad_of_intermediates():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    z = (y * x).sum()
    gx, gy = fg.autograd.grad(z, [x, y])
    assert values(gx) == [6.0, 12.0]    # the total derivative: through y as well
    assert values(gy) == [1.0, 2.0]


def test_autograd_grad_unused_and_errors():
    x = fg.ones(1, requires_grad=True)
    unused = fg.ones(1, requires_grad=True)
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
        fg.autograd.grad((x * 2).sum(), [x, unused])
    assert fg.autograd.grad((x * 2).sum(), [x, unused], allow_unused=True)[1] is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        fg.autograd.grad((x * 2).sum(), [fg.ones(1)])


def test_autograd_grad_several_outputs():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    (g,) = fg.autograd.grad([(x * 2).sum(), (x ** 2).sum()], x)
    assert values(g) == [4.0, 6.0]
    (g,) = fg.autograd.grad([x * 2, x ** 2], [x], [fg.ones(2), fg.tensor([1.0, 0.5])])
    assert values(g) == [4.0, 4.0]


def test_create_graph_gives_higher_derivatives():
    x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (g,) = fg.autograd.grad((x ** 3).sum(), x, create_graph=True)
    assert values(g) == [3.0, 12.0, 27.0] and g.requires_grad
    (h,) = fg.autograd.grad(g.sum(), x)
    assert values(h) == [6.0, 12.0, 18.0]
    y = (x ** 2 * x.exp()).sum()
    x.grad = None
    y.backward(create_graph=True)
    first = x.grad
    x.grad = None
    first.sum().backward()
    expected = (2 + 4 * np.array([1.0, 2, 3]) + np.array([1.0, 2, 3]) ** 2) * np.exp([1.0, 2, 3])
    np.testing.assert_allclose(values(x.grad), expected, rtol=1e-5)


def test_retain_grad():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    assert y.retains_grad
    (y * y).sum().backward()
    assert values(y.grad) == [6.0, 12.0] and values(x.grad) == [18.0, 36.0]


def test_indexing():
    x = fg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    row, column = x[0], x[:, 1]
    assert row.grad_fn.name() == "SelectBackward0" and x[0, 1:].grad_fn.name() == "SliceBackward0"
    (row * 2 + column * 10).sum().backward()
    assert values(x.grad) == [[2.0, 12.0], [0.0, 10.0]]
    plain = fg.arange(6.0).reshape(2, 3)
    view = plain[1]
    view.zero_()                     # basic indexing is a view, as in PyTorch
    assert values(plain) == [[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]]
    assert [r.tolist() for r in plain] == values(plain)
    plain[0, 0] = 5.0
    assert plain[0, 0].item() == 5.0


# ---------------------------------------------------------------- grad_fn objects

@pytest.mark.parametrize("make, name", [
    (lambda x, m, v: x + 1, "AddBackward0"), (lambda x, m, v: x - 1, "SubBackward0"),
    (lambda x, m, v: 2 * x, "MulBackward0"), (lambda x, m, v: x / 2, "DivBackward0"),
    (lambda x, m, v: x.pow(2), "PowBackward0"), (lambda x, m, v: x ** 2, "PowBackward0"),
    (lambda x, m, v: x.sum(), "SumBackward0"), (lambda x, m, v: x.mean(), "MeanBackward0"),
    (lambda x, m, v: x.exp(), "ExpBackward0"), (lambda x, m, v: fg.cos(x), "CosBackward0"),
    (lambda x, m, v: x.sin(), "SinBackward0"), (lambda x, m, v: x.tanh(), "TanhBackward0"),
    (lambda x, m, v: x.sigmoid(), "SigmoidBackward0"), (lambda x, m, v: x.relu(), "ReluBackward0"),
    (lambda x, m, v: x.log(), "LogBackward0"), (lambda x, m, v: x.sqrt(), "SqrtBackward0"),
    (lambda x, m, v: x.abs(), "AbsBackward0"), (lambda x, m, v: -x, "NegBackward0"),
    (lambda x, m, v: m.mm(m.t()), "MmBackward0"), (lambda x, m, v: m.mv(v), "MvBackward0"),
    (lambda x, m, v: m.transpose(0, 1), "TransposeBackward0"),
    (lambda x, m, v: m.view(6), "ViewBackward0"), (lambda x, m, v: m.flatten(), "ViewBackward0"),
    (lambda x, m, v: m.unsqueeze(0), "UnsqueezeBackward0"),
    (lambda x, m, v: m.permute(1, 0), "PermuteBackward0"),
    (lambda x, m, v: m.clamp(0, 1), "ClampBackward1"), (lambda x, m, v: m.max(dim=1)[0], "MaxBackward0"),
    (lambda x, m, v: m.max(), "MaxBackward1"), (lambda x, m, v: m.clone(), "CloneBackward0"),
    (lambda x, m, v: x.sum(0), "SumBackward1"), (lambda x, m, v: x.double(), "ToCopyBackward0"),
])
def test_grad_fn_names(make, name):
    x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = fg.ones(2, 3, requires_grad=True)
    v = fg.ones(3, requires_grad=True)
    out = make(x, m, v)
    assert out.grad_fn.name() == name == type(out.grad_fn).__name__
    assert re.fullmatch(rf"<{name} object at 0x[0-9a-f]+>", repr(out.grad_fn))


def test_next_functions_walk_to_accumulate_grad():
    x = fg.ones(2, requires_grad=True)
    c = fg.ones(2)
    z = (x * c + x).sum()
    ((add, _),) = z.grad_fn.next_functions
    (mul, _), (acc, _) = add.next_functions
    assert add.name() == "AddBackward0" and mul.name() == "MulBackward0"
    assert acc.variable is x and mul.next_functions[0][0] is acc
    assert mul.next_functions[1] == (None, 0)


# ---------------------------------------------------------------- in-place and versions

def test_in_place_on_a_leaf_requiring_grad():
    w = fg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in "
                                           "an in-place operation."):
        w.add_(1)
    with fg.no_grad():
        w -= 0.5
        w.mul_(4)
    assert w.is_leaf and w.requires_grad and values(w) == [2.0, 2.0]


def test_in_place_on_a_recorded_tensor_is_recorded():
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.add_(1)
    y *= x
    assert y.grad_fn.name() == "MulBackward0" and values(y) == [3.0, 10.0]
    y.sum().backward()
    assert values(x.grad) == [5.0, 9.0]          # d/dx (2x + 1) x = 4x + 1


def test_numpy_operands_are_copied_when_recorded():
    # The recorded op kept the caller's array by reference: changing it before
    # backward() changed the gradient (grad [0, 0] instead of [3, 4]).
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    a = np.array([3.0, 4.0])
    y = (x * a).sum()
    a[:] = 0
    y.backward()
    assert values(x.grad) == [3.0, 4.0]
    seed = np.array([1.0, 1.0], np.float32)   # x.dtype: no conversion copies it
    (g,) = fg.autograd.grad(x * x, x, grad_outputs=seed, create_graph=True)
    seed[:] = 0
    g.sum().backward()
    assert values(x.grad) == [5.0, 6.0]   # 3, 4 plus d(2 x * seed)/dx = 2 * seed


def test_modified_input_is_detected():
    a = fg.tensor([1.0, 2.0], requires_grad=True)
    b = fg.tensor([3.0, 4.0])
    c = (a * b).sum()
    b.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        c.backward()


def test_sgd_loop():
    fg.manual_seed(0)
    x = fg.randn(32, 3)
    true_w = fg.tensor([[1.0], [-2.0], [0.5]])
    y = x.mm(true_w)
    w = fg.zeros(3, 1, requires_grad=True)
    for _ in range(200):
        loss = ((x.mm(w) - y) ** 2).mean()
        loss.backward()
        with fg.no_grad():
            w -= 0.1 * w.grad
        w.grad.zero_()
    np.testing.assert_allclose(values(w), values(true_w), atol=1e-3)


def test_repeated_programs_reuse_the_backward_plan():
    def step():
        x = fg.rand(4, requires_grad=True)
        (x.sin() * x).sum().backward()
        return x
    step()
    before = len(engine.cached_plans())
    for _ in range(3):
        x = step()
    assert len(engine.cached_plans()) == before
    data = x.detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), np.cos(data) * data + np.sin(data), rtol=1e-6)


# ---------------------------------------------------------------- creation, dtypes, printing

def test_dtypes_and_default_types():
    assert fg.tensor([1, 2, 3]).dtype == fg.int64
    assert fg.tensor([1.0, 2]).dtype == fg.float32 == fg.float
    assert fg.tensor([True]).dtype == fg.bool
    assert fg.tensor(np.ones(2)).dtype == fg.float64 == fg.double
    assert fg.Tensor([1, 2, 3]).dtype == fg.float32 and fg.FloatTensor([1]).dtype == fg.float32
    assert fg.DoubleTensor([1]).dtype == fg.float64
    assert repr(fg.float32) == "fusegrad.float32" and str(fg.float64) == "fusegrad.float64"
    assert fg.float32 == np.float32 and fg.float32 == np.dtype("float32") and fg.float32 != fg.float64
    assert np.zeros(2, fg.float64).dtype == np.float64
    assert fg.ones(2, dtype=fg.float64).dtype == fg.float64
    assert fg.ones(2, dtype=np.float64).dtype == fg.float64
    assert isinstance(fg.ones(2), fg.FloatTensor) and not isinstance(fg.ones(2), fg.DoubleTensor)
    assert isinstance(fg.ones(2), Variable) and isinstance(fg.ones(2), fg.Tensor)


def test_legacy_constructor():
    t = fg.Tensor(2, 3)
    assert t.shape == (2, 3) and t.dtype == fg.float32 and values(t) == [[0.0] * 3] * 2
    assert values(fg.Tensor([[1, 2], [3, 4]])) == [[1.0, 2.0], [3.0, 4.0]]
    assert fg.Tensor().shape == (0,)
    assert fg.Tensor(fg.Size([2])).shape == (2,)


def test_creation_functions():
    assert values(fg.arange(4)) == [0, 1, 2, 3] and fg.arange(4).dtype == fg.int64
    assert values(fg.arange(0, 1, 0.25)) == [0.0, 0.25, 0.5, 0.75]
    assert fg.arange(0, 1, 0.25).dtype == fg.float32
    assert values(fg.ones_like(fg.zeros(2))) == [1.0, 1.0]
    assert fg.zeros_like(fg.ones(2, dtype=fg.float64)).dtype == fg.float64
    assert fg.full((2,), 7).dtype == fg.int64 and values(fg.full((2,), 7.0)) == [7.0, 7.0]
    fg.manual_seed(5)
    a = fg.rand(3, 2)
    fg.manual_seed(5)
    assert values(fg.rand(3, 2)) == values(a) and a.dtype == fg.float32
    assert 0 <= a.min().item() and a.max().item() < 1
    assert fg.randn(2, 2, requires_grad=True).requires_grad


@pytest.mark.parametrize("call", [
    lambda: fg.ones(2, out=fg.zeros(2)),
    lambda: fg.zeros(2, out=fg.zeros(2)),
    lambda: fg.empty(2, out=fg.zeros(2)),
    lambda: fg.rand(2, generator=fg.manual_seed(1)),
    lambda: fg.randn(2, generator=fg.manual_seed(1)),
], ids=["ones", "zeros", "empty", "rand", "randn"])
def test_out_and_generator_raise_instead_of_being_ignored(call):
    with pytest.raises(fg.FusegradError, match=r"(out|generator)= is not supported"):
        call()


def test_legacy_type_names_come_from_one_table():
    assert fg.ones(2).type() == "fusegrad.FloatTensor"
    assert fg.ones(2, dtype=fg.uint8).type() == "fusegrad.ByteTensor"
    assert fg.ones(2).type("fusegrad.ByteTensor").dtype == fg.uint8
    assert isinstance(fg.ones(2, dtype=fg.uint8), fg.ByteTensor)


def test_a_subclass_of_tensor_does_not_change_what_ops_return():
    class Mine(fg.Tensor):
        pass

    mine = Mine([1.0, 2.0])
    assert type(mine) is Mine and type(fg.ones(2)) is fg.Tensor and type(mine + 1) is fg.Tensor


def test_size():
    t = fg.ones(5, 3)
    assert repr(t.size()) == "fusegrad.Size([5, 3])" == str(t.shape)
    assert t.size() == (5, 3) and t.size(1) == 3 and t.dim() == 2 and t.numel() == 15


@pytest.mark.parametrize("make, expected", [
    (lambda: fg.ones(2, 2, requires_grad=True),
     "tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)"),
    (lambda: fg.tensor([1, 2, 3]), "tensor([1, 2, 3])"),
    (lambda: fg.tensor([1.5, -2.0]), "tensor([ 1.5000, -2.0000])"),
    (lambda: fg.tensor([1e-5, 1.0]), "tensor([1.0000e-05, 1.0000e+00])"),
    (lambda: fg.tensor([1.0, 2.0], dtype=fg.float64), "tensor([1., 2.], dtype=fusegrad.float64)"),
    (lambda: fg.tensor([1, 2], dtype=fg.int32), "tensor([1, 2], dtype=fusegrad.int32)"),
    (lambda: fg.tensor([True, False]), "tensor([ True, False])"),
    (lambda: fg.tensor(27.0, requires_grad=True).mul(1), "tensor(27., grad_fn=<MulBackward0>)"),
    (lambda: fg.tensor([float("nan"), 1.0, float("inf")]), "tensor([nan, 1., inf])"),
    (lambda: fg.zeros(0, 3), "tensor([], size=(0, 3))"),
    (lambda: fg.arange(2000.0),
     "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n        1.9990e+03])"),
])
def test_repr_as_pytorch(make, expected):
    assert repr(make()) == expected


def test_summarized_matrix_repr():
    t = fg.arange(40 * 50).reshape(40, 50)
    expected = ("tensor([[   0,    1,    2,  ...,   47,   48,   49],\n"
                "        [  50,   51,   52,  ...,   97,   98,   99],\n"
                "        [ 100,  101,  102,  ...,  147,  148,  149],\n"
                "        ...,\n"
                "        [1850, 1851, 1852,  ..., 1897, 1898, 1899],\n"
                "        [1900, 1901, 1902,  ..., 1947, 1948, 1949],\n"
                "        [1950, 1951, 1952,  ..., 1997, 1998, 1999]])")
    assert repr(t) == expected


def test_format_and_str():
    t = fg.tensor(2.5)
    assert f"{t:.1f}" == "2.5" and str(t) == "tensor(2.5000)"
    assert "{0}".format(fg.ones(1)) == "tensor([1.])"


# ---------------------------------------------------------------- devices

def test_cuda_unavailable_raises_like_pytorch():
    assert isinstance(fg.cuda.is_available(), bool)
    t = fg.ones(2)
    assert t.device == "cpu" and repr(t.device) == "device(type='cpu')"
    assert t.cpu() is t and t.to("cpu") is t
    if not fg.cuda.is_available():
        with pytest.raises(AssertionError, match="fusegrad: CUDA is not available"):
            t.cuda()
        with pytest.raises(AssertionError, match="CUDA is not available"):
            t.to("cuda")
    assert t.to(fg.float64).dtype == fg.float64


def test_one_cuda_check_for_eager_tensors_and_compile_grad(monkeypatch):
    from fusegrad.runtime import devices
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    for attempt in (lambda: fg.ones(2).cuda(), lambda: fg.compile_grad(lambda x: x, device="cuda")):
        with pytest.raises(AssertionError, match="fusegrad: CUDA is not available") as caught:
            attempt()
        assert isinstance(caught.value, fg.FusegradError)


# Eager CUDA tensors hold device memory now (issue 13): what they show and do is
# tested on Numba's CUDA simulator, in tests/runtime/test_cuda_resident.py.


# ---------------------------------------------------------------- comparisons

def test_eq_and_ne_are_elementwise_and_hashing_is_by_identity():
    t = fg.tensor([1.0, 2.0, 0.0])
    a = np.array([1.0, 0.0, 0.0])
    for result, expected in [(t == a, [True, False, True]), (a == t, [True, False, True]),
                             (t != a, [False, True, False]), (a != t, [False, True, False]),
                             (t != 0, [True, True, False]), (0 == t, [False, False, True]),
                             (np.float64(2.0) == t, [False, True, False]),
                             ([1.0, 1.0, 1.0] == t, [True, False, False])]:
        assert isinstance(result, fg.Tensor) and values(result) == expected
    # Neither a number nor an array: Python's identity fallback, as in PyTorch.
    assert (t == None) is False and (t != None) is True  # noqa: E711
    assert (t == "t") is False
    u = fg.tensor([1.0, 2.0, 0.0])
    assert {t: "t", u: "u"}[u] == "u" and len({t, u}) == 2


# ---------------------------------------------------------------- with the compiled path

def test_eager_tensors_as_compile_grad_arguments():
    @fg.compile_grad
    def loss(x, w):
        return (fg.tanh(x @ w) ** 2).mean()
    fg.manual_seed(2)
    x = fg.randn(4, 3)
    w = fg.randn(3, 2, requires_grad=True)
    value, (gx, gw) = loss(x, w)
    x2, w2 = x.detach().requires_grad_(), w.detach().requires_grad_()
    eager = (fg.tanh(x2 @ w2) ** 2).mean()
    eager.backward()
    assert abs(float(value) - eager.item()) < 1e-6
    np.testing.assert_allclose(gx, x2.grad.numpy(), atol=1e-6)
    np.testing.assert_allclose(gw, w2.grad.numpy(), atol=1e-6)


def test_eager_tensors_inside_traced_code_are_constants():
    scale = fg.tensor([1.0, 2.0, 3.0])

    @fg.compile_grad
    def loss(x):
        return (x * scale).sum()
    value, (g,) = loss(np.ones(3, np.float32))
    assert float(value) == 6.0 and g.tolist() == [1.0, 2.0, 3.0]


def test_large_backward_is_compiled_once_it_pays(monkeypatch):
    import fusegrad.runtime
    # A cheaper compiler than Numba's, so that a few repeats make compiling pay.
    monkeypatch.setattr(fusegrad.runtime, "COMPILE_KERNEL_SECONDS", 0.01)
    n = engine.COMPILE_MIN_ELEMENTS
    data = np.linspace(-2, 2, n, dtype=np.float32)
    x = fg.from_numpy(data.copy()).requires_grad_()
    for run in range(1, 100):
        y = (x.tanh() * x + x ** 2).sum()
        y.backward()
        plan = next(p for p in reversed(engine.cached_plans()) if p.runs)
        if plan.executable is not None:
            break
        assert plan.runs * plan.interpret_seconds < plan.compile_seconds
    assert plan.runs == run > 1, "a repeated backward over large tensors should compile"
    assert (run - 1) * plan.interpret_seconds < plan.compile_seconds <= run * plan.interpret_seconds
    x.grad = None
    (x.tanh() * x + x ** 2).sum().backward()
    d = data.astype(np.float64)
    expected = (1 - np.tanh(d) ** 2) * d + np.tanh(d) + 2 * d
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_view_with_minus_one():
    x = fg.ones(2, 3, requires_grad=True)
    y = x.view(-1)
    assert y.shape == (6,) and y.grad_fn.name() == "ViewBackward0"


def test_assignment_into_a_recorded_tensor_is_recorded():
    x = fg.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        x[0] = 2.0  # PyTorch's error for leaves
    y = x * 2
    y[0] = 5.0  # recorded, as PyTorch does (issue 11, item 3)
    assert y.tolist() == [5.0, 2.0, 2.0] and y.grad_fn.name() == "CopySlices"
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 2.0, 2.0]
    with fg.no_grad():
        x[0] = 2.0
    assert x.tolist() == [2.0, 1.0, 1.0]


def test_clamp_passes_the_whole_gradient_at_its_bounds():
    # PyTorch's clamp: the gradient reaches x wherever min <= x <= max (maximum and
    # minimum would split a tie in two); NaN stays NaN.
    x = fg.tensor([0.6, -0.7, 0.0, 1.0, -2.0], requires_grad=True)
    y = x.clamp(-0.7, 0.6)
    y.sum().backward()
    assert y.tolist() == pytest.approx([0.6, -0.7, 0.0, 0.6, -0.7])
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert np.isnan(fg.tensor([float("nan")]).clamp(0.0, 1.0).numpy()).all()


def test_numbers_with_masks_and_sums_of_small_integers_promote_as_numpy():
    mask = np.array([True, False, True])
    doubled = fg.tensor(mask) * 2
    assert doubled.dtype == fg.int64 and doubled.tolist() == [2, 0, 2]
    small = np.full((40, 2), 5, np.int8)
    total = fg.tensor(small).sum(0)
    assert total.dtype == fg.int64 and total.tolist() == small.sum(0).tolist() == [200, 200]
    assert fg.tensor(small.astype(np.uint8)).sum().item() == 400


def test_a_repeated_softmax_over_large_tensors_runs_fused_kernels(monkeypatch):
    # An op graph of several elementwise and reduction nodes compiles once its runs
    # have cost what compiling would: here at once (a free compiler, a low bar).
    import fusegrad.runtime
    from fusegrad.tracer import executor
    compiled = []
    monkeypatch.setattr(executor, "compile_graph",
                        lambda graph, real=executor.compile_graph: compiled.append(graph) or real(graph))
    monkeypatch.setattr(engine, "COMPILE_MIN_ELEMENTS", 64)
    monkeypatch.setattr(fusegrad.runtime, "COMPILE_KERNEL_SECONDS", 0.0)
    monkeypatch.setattr(fusegrad.runtime, "COMPILE_NODE_SECONDS", 0.0)
    monkeypatch.setattr(fusegrad.runtime, "LOAD_KERNEL_SECONDS", 0.0)
    data = np.random.default_rng(5).standard_normal((13, 11)).astype(np.float32)
    x = fg.from_numpy(data.copy()).requires_grad_()
    d = data.astype(np.float64)
    expected = np.exp(d - d.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    results = [fg.softmax(x, dim=1) for _ in range(4)]
    assert len(compiled) == 1, "the third run of a large softmax should compile it"
    for result in results:
        np.testing.assert_allclose(result.detach().numpy(), expected, rtol=1e-6, atol=1e-7)
    results[-1].detach().numpy()[...] = 0   # each result is an array of its own
    np.testing.assert_allclose(results[-2].detach().numpy(), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fg.softmax(x, dim=1).detach().numpy(), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(x.detach().numpy(), data)
    w = np.linspace(-1, 1, 11)
    (fg.softmax(x, dim=1) * fg.from_numpy(w.astype(np.float32))).sum().backward()
    gy = np.broadcast_to(w, d.shape)
    np.testing.assert_allclose(x.grad.numpy(), expected * (gy - (gy * expected).sum(1, keepdims=True)),
                               rtol=1e-5, atol=1e-6)


def test_float16_repeated_backward_and_ops_stay_on_the_interpreter(monkeypatch):
    # Numba has no float16 array: a repeated float16 backward (or op graph) whose
    # compiling would pay stays interpreted instead of failing at its Nth run.
    import fusegrad.runtime
    for name in ("COMPILE_KERNEL_SECONDS", "COMPILE_NODE_SECONDS", "LOAD_KERNEL_SECONDS"):
        monkeypatch.setattr(fusegrad.runtime, name, 0.0)
    monkeypatch.setattr(engine, "COMPILE_MIN_ELEMENTS", 16)
    data = np.random.default_rng(6).standard_normal((9, 7)).astype(np.float16)
    x = fg.from_numpy(data.copy()).requires_grad_()
    for _ in range(4):
        x.grad = None
        (x.tanh() * x).sum().backward()
        y = fg.softmax(x.detach(), dim=1)
    d = data.astype(np.float64)
    np.testing.assert_allclose(x.grad.numpy().astype(np.float64), np.tanh(d) + d * (1 - np.tanh(d) ** 2),
                               rtol=1e-2, atol=1e-2)
    expected = np.exp(d - d.max(1, keepdims=True))
    np.testing.assert_allclose(y.numpy(), expected / expected.sum(1, keepdims=True), rtol=1e-2, atol=1e-3)
    assert y.dtype == fg.float16
    plan = next(p for p in reversed(engine.cached_plans()) if p.runs)
    assert plan.executable is None and not plan.compilable
