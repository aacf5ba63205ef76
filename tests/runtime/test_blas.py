"""fusegrad's own small matrix products run on one BLAS thread; the user's count stays."""
import threading
import warnings

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

    def spy(a, b, **out):
        seen.append(blas.thread_counts())
        return real(a, b, **out)

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


# ---------------------------------------------------------------- split products (issue 12, W3)

@pytest.fixture
def split_small(monkeypatch):
    """Products of a few thousand multiply-adds split, as W3's large ones do."""
    monkeypatch.setattr(blas, "SPLIT_MIN_WORK", 1 << 10)


def _assert_numpy_product(result, a, b):
    """Equal to np.matmul up to summing the same k products in another order."""
    expected = np.matmul(a, b)
    assert result.shape == expected.shape and result.dtype == expected.dtype
    k = a.shape[-1]
    bound = 2 * k * np.finfo(expected.dtype).eps * np.matmul(np.abs(a), np.abs(b))
    assert np.all(np.abs(result - expected) <= bound)


_SPLIT_CASES = {
    "rows": ((300, 70), (70, 90)),
    "one row: columns": ((1, 50), (50, 300)),
    "vector @ matrix": ((50,), (50, 300)),
    "matrix @ vector": ((300, 50), (50,)),
    "batches": ((4, 30, 20), (4, 20, 25)),
    "broadcast batches": ((3, 1, 130, 20), (2, 20, 25)),
    "batches @ matrix": ((3, 130, 20), (20, 25)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(_SPLIT_CASES))
def test_split_products_are_numpys(case, dtype, split_small, two_threads, monkeypatch):
    shape_a, shape_b = _SPLIT_CASES[case]
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape_a).astype(dtype)
    b = rng.standard_normal(shape_b).astype(dtype)
    seen = _spy_matmul(monkeypatch)
    result = blas.matmul(a, b, threads=2)
    monkeypatch.undo()
    assert len(seen) > 1 and all(counts == [1] * len(counts) for counts in seen)
    assert blas.thread_counts() == [2] * len(seen[0])
    _assert_numpy_product(result, a, b)


def test_split_products_of_views(split_small):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((260, 2 * 67)).astype(np.float32)
    w = rng.standard_normal((260, 150)).astype(np.float32)
    for a, b in [(x.T, w), (x[:, ::2], w[:67]), (w.T, x[::-1])]:
        _assert_numpy_product(blas.matmul(a, b, threads=3), a, b)


def test_whole_panels_split_bit_for_bit(split_small):
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((512, 96)).astype(dtype)
        w = rng.standard_normal((96, 64)).astype(dtype)
        np.testing.assert_array_equal(blas.matmul(x, w, threads=2), np.matmul(x, w))
        z = rng.standard_normal((256, 192)).astype(dtype)   # rows of z.T, not its k
        np.testing.assert_array_equal(blas.matmul(z.T, z, threads=2), np.matmul(z.T, z))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_contractions_are_summed_in_parts(dtype, split_small, two_threads, monkeypatch):
    # x.T @ dy, a weight's gradient: 1024 products per element, a small output. Each
    # thread sums its share of the products; the parts are added in block order.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1024, 96)).astype(dtype)
    dy = rng.standard_normal((1024, 16)).astype(dtype)
    seen = []
    real = np.matmul

    def spy(a, b, **out):
        seen.append((a.shape, b.shape))
        return real(a, b, **out)

    monkeypatch.setattr(np, "matmul", spy)
    result = blas.matmul(x.T, dy, threads=2)
    again = blas.matmul(x.T, dy, threads=2)
    monkeypatch.undo()
    assert sorted(seen[:2]) == [((96, 512), (512, 16))] * 2
    np.testing.assert_array_equal(result, again)   # the same sum, whichever thread ran a part
    _assert_numpy_product(result, x.T, dy)


def test_unsplittable_products(split_small, two_threads, monkeypatch):
    # Nothing to cut in 64-row panels: run whole, small on one thread, large on BLAS's
    seen = _spy_matmul(monkeypatch)
    a, b = np.ones((100, 50)), np.ones((50, 100))
    np.testing.assert_array_equal(blas.matmul(a, b, threads=2), np.full((100, 100), 50.0))
    monkeypatch.setattr(blas, "SERIAL_MAX_WORK", 1)
    blas.matmul(a, b, threads=2)
    blas.matmul(np.ones(300), np.ones(300), threads=2)   # a dot product
    blas.matmul(np.ones((300, 300), np.int64), np.ones((300, 300), np.int64), threads=2)
    assert seen[0] == [1] * len(seen[0]) and all(1 not in counts for counts in seen[1:])
    assert len(seen) == 4


def test_blocks_on_the_pool_keep_the_callers_errstate(split_small):
    # Every block overflows; across several calls the pool's thread runs some of them.
    a = np.full((512, 8), 1e30, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a warning in any thread fails the product
        for _ in range(10):
            with np.errstate(over="raise"):
                with pytest.raises(FloatingPointError):
                    blas.matmul(a, a.T, threads=2)
            with np.errstate(over="ignore"):
                assert np.isinf(blas.matmul(a, a.T, threads=2)).all()


@fg.compile_grad
def _recurrence(h0, w):
    h, _ = fg.scan(lambda h, x: (fg.tanh(h @ w), None), h0, length=3)
    return (h ** 2).sum()


def test_compiled_products_split(split_small, two_threads, monkeypatch):
    x, w = _inputs()
    x = np.tile(x, (40, 1))   # 320 rows: five 64-row panels
    expected = _mlp(x, w)
    seen = _spy_matmul(monkeypatch)
    value, (gx, gw) = _mlp(x, w)
    assert len(seen) > 3 and all(counts == [1] * len(counts) for counts in seen)
    assert value == expected[0]
    np.testing.assert_array_equal(gx, expected[1][0])
    np.testing.assert_array_equal(gw, expected[1][1])


def test_scan_bodies_split_their_products(split_small, two_threads, monkeypatch):
    rng = np.random.default_rng(4)
    h0, w = rng.standard_normal((256, 8)), rng.standard_normal((8, 8)) * 0.3
    expected = _recurrence(h0, w)
    seen = _spy_matmul(monkeypatch)
    value, (gh, gw) = _recurrence(h0, w)
    # each step's forward product and backward ones, two 128-row blocks each at least
    assert len(seen) > 2 * 3 * 2 and all(counts == [1] * len(counts) for counts in seen)
    assert value == expected[0]
    np.testing.assert_array_equal(gh, expected[1][0])
    np.testing.assert_array_equal(gw, expected[1][1])
    monkeypatch.undo()
    _, (gh_whole, gw_whole) = _recurrence(h0, w)   # unsplit: the same numbers
    np.testing.assert_allclose(gh, gh_whole, rtol=1e-12, atol=1e-12)


def test_eager_products_run_as_compiled_ones_do(two_threads, monkeypatch):
    # Eager ops and eager backwards run by the interpreter hold BLAS to one thread as
    # compiled products do (OpenBLAS's own threads beside fusegrad's fought for cores).
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((128, 64)), rng.standard_normal((64, 64))   # > 2^18 each
    xt, wt = fg.tensor(x, requires_grad=True), fg.tensor(w, requires_grad=True)
    seen = _spy_matmul(monkeypatch)
    (xt @ wt).tanh().sum().backward()
    monkeypatch.undo()
    assert len(seen) == 3 and all(counts == [1] * len(counts) for counts in seen)
    assert blas.thread_counts() == [2] * len(seen[0])
    dy = 1 - np.tanh(x @ w) ** 2
    np.testing.assert_allclose(xt.grad.numpy(), dy @ w.T, rtol=1e-12)
    np.testing.assert_allclose(wt.grad.numpy(), x.T @ dy, rtol=1e-12)
