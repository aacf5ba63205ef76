"""Differential tests: the same eager programs under fusegrad and PyTorch.

Skipped when torch is not installed (it is never a dependency). Each program runs
on identical inputs in both libraries; values, gradients, ``grad_fn`` names and the
printed text must agree (printing: up to the module name, and up to where a line
wraps, since ``fusegrad.float64`` is longer than ``torch.float64``).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fusegrad as fg  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")


def both(arrays, requires_grad=True):
    """The same data as torch and as fusegrad leaves."""
    t = [torch.tensor(a, requires_grad=requires_grad and a.dtype.kind == "f") for a in arrays]
    f = [fg.tensor(a, requires_grad=requires_grad and a.dtype.kind == "f") for a in arrays]
    return t, f


def same_text(a, b) -> bool:
    normal = lambda s: " ".join(s.replace("torch.", "fusegrad.").split())  # noqa: E731
    return normal(a) == normal(b)


PROGRAMS = {
    "seed-poly": lambda m, x, y: x.pow(2) + 3 * y.pow(2),
    "chain": lambda m, x, y: x ** 2 * m.exp(x) + m.sin(x) * y - m.tanh(x * y) + m.sqrt(m.abs(y) + 1),
    "div-sub": lambda m, x, y: (x - y) / (y * y + 1) - 2 / (x * x + 3),
    "sigmoid-relu": lambda m, x, y: m.sigmoid(x) * m.relu(y) + x.relu(),
    "reductions": lambda m, x, y: x.sum(0) * y.mean(0) + x.max(),
    "matmul": lambda m, x, y: x.mm(y.t()).tanh(),
    "matvec": lambda m, x, y: x.t().mv(y.sum(1)),
    "broadcast": lambda m, x, y: x * y.sum(1, keepdim=True) + y.mean(),
    "views": lambda m, x, y: x.t().reshape(12) * y.view(12) + x.T.reshape(2, 6).reshape(12),
    "log-cos": lambda m, x, y: m.log(x * x + 1) * m.cos(y),
    "pow-tensor": lambda m, x, y: (x * x + 1) ** (y * 0.5),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_program_values_gradients_and_printing(name, dtype):
    rng = np.random.default_rng(7)
    arrays = [rng.uniform(0.3, 2.0, (3, 4)).astype(dtype), rng.standard_normal((3, 4)).astype(dtype)]
    (tx, ty), (fx, fy) = both(arrays)
    program = PROGRAMS[name]
    t_out, f_out = program(torch, tx, ty), program(fg, fx, fy)
    assert f_out.grad_fn.name() == t_out.grad_fn.name()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f_out.detach().numpy(), t_out.detach().numpy(), **tol)
    seed = rng.standard_normal(tuple(t_out.shape)).astype(dtype)
    t_out.backward(torch.tensor(seed))
    f_out.backward(fg.tensor(seed))
    for t_leaf, f_leaf in ((tx, fx), (ty, fy)):
        if t_leaf.grad is None:
            assert f_leaf.grad is None
            continue
        np.testing.assert_allclose(f_leaf.grad.numpy(), t_leaf.grad.numpy(), **tol)
    if dtype == np.float64 or np.abs(t_out.detach().numpy()).min() > 1e-3:
        assert same_text(repr(f_out), repr(t_out)), (repr(f_out), repr(t_out))


REPR_CASES = [
    np.array(3.0, np.float32), np.array(7, np.int64), np.array([], np.float32),
    np.zeros((0, 3), np.float32), np.array([1.5, -2.25, 3], np.float32),
    np.array([1e-5, 1.0], np.float32), np.array([1e9, 1.0], np.float32),
    np.array([np.nan, 1, np.inf], np.float32), np.array([True, False]),
    np.array([1, 2, 3], np.int32), np.arange(2000, dtype=np.float32),
    np.arange(2000, dtype=np.int64).reshape(40, 50), np.array([-0.0, 0.0], np.float32),
    np.array([[1, -1], [100000, 2]], np.float32), np.array([0.5, 1e8], np.float32),
    np.array([[1, 2], [3, 4]], np.uint8), np.array(1e-7, np.float32),
]


@pytest.mark.parametrize("index", range(len(REPR_CASES)))
def test_repr_matches_torch(index):
    array = REPR_CASES[index]
    assert same_text(repr(fg.from_numpy(array.copy())), repr(torch.from_numpy(array.copy())))


@pytest.mark.parametrize("seed", range(4))
def test_random_arrays_print_alike(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 7, size=rng.integers(1, 4)))
    scale = 10.0 ** rng.integers(-6, 9)
    array = (rng.standard_normal(shape) * scale).astype(np.float32)
    t, f = torch.from_numpy(array.copy()), fg.from_numpy(array.copy())
    assert same_text(repr(f), repr(t))
    assert same_text(repr(f.requires_grad_() * 1), repr(t.requires_grad_() * 1))


def test_accumulation_and_autograd_grad_agree():
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    (tx, tw), (fx, fw) = both(arrays)
    for m, x, w in ((torch, tx, tw), (fg, fx, fw)):
        for _ in range(3):
            (w * x).sum().backward()
    np.testing.assert_allclose(fx.grad.numpy(), tx.grad.numpy(), rtol=1e-6)
    t_grads = torch.autograd.grad((tw * tx * tx).sum(), (tx, tw))
    f_grads = fg.autograd.grad((fw * fx * fx).sum(), (fx, fw))
    for a, b in zip(f_grads, t_grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
        assert same_text(repr(a), repr(b))


def test_error_messages_match_torch():
    def message(fn):
        try:
            fn()
        except (RuntimeError, AssertionError) as error:
            return str(error).splitlines()[0]
        return None
    cases = [
        lambda m: (m.ones(2, requires_grad=True) * 2).backward(),
        lambda m: m.tensor([1, 2], requires_grad=True),
        lambda m: m.tensor([1, 2]).requires_grad_(),
        lambda m: m.ones(2, requires_grad=True).numpy(),
        lambda m: m.ones(2, requires_grad=True).add_(1),
        lambda m: m.ones(2).sum().backward(),
        lambda m: m.ones(2).item(),
    ]
    for case in cases:
        t, f = message(lambda: case(torch)), message(lambda: case(fg))
        assert t is not None and f is not None
        assert f.replace("fusegrad", "torch") == t or t.startswith(f), (f, t)
