"""fusegrad's own small matrix products run on one BLAS thread; the user's count stays."""
import threading

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.runtime import blas

threadpoolctl = pytest.importorskip("threadpoolctl")
pytestmark = pytest.mark.skipif(not blas._blas_controllers(), reason="no BLAS threadpoolctl knows")


@fg.compile_grad
def _mlp(x, w):
    return (fg.tanh(x @ w) ** 2).sum()


def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 4)), rng.standard_normal((4, 3))


@pytest.fixture
def two_threads():
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield


def _spy_matmul(monkeypatch) -> list:
    """Records the BLAS thread counts each np.matmul call runs with."""
    seen = []
    real = np.matmul

    def spy(a, b):
        seen.append(blas.thread_counts())
        return real(a, b)

    monkeypatch.setattr(np, "matmul", spy)
    return seen


def test_small_products_run_on_one_thread_and_the_count_is_put_back(two_threads, monkeypatch):
    x, w = _inputs()
    expected = _mlp(x, w)   # compiled before spying
    seen = _spy_matmul(monkeypatch)
    value, (gx, gw) = _mlp(x, w)
    assert len(seen) == 3   # forward product and both backward ones
    assert all(counts == [1] * len(counts) for counts in seen)
    assert blas.thread_counts() == [2] * len(seen[0])
    np.testing.assert_array_equal(gx, expected[1][0])
    np.testing.assert_array_equal(gw, expected[1][1])


def test_large_products_keep_the_threads(two_threads, monkeypatch):
    a = np.ones((4, 8))
    b = np.ones((8, 2))
    seen = _spy_matmul(monkeypatch)
    monkeypatch.setattr(blas, "SERIAL_MAX_WORK", 1)
    np.testing.assert_array_equal(blas.matmul(a, b), np.full((4, 2), 8.0))
    assert seen == [blas.thread_counts()] and 1 not in seen[0]


def test_concurrent_products_restore_the_users_count(two_threads, monkeypatch):
    a = np.ones((16, 16))
    errors = []
    seen = _spy_matmul(monkeypatch)

    def work():
        try:
            for _ in range(200):
                np.testing.assert_array_equal(blas.matmul(a, a), np.full((16, 16), 16.0))
        except Exception as error:   # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) == 600 and all(1 in counts for counts in seen)
    assert 1 not in blas.thread_counts()


def test_the_users_limits_still_apply_after_fusegrad_ran_in_another_thread():
    # threadpoolctl lets the first Python thread that sets OpenBLAS's count keep it;
    # fusegrad's products must not be that thread.
    # (It keeps control while alive: the worker waits until the user has set a limit.)
    ran, done = threading.Event(), threading.Event()

    def work():
        blas.matmul(np.ones((4, 4)), np.ones((4, 4)))
        ran.set()
        done.wait(10)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert ran.wait(10)
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            with threadpoolctl.threadpool_limits(1, user_api="blas"):
                assert blas.thread_counts() == [1] * len(blas.thread_counts())
    finally:
        done.set()
        worker.join()


def test_work_counts_batches_and_vectors():
    assert blas.matmul_work(np.empty((5, 2, 3)), np.empty((3, 4))) == 5 * 2 * 3 * 4
    assert blas.matmul_work(np.empty((2, 3)), np.empty((5, 3, 4))) == 5 * 2 * 3 * 4
    assert blas.matmul_work(np.empty(3), np.empty((3, 4))) == 12
    assert blas.matmul_work(np.empty((2, 3)), np.empty(3)) == 6
