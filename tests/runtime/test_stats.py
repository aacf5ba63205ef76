"""The runtime's counters: what benchmarks and the caching tests rely on."""
from __future__ import annotations

import numpy as np

import fusegrad as fg
from fusegrad.runtime import stats


def _product(x, y):
    return (x * y).sum()


def test_counters_reset_and_snapshot():
    stats.reset()
    assert stats.snapshot() == {"kernels_launched": 0, "library_calls": 0, "compiles": 0,
                                "cache_loads": 0, "compile_seconds": 0.0}
    snapshot = stats.snapshot()
    snapshot["compiles"] = 99
    assert stats.snapshot()["compiles"] == 0  # a copy, not the counters themselves


def test_launches_and_library_calls_are_counted():
    f = fg.compile_grad(lambda a, b: (a @ b).sum())
    a, b = np.ones((2, 3)), np.ones((3, 4))
    f(a, b)
    stats.reset()
    f(a, b)
    counts = stats.snapshot()
    assert counts["library_calls"] >= 3  # the forward product and two for the gradients
    assert counts["kernels_launched"] >= 1 and counts["compiles"] == 0


def test_a_new_argument_type_of_a_known_kernel_counts_as_a_compile():
    # int64 and int32 arrays are both cast to float64 inside the kernel: the same
    # source, but Numba compiles it once per argument type.
    x = np.ones(4)
    fg.compile_grad(_product)(x, np.arange(4, dtype=np.int64))
    stats.reset()
    value, grads = fg.compile_grad(_product)(x, np.arange(4, dtype=np.int32))
    counts = stats.snapshot()
    assert value == 6.0
    assert counts["compiles"] + counts["cache_loads"] == 1 and counts["compile_seconds"] > 0
    stats.reset()
    fg.compile_grad(_product)(x, np.arange(4, dtype=np.int32))  # a new trace, nothing to compile
    assert stats.snapshot()["compiles"] == 0 and stats.snapshot()["cache_loads"] == 0
