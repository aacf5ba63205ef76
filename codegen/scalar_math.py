"""A faster float32 tanh for CPU kernels (imported by them as `fm`).

glibc's float32 tanh takes about 12 ns an element, 6 times its exp, which made it
the whole cost of kernels like the MLP's tanh layer. This is the Cephes single
precision algorithm (S. Moshier): an odd polynomial near zero, 1 - 2/(e^2x + 1)
beyond, about 2 ns and within 1 ulp of the true value (tests in
tests/codegen/test_scalar_math.py). float64 goes to `math.tanh` unchanged.
(Cephes' sin and cos measured no faster than glibc's here and less accurate near
their zeros, so they stay with `math`.)

Kernels call `fm.tanh(x)`; the CUDA target binds `fm` to `math` instead, where the
device library is already fast.
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
