"""The executable's generated runner (issue 12, small calls) does what running its
steps one by one does: the same arrays, bit for bit, never an argument handed back,
for kernels, library calls (a matrix product) and a scan's compiled body."""
from __future__ import annotations

import numpy as np

import fusegrad as fg
from fusegrad.runtime import Executable


def _poly(x, y):
    return (x ** 2 + 3 * y ** 2).sum()


def _mlp(x, w, b):
    return (fg.tanh(x @ w + b) ** 2).mean()


def _rnn(w, xs, h0):
    def step(h, x):
        h = fg.tanh(h @ w + x)
        return h, h.sum()
    h, ys = fg.scan(step, h0, xs)
    return (ys * ys).sum() + h.sum()


POLY, MLP, RNN = fg.compile_grad(_poly), fg.compile_grad(_mlp), fg.compile_grad(_rnn)
RNG = np.random.default_rng(3)


def _same_both_ways(executable: Executable, arrays: list[np.ndarray]) -> None:
    generated = executable(arrays)
    stepwise = executable.run_steps(arrays)
    assert len(generated) == len(stepwise)
    for got, want in zip(generated, stepwise):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert not any(np.shares_memory(got, a) for a in arrays)


def _check(compiled, *args) -> Executable:
    traced = compiled.trace(*args)
    _same_both_ways(traced.executable, compiled.leaves(*args))
    return traced.executable


def test_kernels_only():
    x, y = RNG.standard_normal(40), RNG.standard_normal(40)
    executable = _check(POLY, x, y)
    assert "launch" in executable._runner.source   # the kernel is launched from it


def test_library_calls_between_kernels():
    x, w, b = RNG.standard_normal((4, 3)), RNG.standard_normal((3, 2)), RNG.standard_normal(2)
    executable = _check(MLP, x, w, b)
    assert ".run(env" in executable._runner.source   # the matrix products run as steps


def test_scan_body_runs_through_its_own_runner():
    w = RNG.standard_normal((3, 3)) * 0.5
    executable = _check(RNN, w, RNG.standard_normal((4, 1, 3)), RNG.standard_normal((1, 3)))
    bodies = [s.body for s in executable.steps if hasattr(s, "body")]
    assert bodies and all(b._runner is not None and b._runner.steps is b.steps for b in bodies)


def test_arguments_the_kernel_cannot_take_as_they_are():
    # Not contiguous, read-only, 0-d: copied or reshaped for the kernel, never written.
    base = RNG.standard_normal(80)
    readonly = RNG.standard_normal(40)
    readonly.flags.writeable = False
    _same_both_ways(POLY.trace(base[:40], readonly).executable, [base[::2], readonly])
    # 0-d arguments that are also gradients (d(s*v)/ds = v): handed back as they are
    # (0-d), not as the kernel took them (shape (1,)).
    product = fg.compile_grad(lambda s, v: (s * v).sum())
    _check(product, np.array(2.0), np.array(3.0))
