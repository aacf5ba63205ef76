"""Train a small MLP by SGD on a dask array, data-parallel over a LocalCluster.

The loss is the same `@fg.compile_grad` function as on NumPy (examples/train_mlp.py).
Called with dask arrays chunked along the batch axis, each chunk's forward and
backward runs as one task on a worker (fused kernels, compiled once per worker); the
chunks' parts of the loss and of the parameter gradients are added by Dask's tree
reduction. The data are made on the workers and stay there (persisted).

    python examples/train_mlp_dask.py                      # 2 worker processes
    python examples/train_mlp_dask.py --workers 0          # Dask's threads, no cluster
    python examples/train_mlp_dask.py --rows 400000 --chunk 50000 --progress
"""
import argparse
import contextlib
import time

import dask
import dask.array as da
import numpy as np

import fusegrad as fg


@fg.compile_grad(wrt=(1, 2, 3, 4))
def loss(x, w1, b1, w2, b2, y):
    h = fg.tanh(x @ w1 + b1)
    return ((h @ w2 + b2 - y) ** 2).mean()


def make_data(rows: int, chunk: int, features: int = 8):
    """A regression problem generated chunk by chunk where the chunks live."""
    rng = da.random.default_rng(0)
    x = rng.standard_normal((rows, features), chunks=(chunk, features), dtype=np.float32)
    teacher = np.random.default_rng(1).standard_normal((features, 1)).astype(np.float32)
    noise = rng.standard_normal((rows, 1), chunks=(chunk, 1), dtype=np.float32)
    y = da.sin(x @ teacher) + 0.05 * noise
    return dask.persist(x, y)


def train(x, y, steps: int, lr: float, progress: bool, hidden: int = 32) -> list[float]:
    rng = np.random.default_rng(0)
    features = x.shape[1]
    params = [rng.standard_normal((features, hidden), dtype=np.float32) / features ** 0.5,
              np.zeros(hidden, np.float32),
              rng.standard_normal((hidden, 1), dtype=np.float32) / hidden ** 0.5,
              np.zeros(1, np.float32)]
    losses = []
    bar = fg.dask_progress() if progress else contextlib.nullcontext()
    began = time.perf_counter()
    for step in range(steps + 1):
        with bar if step == steps else contextlib.nullcontext():   # a bar on the last step
            value, grads = loss(x, *params, y)
        losses.append(float(value))
        if step % max(1, steps // 5) == 0 or step == steps:
            print(f"step {step:4d}  loss {float(value):.5f}")
        params = [p - lr * g for p, g in zip(params, grads)]
    elapsed = time.perf_counter() - began
    print(f"{steps} steps on {x.shape[0]} rows in {x.numblocks[0]} chunks: "
          f"{1000 * elapsed / (steps + 1):.1f} ms per step (the first compiles)")
    return losses


def main(rows: int = 20000, chunk: int = 6000, steps: int = 20, lr: float = 0.2,
         workers: int = 2, progress: bool = False) -> list[float]:
    if workers:
        from dask.distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        context = Client(cluster)
    else:
        context = dask.config.set(scheduler="threads")
    with context:
        x, y = make_data(rows, chunk)
        losses = train(x, y, steps, lr, progress)
    if workers:
        cluster.close()
    print(f"loss went from {losses[0]:.4f} to {losses[-1]:.4f}")
    return losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=6000, help="rows per chunk")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of a LocalCluster; 0: Dask's threads")
    parser.add_argument("--progress", action="store_true", help="a progress bar")
    options = parser.parse_args()
    main(options.rows, options.chunk, options.steps, workers=options.workers,
         progress=options.progress)
