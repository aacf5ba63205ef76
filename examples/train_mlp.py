"""Train a small MLP by plain SGD on synthetic regression data with compile_grad.

One trace and one compilation; every step after the first reuses the kernels.
"""
import time

import numpy as np

import fusegrad as fg


@fg.compile_grad(wrt=(1, 2, 3, 4))
def loss(x, w1, b1, w2, b2, y):
    h = fg.tanh(x @ w1 + b1)
    return ((h @ w2 + b2 - y) ** 2).mean()


def main(steps: int = 300, lr: float = 0.1) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 8), dtype=np.float32)
    teacher = rng.standard_normal((8, 1), dtype=np.float32)
    y = np.sin(x @ teacher) + 0.05 * rng.standard_normal((512, 1), dtype=np.float32)
    params = [rng.standard_normal((8, 32), dtype=np.float32) / 8 ** 0.5,
              np.zeros(32, np.float32),
              rng.standard_normal((32, 1), dtype=np.float32) / 32 ** 0.5,
              np.zeros(1, np.float32)]
    began = time.perf_counter()
    for step in range(steps + 1):
        value, grads = loss(x, *params, y)
        if step % 50 == 0:
            print(f"step {step:4d}  loss {float(value):.5f}")
        params = [p - lr * g for p, g in zip(params, grads)]
    elapsed = time.perf_counter() - began
    print(f"{steps} steps in {elapsed:.2f} s (first step includes tracing and compilation)")


if __name__ == "__main__":
    main()
