"""The eager API's per-op cost and a 30-step training loop, and PyTorch's beside them.

    python examples/eager_speed.py            # fusegrad, and torch when it is installed

Times are CPU seconds of this process (time.process_time), medians of repeats: on a
shared machine they move less than wall-clock time. PyTorch runs on one thread (its
default of one per core spins when the machine is busy; NumPy's small products run
on one BLAS thread here too).
"""
from __future__ import annotations

import gc
import statistics
import sys
import time

import numpy as np

import fusegrad

BATCH, FEATURES, HIDDEN, OUTPUTS = 64, 32, 64, 1
STEPS = 30


def per_call_us(fn, calls: int, repeats: int = 5) -> float:
    for _ in range(min(calls, 200)):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        start = time.process_time()
        for _ in range(calls):
            fn()
        times.append((time.process_time() - start) / calls * 1e6)
        gc.enable()
    return statistics.median(times)


def op_rows(lib, calls: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    a, b = (lib.tensor(rng.standard_normal(100).astype(np.float32)) for _ in range(2))
    ag, bg = (lib.tensor(rng.standard_normal(100).astype(np.float32), requires_grad=True)
              for _ in range(2))

    def backward():
        (ag * bg).sum().backward()

    cases = {"a + b": lambda: a + b, "a * 2.0": lambda: a * 2.0, "exp(a)": lambda: lib.exp(a),
             "a.sum()": lambda: a.sum(), "ag * bg (recorded)": lambda: ag * bg,
             "(ag * bg).sum().backward()": backward}
    return {name: per_call_us(fn, calls if "backward" not in name else calls // 5)
            for name, fn in cases.items()}


def training_step_us(lib, repeats: int) -> float:
    """One step of the classic loop: forward, backward, SGD update, zero the grads."""
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.standard_normal((BATCH, FEATURES)).astype(np.float32))
    y = lib.tensor(rng.standard_normal((BATCH, OUTPUTS)).astype(np.float32))

    def parameters():
        return [lib.tensor((rng.standard_normal(s) * 0.1).astype(np.float32), requires_grad=True)
                for s in ((FEATURES, HIDDEN), (HIDDEN,), (HIDDEN, OUTPUTS), (OUTPUTS,))]

    def train(params) -> None:
        w1, b1, w2, b2 = params
        for _ in range(STEPS):
            loss = ((lib.tanh(x @ w1 + b1) @ w2 + b2 - y) ** 2).mean()
            loss.backward()
            with lib.no_grad():
                for p in params:
                    p -= 0.01 * p.grad
                    p.grad.zero_()

    train(parameters())
    times = []
    for _ in range(repeats):
        params = parameters()
        gc.collect()
        start = time.process_time()
        train(params)
        times.append((time.process_time() - start) / STEPS * 1e6)
    return statistics.median(times)


def main(calls: int = 20000, repeats: int = 15) -> None:
    libraries = {"fusegrad": fusegrad}
    try:
        import torch
        torch.set_num_threads(1)
        libraries["torch"] = torch
    except ImportError:
        print("torch not installed: fusegrad only")
    rows = {name: op_rows(lib, calls) for name, lib in libraries.items()}
    steps = {name: training_step_us(lib, repeats) for name, lib in libraries.items()}
    names = list(libraries)
    print(f"{'us per call':30s}" + "".join(f"{n:>12s}" for n in names))
    for op in rows["fusegrad"]:
        print(f"{op:30s}" + "".join(f"{rows[n][op]:12.2f}" for n in names))
    print(f"{f'MLP training step ({STEPS} steps)':30s}" + "".join(f"{steps[n]:12.1f}" for n in names))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
