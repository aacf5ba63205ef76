"""compile_grad with dask.array arguments (issue 14): the same numbers as the NumPy
path, on a LocalCluster of two worker processes, including a worker that dies.

One cluster for the module (starting one costs seconds); tiny shapes, uneven last
chunks. The non-separable errors need no cluster (they are raised before any task)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fusegrad as fg  # noqa: E402
from fusegrad.bench_workloads import cross_entropy_loss, mlp_loss  # noqa: E402
from fusegrad.ir.batch import BatchError  # noqa: E402

CHUNKS = (4, 4, 3)      # 11 rows: the last chunk is uneven
ROWS = sum(CHUNKS)

mlp = fg.compile_grad(mlp_loss(fg))
cross_entropy = fg.compile_grad(cross_entropy_loss(fg))


@fg.compile_grad
def ridge(X, w, b, y):
    """A mean over the batch of per-row sums, plus a term without rows (counted once)."""
    r = X @ w + b - y
    return (r ** 2).sum(axis=1).mean() + 0.5 * (w ** 2).sum()


@pytest.fixture(scope="module")
def client():
    import cloudpickle
    # The workers cannot import this test module: ship its functions by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=":0", silence_logs=40)
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _rng():
    return np.random.default_rng(14)


def mlp_arrays(dtype):
    rng = _rng()
    return [rng.standard_normal(s).astype(dtype) * k for s, k in
            (((ROWS, 3), 1), ((3, 5), 0.6), ((5,), 0.1), ((5, 2), 0.5), ((2,), 0.1), ((ROWS, 2), 1))]


def ridge_arrays(dtype):
    rng = _rng()
    return [rng.standard_normal(s).astype(dtype) for s in ((ROWS, 3), (3, 2), (2,), (ROWS, 2))]


def chunked(array):
    return da.from_array(array, chunks=(CHUNKS,) + array.shape[1:])


def check(f, arrays, batch, assert_close, dtype):
    """`f` on dask arrays at the positions `batch` equals `f` on NumPy arrays."""
    value, grads = f(*arrays)
    args = [chunked(a) if i in batch else a for i, a in enumerate(arrays)]
    dvalue, dgrads = f(*args)
    assert isinstance(dvalue, np.ndarray) and dvalue.shape == ()     # as on NumPy
    assert_close(dvalue, value, dtype, what="value")
    for i, (g, dg) in enumerate(zip(grads, dgrads)):
        if i in batch:
            assert isinstance(dg, da.Array) and dg.chunks[0] == CHUNKS
            dg = dg.compute()
        else:
            assert isinstance(dg, np.ndarray)
        assert_close(dg, g, dtype, what=f"gradient {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_matches_numpy(client, assert_close, dtype):
    check(mlp, mlp_arrays(dtype), {0, 5}, assert_close, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_matches_numpy(client, assert_close, dtype):
    rng = _rng()
    logits = rng.standard_normal((ROWS, 6)).astype(dtype)
    targets = np.eye(6, dtype=dtype)[rng.integers(0, 6, ROWS)]
    check(cross_entropy, [logits, targets], {0, 1}, assert_close, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_loss_with_a_parameter_term_matches_numpy(client, assert_close, dtype):
    X, w, b, y = ridge_arrays(dtype)
    check(ridge, [X, w, b, y], {0, 3}, assert_close, dtype)


def _programs():
    from fusegrad.tracer import distributed as where
    return len(where._EXECUTABLES)


def _forget_programs():
    from fusegrad.tracer import distributed as where
    where._EXECUTABLES.clear()


@fg.compile_grad(wrt="params")
def ridge_tree(batch, params):
    r = batch["x"] @ params["w"] + params["b"] - batch["y"]
    return (r ** 2).sum(axis=1).mean() + 0.5 * (params["w"] ** 2).sum()


def test_pytrees_and_keywords(client, assert_close):
    X, w, b, y = ridge_arrays(np.float64)
    value, grads = ridge_tree({"x": X, "y": y}, params={"w": w, "b": b})
    dvalue, dgrads = ridge_tree({"x": chunked(X), "y": chunked(y)}, params={"w": w, "b": b})
    assert_close(dvalue, value, np.float64)
    assert sorted(dgrads) == ["b", "w"]
    for name in grads:
        assert_close(dgrads[name], grads[name], np.float64, what=name)


@fg.compile_grad
def labelled(X, w, labels):
    """Cross-entropy with integer labels (a batch-chunked integer argument)."""
    logp = fg.log_softmax(X @ w, axis=1)
    return -fg.take_along_axis(logp, labels[:, None], axis=1).mean()


def test_integer_labels_chunked_like_the_rows(client, assert_close):
    rng = _rng()
    X, w = rng.standard_normal((ROWS, 3)), rng.standard_normal((3, 4))
    labels = rng.integers(0, 4, ROWS)
    value, (gX, gw) = labelled(X, w, labels)
    dvalue, (dgX, dgw) = labelled(chunked(X), w, chunked(labels))
    assert_close(dvalue, value, np.float64)
    assert_close(dgX.compute(), gX, np.float64)
    assert_close(dgw, gw, np.float64)


def test_workers_build_each_chunk_program_once(client):
    X, w, b, y = ridge_arrays(np.float64)
    client.run(_forget_programs)
    for _ in range(3):
        ridge(chunked(X), w, b, chunked(y))
    built = client.run(_programs)
    # Nine chunks ran; each worker built one program per chunk size (4 and 3 rows)
    # it met, and none twice.
    assert max(built.values()) <= 2 and sum(built.values()) >= 2


def _die_once(block, marker):
    """Kills the worker process running it the first time any block gets here."""
    try:
        distributed.get_worker()
    except ValueError:      # not in a worker (Dask probing the function): never die here
        return block
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return block
    os.close(fd)
    os._exit(1)


def test_a_worker_dying_mid_computation_is_retried(client, tmp_path, assert_close):
    X, w, b, y = ridge_arrays(np.float64)
    value, grads = ridge(X, w, b, y)
    marker = str(tmp_path / "died")
    dying = chunked(X).map_blocks(_die_once, marker, meta=np.empty((0, 0), X.dtype))
    dvalue, dgrads = ridge(dying, w, b, chunked(y))
    assert os.path.exists(marker)      # a worker did die
    assert_close(dvalue, value, np.float64)
    for g, dg in zip(grads, dgrads):
        assert_close(np.asarray(dg), g, np.float64)
    client.wait_for_workers(2, timeout=60)   # the nanny restarted it, for later tests


# ---------------------------------------------------------------- without a cluster

def test_chunk_programs_run_the_kernels_of_the_numpy_path():
    """A worker's chunk programs, every chunk size, are the kernels the whole batch
    compiled to (the mean's count is an argument holding the whole batch's N): in
    the process that ran the NumPy path, running chunks compiles and loads nothing."""
    from fusegrad.runtime import loader, stats
    from fusegrad.tracer import distributed as where

    arrays = mlp_arrays(np.float32)
    value, _ = mlp(*arrays)
    payload = where._payload(mlp.trace(*arrays), [0, None, None, None, None, 0], mlp)
    files = len(loader._modules)
    stats.reset()
    parts, start = [], 0
    for k, rows in enumerate(CHUNKS):
        piece = [a[start:start + rows] if i in (0, 5) else a for i, a in enumerate(arrays)]
        parts.append(where.run_chunk(payload, rows, float(k == 0), *piece))
        start += rows
    assert (stats.snapshot()["compiles"], stats.snapshot()["cache_loads"]) == (0, 0)
    assert len(loader._modules) == files
    np.testing.assert_allclose(sum(p[0] for p in parts), value, rtol=2e-6)


@fg.compile_grad
def centered(X, w):
    h = X @ w
    return ((h - h.mean(axis=0)) ** 2).sum()     # batch-norm-like: rows meet rows


@fg.compile_grad
def hardest(X, w):
    return (X @ w).max()


@fg.compile_grad
def gram(X, w):
    return ((X @ X.T) * w).sum()


@pytest.mark.parametrize("f, op", [(centered, "sub"), (hardest, "reduce_max"), (gram, "matmul")])
def test_a_loss_that_mixes_rows_is_refused(f, op):
    X = da.from_array(np.ones((6, 3)), chunks=(4, 3))
    w = np.ones((3, 2)) if f is not gram else np.ones((6, 6))
    with pytest.raises(BatchError, match=rf"(?s)not a sum of per-row terms.*{op} \(f64\[.*test_dask.py:\d+"):
        f(X, w)


def test_chunked_along_two_axes_is_refused():
    X = da.from_array(np.ones((6, 4)), chunks=(3, 2))
    with pytest.raises(ValueError, match=r"chunked along axes \[0, 1\].*rechunk"):
        ridge(X, np.ones((4, 2)), np.ones(2), np.ones((6, 2)))


def test_progress_bar_on_the_local_scheduler(capsys, assert_close):
    import dask
    X, w, b, y = ridge_arrays(np.float64)
    with dask.config.set(scheduler="threads"), fg.dask_progress():
        value, _ = ridge(chunked(X), w, b, chunked(y))
    assert "100% Completed" in capsys.readouterr().out
    assert_close(value, ridge(X, w, b, y)[0], np.float64)


def test_progress_bar_on_the_cluster(client, capsys):
    X, w, b, y = ridge_arrays(np.float64)
    with fg.dask_progress():
        ridge(chunked(X), w, b, chunked(y))
    shown = capsys.readouterr()
    assert "100% Completed" in shown.out + shown.err


def test_importing_fusegrad_imports_no_dask():
    script = textwrap.dedent("""
        import sys, numpy as np, fusegrad as fg
        from fusegrad.tracer import distributed
        assert not distributed.holds_dask(([np.ones(3)], {"w": np.ones(2)}), {})
        assert "dask" not in sys.modules and "distributed" not in sys.modules, sorted(sys.modules)
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
