"""Helpers that CPU kernels call through `fm`: float32 exp, log and tanh that vectorize,
and sums that vectorize.

`exp`, `log`, `tanh`: `math.exp(x)` in a kernel is a call to glibc's scalar expf, and
one call in a loop body stops LLVM from vectorizing the whole loop; glibc's float32
tanh alone took 12 ns an element. These versions are straight-line code (selects,
no calls, no loops), so a loop over float32 becomes 16-lane AVX-512 code: about
0.5 ns an element against glibc's 1.8 (exp, log) and 11 (tanh), on 10^7 elements.

They work in float64, as glibc's own expf and logf do: rounding the float64 result
to float32 once makes them correct to within 0.51 ulp, with subnormal inputs and
results needing no special case (every float32 is a normal float64). Pure float32
arithmetic would need FMA to stay within 1 ulp. Measured on all 2^32 float32 inputs
against float64 libm: max 0.503 ulp for exp, 0.501 for log, 0.507 for tanh, and
every special value (inf, NaN, zeros, overflow, underflow) as NumPy gives it.
Tests in tests/codegen/test_scalar_math.py.

- exp: e^x = 2^n e^r with n = round(x / ln 2), r = x - n ln 2 in two parts
  (Cody-Waite), |r| <= ln 2 / 2; e^r - 1 = r + r^2 q(r), with q the degree-5
  Chebyshev interpolant of (e^r - 1 - r) / r^2 (relative error 2e-10); 2^n is built
  from its bits.
- log: x = 2^k m with m in [sqrt(1/2), sqrt(2)), read from the bits; log m =
  2 atanh(s) with s = (m - 1) / (m + 1), |s| <= 0.172, whose series in s^2 is cut
  after 6 terms (relative error 5e-11).
- tanh: expm1(2x) / (expm1(2x) + 2), with expm1 from exp's reduction, which keeps
  the small values that 1 - 2/(e^2x + 1) would cancel away.

float64 (and any other type) calls `math` unchanged. sin and cos stay with `math`:
a branch-free version correct for every float32 needs Payne-Hanek reduction
(2/pi to about 200 bits, a table lookup per element) once |x| passes about 2^28,
and a cheaper reduction would be silently wrong there.

Kernels call `fm.exp(x)`; the CUDA target binds `fm` to `math` instead, where the
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
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload, register_jitable

F = np.float32


@intrinsic
def _bits_of(typingctx, x):
    """The bits of a float64 as an int64 (a bitcast, which vectorizes)."""
    if x == types.float64:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(64))
        return types.int64(x), codegen


@intrinsic
def _float_of(typingctx, bits):
    """The float64 whose bits are an int64."""
    if bits == types.int64:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())
        return types.float64(bits), codegen


_LOG2E = 1.4426950408889634
# Adding 1.5 * 2^52 rounds to an integer and leaves it in the low bits of the sum.
_SHIFTER = 6755399441055744.0
_SHIFTER_BITS = 0x4338000000000000
_LN2_HI = 0.6931467056274414  # ln 2 to 21 bits: n * _LN2_HI is exact
_LN2_LO = 4.7493250390316726e-07  # ln 2 - _LN2_HI
_Q0, _Q1, _Q2 = 0.5000000013457728, 0.16666666681614217, 0.04166646500604097
_Q3, _Q4, _Q5 = 0.008333310934456656, 0.0013933641032784715, 0.00019890980868767953


@register_jitable
def _exp_parts(x):
    """(2^n, e^r - 1) with e^x = 2^n e^r, for float64 |x| < 1000."""
    t = x * _LOG2E + _SHIFTER
    n = t - _SHIFTER
    r = (x - n * _LN2_HI) - n * _LN2_LO
    q = _Q0 + r * (_Q1 + r * (_Q2 + r * (_Q3 + r * (_Q4 + r * _Q5))))
    scale = _float_of((_bits_of(t) - _SHIFTER_BITS + 1023) << 52)
    return scale, r + r * r * q


def _exp_f32(x):
    xd = np.float64(x)
    # Beyond these e^x rounds to inf or 0 in float32 and 2^n stays a normal float64.
    # The comparisons are false for NaN, which passes through.
    xd = 89.0 if xd > 89.0 else xd
    xd = -105.0 if xd < -105.0 else xd
    scale, expm1_r = _exp_parts(xd)
    return F(scale * (1.0 + expm1_r))


def exp(x):
    """math.exp; float32 takes the vectorizable path inside kernels."""
    return math.exp(x)


@overload(exp)
def _exp_by_type(x):
    if x == types.float32:
        return _exp_f32
    return lambda x: math.exp(x)


_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_ONE_BITS = 0x3FF0000000000000
_MANTISSA = 0x000FFFFFFFFFFFFF


def _log_f32(x):
    xd = np.float64(x)
    # Shifting the bits by 1 - sqrt(1/2) makes the exponent field count from sqrt(1/2),
    # so the mantissa comes out in [sqrt(1/2), sqrt(2)) and log m is small.
    bits = _bits_of(xd) + (_ONE_BITS - _SQRT_HALF_BITS)
    k = np.float64((bits >> 52) - 1023)
    f = _float_of((bits & _MANTISSA) + _SQRT_HALF_BITS) - 1.0
    s = f / (2.0 + f)
    z = s * s
    log_m = 2.0 * s * (1.0 + z * (1 / 3 + z * (1 / 5 + z * (1 / 7 + z * (1 / 9 + z * (1 / 11))))))
    y = k * _LN2_HI + (k * _LN2_LO + log_m)
    y = math.nan if xd < 0.0 else y
    y = -math.inf if xd == 0.0 else y
    y = xd if not xd < math.inf else y  # inf and NaN are their own log
    return F(y)


def log(x):
    """math.log; float32 takes the vectorizable path inside kernels."""
    return math.log(x)


@overload(log)
def _log_by_type(x):
    if x == types.float32:
        return _log_f32
    return lambda x: math.log(x)


_TINY = F(2.0 ** -13)  # below this x - x^3/3 rounds to x in float32


def _tanh_f32(x):
    xd = np.float64(x)
    # tanh(20) is 1 to float64 precision; NaN passes through.
    xd = 20.0 if xd > 20.0 else xd
    xd = -20.0 if xd < -20.0 else xd
    scale, expm1_r = _exp_parts(xd + xd)
    expm1 = (scale - 1.0) + scale * expm1_r
    y = F(expm1 / (expm1 + 2.0))
    return x if abs(x) < _TINY else y  # also keeps the sign of zero


def tanh(x):
    """math.tanh; float32 takes the vectorizable path inside kernels."""
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
