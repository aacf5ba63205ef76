"""codegen/scalar_math.py: the float32 tanh kernels use, against float64 NumPy, and the
vectorized block sum."""
import math

import numpy as np
import pytest
from numba import njit

from fusegrad.codegen import scalar_math as fm


@njit(error_model="numpy")
def fast_tanh(a, out):
    for i in range(a.shape[0]):
        out[i] = fm.tanh(a[i])


@njit(error_model="numpy")
def libm_tanh(a, out):
    for i in range(a.shape[0]):
        out[i] = math.tanh(a[i])


SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1e-45, 0.625, -0.625,
            0.62499994, 9.0, -9.0, 3.4e38, -3.4e38]


def run(kernel, values):
    out = np.empty_like(values)
    kernel(values, out)
    return out


def test_float32_within_one_and_a_half_ulp():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(-5, 5, 200_000), np.linspace(-12, 12, 100_001)]).astype(np.float32)
    exact = np.tanh(a.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(run(fast_tanh, a) - exact) / ulp) <= 1.5


def test_float32_special_values():
    a = np.array(SPECIALS, dtype=np.float32)
    got = run(fast_tanh, a)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(a))
    finite = ~np.isnan(a)
    np.testing.assert_allclose(got[finite], np.tanh(a[finite].astype(np.float64)), rtol=2e-7)
    assert np.signbit(got[1]) and not np.signbit(got[0])  # tanh(-0.0) is -0.0
    assert got.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float64])
def test_other_dtypes_are_libm_exactly(dtype):
    a = np.array(SPECIALS + list(np.linspace(-8, 8, 1001)), dtype=dtype)
    np.testing.assert_array_equal(run(fast_tanh, a), run(libm_tanh, a))


@njit
def block_sum(terms, count):
    return fm.block_sum(terms, count)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_sum_accumulates_in_float64(dtype):
    rng = np.random.default_rng(1)
    terms = (rng.standard_normal(1031) * 1e3).astype(dtype)  # not a multiple of any vector width
    exact = math.fsum(terms.astype(np.float64)[:1000])
    got = block_sum(terms, 1000)  # only the first `count` terms
    assert isinstance(got, float)
    assert abs(got - exact) <= 1e-12 * np.abs(terms).sum()


def test_block_sum_integers_and_specials():
    assert block_sum(np.arange(100, dtype=np.int32), 100) == 4950
    assert block_sum(np.zeros(0, np.float32), 0) == 0.0
    assert np.isnan(block_sum(np.array([1.0, np.nan, 2.0], np.float32), 3))
    assert block_sum(np.array([np.inf, 1.0], np.float32), 2) == np.inf
    assert np.isnan(block_sum(np.array([np.inf, -np.inf], np.float32), 2))
