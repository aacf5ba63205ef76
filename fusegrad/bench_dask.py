"""`python -m fusegrad bench --dask`: a data-parallel step on Dask against one process.

The workload is W3's loss (an MLP, mean squared error), narrower than W3's so that
chunks of 10^6 rows fit a laptop: X is (chunks * rows, 32), 64 hidden units, 8
outputs; gradients with respect to the parameters only, as in training. The data
are generated on the workers and persisted there. Timed, alternating, each repeat:

    one process      compile_grad on the NumPy arrays of the whole batch
    1 worker         the same call on the dask arrays, a LocalCluster of one worker
                     process using every core (Numba and BLAS threads)
    2 workers        two worker processes, the cores split between them

The per-chunk overhead is (1 worker - one process) / chunks: what running a chunk as
a Dask task adds (scheduling, shipping parameters and gradients, adding the parts).
"""
from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any, Callable

import numpy as np

FEATURES, HIDDEN, OUTPUTS = 32, 64, 8


def _threads_env(threads: int) -> dict[str, str]:
    # Dask's nannies start workers with one BLAS/OpenMP thread; a worker owning cores
    # gets them back, so it competes on the same terms as the single process.
    value = str(threads)
    return {"OMP_NUM_THREADS": value, "OPENBLAS_NUM_THREADS": value, "MKL_NUM_THREADS": value,
            "NUMBA_NUM_THREADS": value}


def _parameters() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [(rng.standard_normal((FEATURES, HIDDEN)) / FEATURES ** 0.5).astype(np.float32),
            np.zeros(HIDDEN, np.float32),
            (rng.standard_normal((HIDDEN, OUTPUTS)) / HIDDEN ** 0.5).astype(np.float32),
            np.zeros(OUTPUTS, np.float32)]


def _data(rows: int, chunks: int) -> tuple[Any, Any]:
    import dask.array as da
    rng = da.random.default_rng(0)
    shape = (rows * chunks,)
    x = rng.standard_normal(shape + (FEATURES,), chunks=(rows, FEATURES), dtype=np.float32)
    y = rng.standard_normal(shape + (OUTPUTS,), chunks=(rows, OUTPUTS), dtype=np.float32)
    return x, y


def run(rows: int, chunks: int = 2, repeat: int = 5, json_path: str | None = None) -> int:
    import dask
    from distributed import Client, LocalCluster

    import fusegrad as fg
    from fusegrad.bench_workloads import mlp_loss

    loss = fg.compile_grad(mlp_loss(fg), wrt=(1, 2, 3, 4))
    params = _parameters()
    cores = os.cpu_count() or 1
    print(f"W3 mlp (narrow: {FEATURES} features, {HIDDEN} hidden, {OUTPUTS} outputs), float32: "
          f"{chunks} chunks of {rows} rows, {cores} cores; medians of {repeat}, alternating")
    setups: dict[str, Callable[[], Any]] = {}
    clusters, clients = [], []
    x_np = y_np = None
    for workers in (1, 2):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40,
                               env=_threads_env(max(1, cores // workers)))
        client = Client(cluster, set_as_default=False)
        clusters.append(cluster)
        clients.append(client)
        with client.as_current():
            x, y = dask.persist(*_data(rows, chunks))
            if x_np is None:
                x_np, y_np = dask.compute(x, y)
        setups[f"{workers} worker{'s' * (workers > 1)}"] = _on(client, loss, x, params, y)
    setups = {"one process": lambda: loss(x_np, *params, y_np), **setups}
    try:
        results = _alternate(setups, repeat)
    finally:
        for client, cluster in zip(clients, clusters):
            client.close()
            cluster.close()
    _show(results, chunks)
    if json_path:
        with open(json_path, "w") as out:
            json.dump({"rows_per_chunk": rows, "chunks": chunks, "seconds": results}, out, indent=1)
        print(f"wrote {json_path}")
    return 0


def _on(client: Any, loss: Any, x: Any, params: list, y: Any) -> Callable[[], Any]:
    def step():
        with client.as_current():
            return loss(x, *params, y)
    return step


def _alternate(setups: dict, repeat: int) -> dict[str, list[float]]:
    """Seconds per call of each setup, after one untimed call each (compiling), the
    setups taking turns so that a busy machine slows them alike."""
    reference = None
    for name, step in setups.items():
        value, _ = step()
        if reference is None:
            reference = float(value)
        elif not np.isclose(float(value), reference, rtol=1e-4):
            raise AssertionError(f"{name}: loss {float(value)} != {reference} of one process")
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(repeat):
        for name, step in setups.items():
            began = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - began)
    return times


def _show(results: dict[str, list[float]], chunks: int) -> None:
    single = statistics.median(results["one process"])
    print(f"{'setup':<12} {'median ms':>10} {'range ms':>17} {'vs one process':>15} "
          f"{'per chunk ms':>13}")
    for name, seconds in results.items():
        median = statistics.median(seconds)
        extra = "" if name == "one process" else f"{1000 * (median - single) / chunks:+13.1f}"
        print(f"{name:<12} {1000 * median:>10.1f} {1000 * min(seconds):>8.1f}-"
              f"{1000 * max(seconds):<8.1f} {median / single:>14.2f}x {extra}")
