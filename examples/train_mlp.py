"""Train a small MLP by plain SGD on synthetic regression data with compile_grad.

One trace and one compilation; every step after the first reuses the kernels.

    python examples/train_mlp.py                 # on the CPU
    python examples/train_mlp.py --device cuda   # on the GPU (pip install ".[cuda]")

With ``--device cuda`` the data and the parameters are put on the GPU once, as
Numba device arrays; each step passes them to the compiled function, which returns
the loss and the gradients as device arrays too, and a small CUDA kernel updates
the parameters in place. Nothing crosses the bus per step but the scalar loss, and
only on the steps that print it (CuPy or torch CUDA arrays work the same way).
"""
import argparse
import time

import numpy as np

import fusegrad as fg


def mlp_loss(x, w1, b1, w2, b2, y):
    h = fg.tanh(x @ w1 + b1)
    return ((h @ w2 + b2 - y) ** 2).mean()


loss = fg.compile_grad(mlp_loss, wrt=(1, 2, 3, 4))


def data(rng, batch: int, hidden: int):
    x = rng.standard_normal((batch, 8), dtype=np.float32)
    teacher = rng.standard_normal((8, 1), dtype=np.float32)
    y = np.sin(x @ teacher) + 0.05 * rng.standard_normal((batch, 1), dtype=np.float32)
    params = [rng.standard_normal((8, hidden), dtype=np.float32) / 8 ** 0.5,
              np.zeros(hidden, np.float32),
              rng.standard_normal((hidden, 1), dtype=np.float32) / hidden ** 0.5,
              np.zeros(1, np.float32)]
    return x, y, params


# numba.cuda, bound by sgd_on_device: a CPU run never imports it. A module global,
# not a local name, because Numba's CUDA simulator swaps the module's globals.
cuda = None


def _sgd(p, g, lr):
    i = cuda.grid(1)
    if i < p.shape[0]:
        p[i] -= lr * g[i]


def sgd_on_device():
    """p -= lr * g on the GPU, in place, one thread per element (any shape: both
    arrays are C-contiguous, so their flat views are taken)."""
    global cuda
    from numba import cuda
    update = cuda.jit(_sgd)

    def step(params, grads, lr):
        for p, g in zip(params, grads):
            update[-(-p.size // 128), 128](p.reshape(p.size), g.reshape(g.size), np.float32(lr))
    return step


def main(steps: int = 300, lr: float = 0.1, device: str = "cpu", batch: int = 512,
         hidden: int = 32, every: int = 50) -> None:
    rng = np.random.default_rng(0)
    x, y, params = data(rng, batch, hidden)
    if device == "cuda":
        update = sgd_on_device()
        f = fg.compile_grad(mlp_loss, wrt=(1, 2, 3, 4), device="cuda")
        x, y = cuda.to_device(x), cuda.to_device(y)          # copied once, before training
        params = [cuda.to_device(p) for p in params]
    else:
        f = loss
    began = time.perf_counter()
    for step in range(steps + 1):
        value, grads = f(x, *params, y)
        if step % every == 0:
            # The one copy to the host per step, and only on printing steps.
            scalar = value.copy_to_host() if device == "cuda" else value
            print(f"step {step:4d}  loss {float(scalar):.5f}")
        if device == "cuda":
            update(params, grads, lr)
        else:
            params = [p - lr * g for p, g in zip(params, grads)]
    elapsed = time.perf_counter() - began
    print(f"{steps} steps on {device} in {elapsed:.2f} s (first step includes tracing and compilation)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=300)
    main(**vars(parser.parse_args()))
