"""Helpers that CPU kernels call through `fm`: a faster float32 tanh, and sums that
vectorize.

`tanh`: glibc's float32 tanh takes about 12 ns an element, 6 times its exp, which made it
the whole cost of kernels like the MLP's tanh layer. This is the Cephes single
precision algorithm (S. Moshier): an odd polynomial near zero, 1 - 2/(e^2x + 1)
beyond, about 2 ns and within 1 ulp of the true value (tests in
tests/codegen/test_scalar_math.py). float64 goes to `math.tanh` unchanged.
(Cephes' sin and cos measured no faster than glibc's here and less accurate near
their zeros, so they stay with `math`.)

Kernels call `fm.tanh(x)`; the CUDA target binds `fm` to `math` instead, where the
device library is already fast.

`block_sum`: a loop `acc += t[i]` is one chain of dependent additions, one every 3
to 4 cycles, and LLVM may not vectorize it: that would reorder the additions. The
chain was the whole cost of row-wise kernels (layernorm's four row sums).
`block_sum` is compiled with the `reassoc` flag, so LLVM keeps several vector
registers of partial sums and adds them at the end: 9x faster on rows of 1024
float32, and more accurate, like NumPy's pairwise sum. The flag covers this
function's additions only; the kernel's own arithmetic stays exactly as written.
Kernels write a block of terms to an L1 buffer and call it on that block.
"""
from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

F = np.float32
_SMALL = F(0.625)  # below this 1 - 2/(e^2x + 1) cancels; the polynomial is exact enough


def _tanh_f32(x):
    ax = abs(x)
    if ax < _SMALL:
        if x == F(0.0):
            return x  # keeps the sign of zero, which the polynomial loses
        z = x * x
        return ((((F(-5.70498872745e-3) * z + F(2.06390887954e-2)) * z - F(5.37397155531e-2)) * z
                 + F(1.33314422036e-1)) * z - F(3.33332819422e-1)) * z * x + x
    # inf gives 1; NaN fails `ax < _SMALL` and stays NaN through exp.
    y = F(1.0) - F(2.0) / (F(math.exp(ax + ax)) + F(1.0))
    return -y if x < F(0.0) else y


def tanh(x):
    """math.tanh; float32 takes the Cephes path inside kernels."""
    return math.tanh(x)


@overload(tanh)
def _tanh_by_type(x):
    if x == types.float32:
        return _tanh_f32
    return lambda x: math.tanh(x)


def block_sum(terms, count):
    """The sum of terms[:count], float in float64, integers in int64."""
    return terms[:count].sum(dtype=np.float64 if terms.dtype.kind == "f" else np.int64)


@overload(block_sum, jit_options={"fastmath": {"reassoc"}})
def _block_sum(terms, count):
    zero = 0.0 if isinstance(terms.dtype, types.Float) else 0

    def sum_block(terms, count):
        acc = zero
        for i in range(count):
            acc += terms[i]
        return acc
    return sum_block
