"""`python -m fusegrad bench --dask`: a data-parallel step on Dask against one process.

The workload is W3's loss (an MLP, mean squared error), narrower than W3's so that
chunks of 10^6 rows fit a laptop: X is (chunks * rows, 32), 64 hidden units, 8
outputs; gradients with respect to the parameters only, as in training. The data
are generated on the workers and persisted there. Timed, alternating, each repeat:

    one process      compile_grad on the NumPy arrays of the whole batch, timed inside
                     the 1-worker cluster's worker process (the same process settings;
                     the client process also runs the schedulers' event loops)
    by chunk         the same, called on each chunk's rows in turn (same kernels, same
                     sizes as the workers run: the baseline for Dask's own cost)
    1 worker         the same call on the dask arrays, a LocalCluster of one worker
                     process using every core (Numba and BLAS threads)
    2 workers        two worker processes, the cores split between them

The per-chunk overhead is (1 worker - by chunk) / chunks: what running a chunk as
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

    cores = os.cpu_count() or 1
    print(f"W3 mlp (narrow: {FEATURES} features, {HIDDEN} hidden, {OUTPUTS} outputs), float32: "
          f"{chunks} chunks of {rows} rows, {cores} cores; medians of {repeat}, alternating")
    params = _parameters()
    setups: dict[str, Callable[[], float]] = {}
    clusters, clients = [], []
    try:
        for workers in (1, 2):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=40,
                                   env=_threads_env(max(1, cores // workers)))
            client = Client(cluster, set_as_default=False)
            clusters.append(cluster)
            clients.append(client)
            with client.as_current():
                x, y = dask.persist(*_data(rows, chunks))
                if workers == 1:
                    setups.update(_single_process(client, x, y, params, rows))
            setups[f"{workers} worker{'s' * (workers > 1)}"] = _distributed(client, x, params, y)
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


def _single_process(client: Any, x: Any, y: Any, params: list, rows: int) -> dict:
    """The NumPy path, timed inside the one worker's process (the same process
    settings as the distributed runs, none of Dask's tasks): the whole batch, and
    chunk by chunk."""
    x_np, y_np = client.compute([x, y], sync=True)
    (worker,) = client.scheduler_info()["workers"]
    x_at, y_at, p_at = client.scatter([x_np, y_np, params], workers=[worker], broadcast=False)

    def timed(chunk: int | None) -> Callable[[], float]:
        return lambda: client.submit(_step_in_worker, x_at, y_at, p_at, chunk, pure=False,
                                     workers=[worker]).result()
    return {"one process": timed(None), "by chunk": timed(rows)}


# The NumPy-path loss in a worker process, compiled there once.
_LOSS: list = []


def _step_in_worker(x: np.ndarray, y: np.ndarray, params: list, chunk: int | None) -> float:
    if not _LOSS:
        import fusegrad as fg
        from fusegrad.bench_workloads import mlp_loss
        _LOSS.append(fg.compile_grad(mlp_loss(fg), wrt=(1, 2, 3, 4)))
    loss = _LOSS[0]
    began = time.perf_counter()
    if chunk is None:
        loss(x, *params, y)
    else:
        for i in range(0, len(x), chunk):
            loss(x[i:i + chunk], *params, y[i:i + chunk])
    return time.perf_counter() - began


def _distributed(client: Any, x: Any, params: list, y: Any) -> Callable[[], float]:
    import fusegrad as fg
    from fusegrad.bench_workloads import mlp_loss
    loss = fg.compile_grad(mlp_loss(fg), wrt=(1, 2, 3, 4))

    def step() -> float:
        with client.as_current():
            began = time.perf_counter()
            loss(x, *params, y)
            return time.perf_counter() - began
    return step


def _alternate(setups: dict, repeat: int) -> dict[str, list[float]]:
    """Seconds per step of each setup, after one untimed step each (compiling), the
    setups taking turns so that a busy machine slows them alike."""
    for step in setups.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(repeat):
        for name, step in setups.items():
            times[name].append(step())
    return times


def _show(results: dict[str, list[float]], chunks: int) -> None:
    """Medians, ranges, and each distributed setup against one process (whole batch)
    and against one process calling the compiled function chunk by chunk (the same
    kernels at the same sizes: what is left is Dask's cost, per chunk)."""
    single = statistics.median(results["one process"])
    by_chunk = statistics.median(results["by chunk"])
    print(f"{'setup':<12} {'median ms':>10} {'range ms':>17} {'vs one process':>15} "
          f"{'vs by chunk':>12} {'Dask ms per chunk':>18}")
    for name, seconds in results.items():
        median = statistics.median(seconds)
        extra = ("" if name in ("one process", "by chunk") else
                 f"{median / by_chunk:>11.2f}x {1000 * (median - by_chunk) / chunks:+18.1f}")
        print(f"{name:<12} {1000 * median:>10.1f} {1000 * min(seconds):>8.1f}-"
              f"{1000 * max(seconds):<8.1f} {median / single:>14.2f}x {extra}")
