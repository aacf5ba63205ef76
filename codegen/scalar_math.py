"""Helpers that CPU kernels call through `scalar_math`: float32 exp, log, tanh, sin, cos,
log1p, expm1 and erf that vectorize, and sums that vectorize.

`exp`, `log`, `tanh`: `math.exp(x)` in a kernel is a call to glibc's scalar expf, and
one call in a loop body stops LLVM from vectorizing the whole loop; glibc's float32
tanh alone took 12 ns an element. These versions are straight-line code (selects,
no calls, no loops), so a loop over float32 becomes 16-lane AVX-512 code: about
0.5 ns an element against glibc's 1.8 (exp, log) and 11 (tanh), on 10^7 elements.

They work in float64, as glibc's own expf and logf do: rounding the float64 result
to float32 once makes them correct to within 0.51 ulp, with subnormal inputs and
results needing no special case (every float32 is a normal float64). Pure float32
arithmetic would need FMA to stay within 1 ulp. Measured on all 2^32 float32 inputs
against float64 libm: max 0.5007 ulp for exp, 0.501 for log, 0.507 for tanh, and
every special value (inf, NaN, zeros, overflow, underflow) as NumPy gives it.
Tests in tests/codegen/test_scalar_math.py.

- exp: e^x = 2^n e^r with n = round(x / ln 2), r = x - n ln 2 (one constant: x has
  24 bits), |r| <= ln 2 / 2; e^r by its degree-7 Chebyshev interpolant (relative
  error 4e-11) in fused multiply-adds; 2^n added into the result's exponent bits.
  (issue 12: 17 vector instructions for 8 lanes, was 28; 0.64 -> 0.34 ns an element
  in L1, NumPy's float32 exp 0.36.)
- tanh: expm1(2x) / (expm1(2x) + 2), with expm1 from exp's reduction and
  (e^r - 1 - r) / r^2 to degree 5, which keeps the small values that
  1 - 2/(e^2x + 1) would cancel away; the division as a float32 reciprocal and one
  Newton step in float64 (issue 12: 0.88 -> 0.68 ns an element in L1).
  Both measured again unfused, as a CPU without FMA runs them: the same bounds
  (tests/codegen/exhaustive_float32.py --unfused).

- sin, cos: x = r + n pi/2 with |r| <= pi/4, then sin r or cos r by their Taylor
  series in float64 (cut where the next term is below 3e-9 of the result), chosen
  and signed by n mod 4. Below |x| = 2^20, r = x - n pi/2 with pi/2 in two parts
  (Cody-Waite; n pi/2 to 33 bits is exact). Above, that would be silently wrong,
  so r comes from Payne-Hanek reduction: the float32 mantissa times a 96-bit
  window of 2/pi's bits, picked by the exponent, in 64-bit integer arithmetic,
  exact for every float32 up to 3.4e38. Both are computed for every element (the
  select between them is what lets the loop vectorize), which makes these 1.7 ns an
  element against 0.5 for the Cody-Waite path alone, and glibc's 5.4. Nothing in it
  reads memory or converts int64 <-> float64 (both are one lane at a time on AVX2):
  the 2/pi words are picked by selects, conversions go through the 1.5 * 2^52
  shifter, so the loop is 8 float32 lanes on AVX2 as on AVX-512 (issue 12; it was
  4 lanes with scalar table loads on AVX2). On AVX2 the far path is still most of
  the cost: 64-bit integer multiplies, minima and selects take several instructions
  each there (sin 8 ns an element against 1.8 for the Cody-Waite path alone, on an
  AVX-512 machine compiling for haswell). Max error 0.53 ulp over every float32,
  bit for bit as the table version. CPU kernels run blocks of elements with the
  Cody-Waite path alone first (`sin_near` and the rest, at the end of this file).

- log1p: log(u) + (x - (u - 1)) / u with u = 1 + x in float64 (the correction is
  the rounding of u, to first order), log as above. Max 0.5006 ulp.
- expm1: (2^n - 1) + 2^n (e^r - 1) from exp's reduction, with e^r - 1 by its own
  series to r^10 (exp's q leaves 0.51 ulp on e^r - 1 alone). Max 0.50001 ulp.
- erf: x p(x^2) below |x| = 1 (Taylor, to x^23); above, 1 - e^(-x^2) R(x), R the
  degree-14 Chebyshev interpolant of e^(x^2) erfc(x) on [1, 4], computed at import
  from libm's erfc; 1 beyond 4. Both computed, one selected. Max 0.5014 ulp.
  (All three measured on every float32 against float64 libm, with every special
  value as libm gives it.) A float32 loop, best of 31 on a shared 2-core AVX-512
  machine: 0.9 (expm1), 1.2 (log1p), 2.4 (erf) ns an element, against glibc's 7.9,
  9.3 and 10.3.

float64 has its own vectorizable exp, log, log1p, expm1, tanh, sin and cos, within
FLOAT64_ULPS of the exact result (issue 12, the section at the end of this file);
other float64 functions (erf) and other types call `math` unchanged.

Kernels call `scalar_math.exp(x)`; the CUDA target binds `scalar_math` to `math`, where the
device library is already fast.

`block_sum`: a loop `acc += t[i]` is one chain of dependent additions, one every 3
to 4 cycles, and LLVM may not vectorize it: that would reorder the additions. The
chain was the whole cost of row-wise kernels (layernorm's four row sums).
`block_sum` is compiled with the `reassoc` flag, so LLVM keeps several vector
registers of partial sums and adds them at the end: 9x faster on rows of 1024
float32, and more accurate, like NumPy's pairwise sum. The flag covers this
function's additions only; the kernel's own arithmetic stays exactly as written.
Kernels write a block of terms to an L1 buffer and call it on that block.
`block_max` and `block_min` do the same for extrema through LLVM's NaN-propagating
`maximum` and `minimum` (6x faster on rows of 1024 float32), float32 through int32
extrema of its bits in float order (issue 12: 2.3x faster again).
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_new_ref
from numba.extending import (intrinsic, lower_builtin, overload, register_jitable,
                             type_callable)
from numba.np.arrayobj import make_array, populate_array

F = np.float32

# (issue 12, compile time) Every function here that Numba compiles on its own (the
# overloads kernels call, `_python_helper`s) is compiled with these options, so that
# each is compiled once per signature in a process; `_helper`s are not compiled on
# their own at all, but inlined into their callers' Numba IR. `forceinline` marks the
# compiled function `alwaysinline` for LLVM, which inlines it into the kernel's loop
# (a call would keep the loop from vectorizing). Numba's own `inline="always"` on an
# overload compiles the implementation in full anyway (to check it compiles), then types
# and lowers it again inside every caller: twice the work for sin, cos and tanh, and
# the near and far passes of a block lowered it twice more. Numba keys a helper's
# compiled versions by its caller's options, and forceinline passes down to what a
# function calls, so callers with other options would compile every helper again. The
# helpers are never called from Python: no wrappers for that.
_JIT = {"forceinline": True, "no_cpython_wrapper": True, "no_cfunc_wrapper": True}


def _helper(function):
    """A helper of the functions here, inlined into each caller's Numba IR, so never
    compiled on its own (issue 12, compile time): a function Numba compiles runs its
    whole pipeline and an LLVM module, 25-90 ms each on a 2-core EPYC, and a float32
    sin called ten such helpers. Numba inlines a jitted function's untyped IR; an
    overload's it would compile in full first (above)."""
    return njit(inline="always")(function)


def _python_helper(function):
    """`register_jitable` with this file's options: compiled on its own once per
    signature, and a plain Python function when called from Python (`far_trig`)."""
    return register_jitable(**_JIT)(function)


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


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c in float64, the multiply and the add marked `contract`: LLVM fuses them
    into one multiply-add where the CPU has one (every AVX2 CPU does). Numba never
    fuses on its own, and exp's and tanh's polynomials were half multiplies, half
    adds (issue 12). Their error bounds hold fused or not (measured both ways). Not
    LLVM's `fmuladd`: its vector cost on haswell made exp's loop 4 lanes, not 8."""
    if a == b == c == types.float64:
        def codegen(context, builder, signature, args):
            product = builder.fmul(args[0], args[1], flags=["contract"])
            return builder.fadd(product, args[2], flags=["contract"])
        return types.float64(a, b, c), codegen


def _float32_path(libm, float32, key=None, **options):
    """A function that is `libm` (math.exp, say), except for float32 inside kernels,
    where it is `float32`: the vectorizable version (and float64, where FLOAT64[key]
    has one: `key` is libm's name unless given)."""
    key = key or libm.__name__
    def function(x):
        return libm(x)
    function.__name__ = function.__qualname__ = libm.__name__
    function.__doc__ = f"math.{libm.__name__}; float32 takes the vectorizable path inside kernels."

    @overload(function, jit_options=_JIT, **options)
    def by_type(x):
        if x == types.float32:
            return float32
        if x == types.float64 and key in FLOAT64:  # issue 12, at the end of the file
            return FLOAT64[key]
        return lambda x: libm(x)
    return function


def _chebyshev_monomials(function, degree: int, lo: float, hi: float) -> tuple[float, ...]:
    """Coefficients, lowest first, of the degree-`degree` Chebyshev interpolant of
    `function` on [lo, hi], as a polynomial in t = (x - mid) / half_width."""
    from numpy.polynomial import chebyshev
    fit = chebyshev.Chebyshev.interpolate(np.vectorize(function), degree, domain=[lo, hi])
    return tuple(float(c) for c in chebyshev.cheb2poly(fit.coef))


_LOG2E = 1.4426950408889634
# Adding 1.5 * 2^52 rounds to an integer and leaves it in the low bits of the sum.
_SHIFTER = 6755399441055744.0
_SHIFTER_BITS = 0x4338000000000000
_LN2_HI = 0.6931467056274414  # ln 2 to 21 bits: n * _LN2_HI is exact
_LN2_LO = 4.7493250390316726e-07  # ln 2 - _LN2_HI
_Q0, _Q1, _Q2 = 0.5000000013457728, 0.16666666681614217, 0.04166646500604097
_Q3, _Q4, _Q5 = 0.008333310934456656, 0.0013933641032784715, 0.00019890980868767953


@_helper
def _reduce_ln2(x):
    """(2^n, r) with x = n ln 2 + r, |r| <= ln 2 / 2, for float64 |x| < 1000."""
    t = x * _LOG2E + _SHIFTER
    n = t - _SHIFTER
    r = (x - n * _LN2_HI) - n * _LN2_LO
    return _float_of((_bits_of(t) - _SHIFTER_BITS + 1023) << 52), r


@_helper
def _exp_parts(x):
    """(2^n, e^r - 1) with e^x = 2^n e^r, for float64 |x| < 1000."""
    scale, r = _reduce_ln2(x)
    q = _Q0 + r * (_Q1 + r * (_Q2 + r * (_Q3 + r * (_Q4 + r * _Q5))))
    return scale, r + r * r * q


# (issue 12, W4) exp of a float32 in 17 vector instructions where it took 28: one
# ln 2 (x has 24 bits and |n| <= 152, so n ln 2's rounding is below 2^-46 of r), e^r
# by one polynomial in fused multiply-adds, and 2^n added to the result's exponent
# bits instead of multiplied. _EXP: the degree-7 Chebyshev interpolant of e^r on
# |r| <= ln 2 / 2 (+ slack for the rounded n), within 4e-11 of it.
_LN2 = math.log(2.0)
_EXP0, _EXP1, _EXP2, _EXP3, _EXP4, _EXP5, _EXP6, _EXP7 = _chebyshev_monomials(math.exp, 7, -0.3466, 0.3466)
_EXP1, _EXP2, _EXP3, _EXP4, _EXP5, _EXP6, _EXP7 = (c / 0.3466 ** k for k, c in enumerate(
    (_EXP1, _EXP2, _EXP3, _EXP4, _EXP5, _EXP6, _EXP7), 1))


def _exp_f32(x):
    xd = np.float64(x)
    # Beyond these e^x rounds to inf or 0 in float32 and 2^n e^r stays a normal
    # float64. The comparisons are false for NaN, which passes through.
    xd = 89.0 if xd > 89.0 else xd
    xd = -105.0 if xd < -105.0 else xd
    t = _fma(xd, _LOG2E, _SHIFTER)  # n in its low bits
    n = t - _SHIFTER
    r = _fma(n, -_LN2, xd)
    p = _fma(_fma(_fma(r, _EXP7, _EXP6), r, _EXP5), r, _EXP4)
    p = _fma(_fma(_fma(_fma(p, r, _EXP3), r, _EXP2), r, _EXP1), r, _EXP0)
    # n << 52 is n in the exponent field (t's other bits shift out): p times 2^n.
    return F(_float_of(_bits_of(p) + (_bits_of(t) << 52)))


exp = _float32_path(math.exp, _exp_f32)


_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_ONE_BITS = 0x3FF0000000000000
_MANTISSA = 0x000FFFFFFFFFFFFF


@_helper
def _log_positive(xd):
    """log of a positive, finite, normal float64, to a relative 5e-11 (enough for a
    float32 result)."""
    # Shifting the bits by 1 - sqrt(1/2) makes the exponent field count from sqrt(1/2),
    # so the mantissa comes out in [sqrt(1/2), sqrt(2)) and log m is small.
    bits = _bits_of(xd) + (_ONE_BITS - _SQRT_HALF_BITS)
    k = np.float64((bits >> 52) - 1023)
    f = _float_of((bits & _MANTISSA) + _SQRT_HALF_BITS) - 1.0
    s = f / (2.0 + f)
    z = s * s
    log_m = 2.0 * s * (1.0 + z * (1 / 3 + z * (1 / 5 + z * (1 / 7 + z * (1 / 9 + z * (1 / 11))))))
    return k * _LN2_HI + (k * _LN2_LO + log_m)


def _log_f32(x):
    xd = np.float64(x)
    y = _log_positive(xd)
    y = math.nan if xd < 0.0 else y
    y = -math.inf if xd == 0.0 else y
    y = xd if not xd < math.inf else y  # inf and NaN are their own log
    return F(y)


log = _float32_path(math.log, _log_f32)


_TINY = F(2.0 ** -13)  # below this x - x^3/3 rounds to x in float32


def _tanh_f32(x):
    xd = np.float64(x)
    # tanh(20) is 1 to float64 precision; NaN passes through.
    xd = _pick(xd > 20.0, 20.0, xd)
    xd = _pick(xd < -20.0, -20.0, xd)
    # (issue 12) exp's reduction with fused multiply-adds (as in _exp_parts
    # otherwise: for |x| <= ln 2 / 4, n = 0 and r = 2x exactly).
    y2 = xd + xd
    t = _fma(y2, _LOG2E, _SHIFTER)
    n = t - _SHIFTER
    r = _fma(n, -_LN2, y2)
    q = _fma(_fma(_fma(_fma(_fma(r, _Q5, _Q4), r, _Q3), r, _Q2), r, _Q1), r, _Q0)
    scale = _float_of((_bits_of(t) << 52) + _ONE_BITS)
    expm1 = _fma(scale, _fma(r * r, q, r), scale - 1.0)
    # expm1 / d without a float64 division (16 cycles for 8 lanes, most of tanh's
    # time): a float32 reciprocal, within 2^-23 of 1 / d, and one Newton step in
    # float64, which squares that error.
    d = expm1 + 2.0
    inverse = np.float64(F(1.0) / F(d))
    inverse = _fma(inverse, _fma(-d, inverse, 1.0), inverse)
    y = F(expm1 * inverse)
    return _pick(abs(x) < _TINY, x, y)  # also keeps the sign of zero


tanh = _float32_path(math.tanh, _tanh_f32)


def _two_over_pi_words(count: int = 8) -> tuple[int, ...]:
    """The bits of 2/pi after the binary point in 32-bit words, after one word of zeros
    (the window for arguments just above pi/4 starts before the point)."""
    def arctan_inverse(x: int, bits: int) -> int:  # arctan(1/x) * 2^bits
        total = term = (1 << bits) // x
        n, sign = 1, -1
        while term:
            term //= x * x
            n += 2
            total += sign * (term // n)
            sign = -sign
        return total
    bits = 32 * count + 64
    pi = 4 * (4 * arctan_inverse(5, bits) - arctan_inverse(239, bits))  # Machin
    fraction = (2 << (2 * bits)) // pi
    words = [(fraction >> (bits - 32 * k)) & 0xFFFFFFFF for k in range(1, count)]
    return tuple([0] + words)


_WORDS = _two_over_pi_words()
# Word pairs: _TWO_OVER_PI_PAIRS[w] is words w and w + 1 as one 64-bit number, so that
# the 128 bits a window can touch take two loads per element (gathers, when vectorized).
_TWO_OVER_PI_PAIRS = np.array([(a << 32) | b for a, b in zip(_WORDS, _WORDS[1:])], np.uint64)
_TWO_OVER_PI = 2 / math.pi
_PIO2_HI = float.fromhex("0x1.921fb54400000p+0")  # pi/2 to 33 bits: n * _PIO2_HI is exact
_PIO2_LO = float.fromhex("0x1.0b4611a626331p-34")  # pi/2 - _PIO2_HI
_PIO2_BY_2_62 = math.pi / 2 / 2.0 ** 62
_FAR = 1048576.0  # 2^20: from here on, the reduction takes the Payne-Hanek path
_S = [(-1) ** k / math.factorial(2 * k + 1) for k in range(1, 5)]
_C = [(-1) ** k / math.factorial(2 * k) for k in range(1, 6)]
_S1, _S2, _S3, _S4 = _S
_C1, _C2, _C3, _C4, _C5 = _C


@intrinsic
def _pick(typingctx, condition, yes, no):
    """`yes if condition else no` as one LLVM select. Spelled inline, the conditional
    would be a branch in the Numba IR that `_reduce_pio2` is inlined as, and Numba's
    SSA pass warns about its own variables there. An intrinsic rather than a jitted
    helper (issue 12, compile time): Numba compiled a helper once per type, 35-45 ms
    each, four types in a float32 sin."""
    if isinstance(condition, types.Boolean):
        common = typingctx.unify_types(types.unliteral(yes), types.unliteral(no))
        if isinstance(common, (types.Number, types.Boolean)):
            def codegen(context, builder, signature, args):
                return builder.select(*args)
            return common(types.boolean, common, common), codegen


@_helper
def _int_of(xd):
    """An integral float64 with |xd| < 2^51 as an int64: adding 1.5 * 2^52 leaves it in
    the low bits. (np.int64(xd) is a conversion AVX2 does not have for vectors: LLVM
    does it one lane at a time.)"""
    return _bits_of(xd + _SHIFTER) - _SHIFTER_BITS


@intrinsic
def _payne_hanek(typingctx, xd):
    """(r, n) with xd = r + n pi/2 (n mod 4, as a uint64), for a float64 xd that is a
    float32 with |xd| >= 1/2, by Payne-Hanek reduction: |x| = m 2^k with a 24-bit m;
    bits of x 2/pi above 2^1 are multiples of 4 (whole turns) and drop out, so only a
    96-bit window of 2/pi starting at bit k - 1 matters. q = (m * window) mod 2^96,
    top 64 bits: quadrant and fraction. Unsigned 64-bit arithmetic throughout.

    Written in LLVM IR, not in Numba (issue 12, compile time): typing and lowering
    its 40 uint64 operations took a third of a second of every float32 sin's compile.
    The 2/pi window comes from seven constants by a tree of selects on the word's
    bits, not a table load: a load per lane is a gather, which LLVM's cost model
    rejects on AVX2 (no cheap vpgatherqq); it then loaded the table one lane at a
    time, and the whole loop ran at 4 lanes (W2 96.9 ms on an AVX2-only EPYC against
    19.9 on AVX-512). Conversions go through the 1.5 * 2^52 shifter: int64 <-> float64
    is AVX-512 only, one lane at a time on AVX2."""
    if xd != types.float64:
        return None
    result = types.Tuple((types.float64, types.uint64))

    def codegen(context, builder, signature, args):
        i64, f64 = ir.IntType(64), ir.DoubleType()
        def k(value):
            return ir.Constant(i64, value)
        def pick(condition, yes, no):
            return builder.select(condition, yes, no)
        def bit(word, mask):
            return builder.icmp_unsigned("!=", builder.and_(word, k(mask)), k(0))
        p = [k(int(value)) for value in _TWO_OVER_PI_PAIRS]

        def pair(word):  # _TWO_OVER_PI_PAIRS[word] for 0 <= word <= 6
            low, middle, high = bit(word, 1), bit(word, 2), bit(word, 4)
            p01, p23, p45 = pick(low, p[1], p[0]), pick(low, p[3], p[2]), pick(low, p[5], p[4])
            return pick(high, pick(middle, p[6], p45), pick(middle, p23, p01))
        def float_of(bits):  # bits + the shifter's, as a float64, less the shifter
            return builder.fsub(builder.bitcast(builder.add(bits, k(_SHIFTER_BITS)), f64),
                                ir.Constant(f64, _SHIFTER))

        bits = builder.bitcast(args[0], i64)
        # float64's exponent, kept to float32's finite range (|x| < 1/2 takes the
        # other path; inf and NaN give NaN at the end) so the words stay inside 0..6.
        exponent = builder.and_(builder.lshr(bits, k(52)), k(0x7FF))
        exponent = pick(builder.icmp_unsigned("<", exponent, k(1022)), k(1022), exponent)
        exponent = pick(builder.icmp_unsigned(">", exponent, k(1150)), k(1150), exponent)
        m = builder.or_(builder.and_(builder.lshr(bits, k(29)), k(0x7FFFFF)), k(0x800000))
        start = builder.sub(exponent, k(1016))  # k - 2 + one word of leading zeros, in bits
        word, shift = builder.lshr(start, k(5)), builder.and_(start, k(31))
        first, second = pair(word), pair(builder.add(word, k(2)))  # word + 2 <= 6
        spill = builder.lshr(second, builder.sub(k(64), shift))  # poison at shift 0: not picked
        high = builder.or_(builder.shl(first, shift),
                           pick(builder.icmp_unsigned("!=", shift, k(0)), spill, k(0)))
        low = builder.lshr(builder.shl(second, shift), k(32))
        q = builder.add(builder.mul(m, high), builder.lshr(builder.mul(m, low), k(32)))
        n = builder.lshr(builder.add(q, k(1 << 61)), k(62))
        fraction = builder.sub(q, builder.shl(n, k(62)))  # a signed 63-bit fraction
        # As a float64: the high 52 bits and the low 11 exactly, one rounding as they add.
        whole = builder.fadd(builder.fmul(float_of(builder.ashr(fraction, k(11))),
                                          ir.Constant(f64, 2048.0)),
                             float_of(builder.and_(fraction, k(0x7FF))))
        r = builder.fmul(whole, ir.Constant(f64, _PIO2_BY_2_62))
        return context.make_tuple(builder, result, [r, n])
    return result(xd), codegen


@_helper
def _reduce_pio2_near(xd):
    """(nd, r) with xd = r + nd pi/2 for a float64 xd (a float32's) with |xd| < 2^20:
    Cody-Waite. `_reduce_pio2` and `_reduce_pio2_near` both take their near values
    from here, so the two agree bit for bit below 2^20."""
    nd = np.rint(xd * _TWO_OVER_PI) + 0.0  # +0.0, not -0.0: -0.0 - n pi/2 must stay -0.0
    return nd, (xd - nd * _PIO2_HI) - nd * _PIO2_LO


@njit(inline="always")  # too big for LLVM's inliner, which would leave a call
def _reduce_pio2(x):
    """(r, n) with x = r + n pi/2, |r| <= pi/4 (float64), for a float32 x."""
    xd = np.float64(x)
    nd, r_near = _reduce_pio2_near(xd)
    r_far, n_far = _payne_hanek(xd)
    near = abs(xd) < _FAR
    flip = (not near) & (xd < 0.0)
    r = _pick(near, r_near, r_far)
    n_near = _int_of(_pick(near, nd, 0.0))  # far away nd may not fit an int64
    n = _pick(near, n_near, np.int64(n_far))
    return _pick(flip, -r, r), _pick(flip, -n, n)


@njit(inline="always")
def _sin_cos_quadrants(x, shift):
    """sin(x + shift pi/2) and sin(x + (shift + 1) pi/2) for float32 x, in float32,
    from one reduction."""
    r, n = _reduce_pio2(x)
    return _sin_cos_of(x, r, n, shift)


@njit(inline="always")
def _sin_cos_of(x, r, n, shift):
    """`_sin_cos_quadrants` once x = r + n pi/2 is reduced."""
    z = r * r
    sin_r = r * (1.0 + z * (_S1 + z * (_S2 + z * (_S3 + z * _S4))))  # keeps -0.0
    cos_r = 1.0 + z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * _C5))))
    quadrant = n + shift
    first = _pick((quadrant & 1) == 0, sin_r, cos_r)
    first = _pick((quadrant & 2) != 0, -first, first)
    second = _pick((quadrant & 1) == 0, cos_r, -sin_r)
    second = _pick((quadrant & 2) != 0, -second, second)
    finite = x - x == x - x  # inf and NaN give NaN
    return _pick(finite, F(first), x - x), _pick(finite, F(second), x - x)


@njit(inline="always")
def _sin_quadrant(x, shift):
    """sin(x + shift pi/2) for float32 x, in float32."""
    return _sin_cos_quadrants(x, shift)[0]


sin = _float32_path(math.sin, lambda x: _sin_quadrant(x, 0))
cos = _float32_path(math.cos, lambda x: _sin_quadrant(x, 1))


def sincos(x):
    """(sin x, cos x). The CPU target spells a sin and a cos of the same value in one
    kernel as one call: the reduction is most of the cost of each."""
    return math.sin(x), math.cos(x)


@overload(sincos, jit_options=_JIT)
def _sincos_by_type(x):
    if x == types.float32:
        return lambda x: _sin_cos_quadrants(x, 0)
    if x == types.float64:
        return lambda x: _sincos_f64(x)
    return lambda x: (math.sin(x), math.cos(x))


def _ieee_extremum(name: str):
    """The LLVM intrinsic `name` (llvm.maximum, llvm.minimum) on two floats: NaN if
    either is NaN, as NumPy's max and min. Loops reducing with it vectorize, where
    `a if a > b or a != a else b` is a chain of compares and selects."""
    @intrinsic
    def extremum(typingctx, a, b):
        if isinstance(a, types.Float) and a == b:
            def codegen(context, builder, signature, args):
                t = args[0].type
                function = builder.module.declare_intrinsic(name, [t], ir.FunctionType(t, [t, t]))
                return builder.call(function, args)
            return a(a, b), codegen
    return extremum


_maximum = _ieee_extremum("llvm.maximum")
_minimum = _ieee_extremum("llvm.minimum")


def block_max(terms, count, start):
    """The largest of start and terms[:count]; NaN if any is NaN."""
    return np.max(np.append(terms[:count], start))


def block_min(terms, count, start):
    """The smallest of start and terms[:count]; NaN if any is NaN."""
    return np.min(np.append(terms[:count], start))


def _block_extremum(floats, integers, float32):
    def by_type(terms, count, start):
        if terms.dtype == types.float32:
            return float32
        pick = floats if isinstance(terms.dtype, types.Float) else integers

        def extremum(terms, count, start):
            acc = start
            for i in range(count):
                acc = pick(acc, terms[i])
            return acc
        return extremum
    return by_type


# (issue 12, W4) float32 extrema as int32 extrema. LLVM spells a vector `maximum` with
# a sign test, two blends, a max and a NaN test, in one chain per accumulator (softmax's
# row max was a tenth of W4). The float32 bits with the low 31 flipped where the sign
# is set are ordered as the floats are, -0 below +0 (as `maximum` orders them), with
# NaNs beyond the infinities (sign clear) or below them (sign set); a vector int32
# max and min are one instruction each (2.3x faster on AVX2 and AVX-512 code).

@intrinsic
def _ordered32(typingctx, x):
    """The order-preserving int32 of a float32 (and back: the map is its own inverse)."""
    if x in (types.float32, types.int32):
        def codegen(context, builder, signature, args):
            int32 = ir.IntType(32)
            bits = builder.bitcast(args[0], int32)
            flip = builder.and_(builder.ashr(bits, int32(31)), int32(0x7FFFFFFF))
            ordered = builder.xor(bits, flip)
            return ordered if x == types.float32 else builder.bitcast(ordered, ir.FloatType())
        return (types.int32 if x == types.float32 else types.float32)(x), codegen


_ORDERED_INF = 0x7F800000        # _ordered32(inf)
_ORDERED_MINUS_INF = -0x7F800001  # _ordered32(-inf)


@_helper
def _ordered_extrema(terms, count):
    """The int32 extrema of terms[:count] in `_ordered32`'s order, and a NaN among
    them if there is one (else 0.0)."""
    high, low = np.int32(_ORDERED_MINUS_INF), np.int32(_ORDERED_INF)
    for i in range(count):
        key = _ordered32(terms[i])
        high = key if key > high else high
        low = key if key < low else low
    nan = _ordered32(high) if high > _ORDERED_INF else np.float32(0.0)
    nan = _ordered32(low) if low < _ORDERED_MINUS_INF else nan
    return high, low, nan


def _block_max_f32(terms, count, start):
    high, low, nan = _ordered_extrema(terms, count)
    return _maximum(start, nan if nan != nan else _ordered32(high))


def _block_min_f32(terms, count, start):
    high, low, nan = _ordered_extrema(terms, count)
    return _minimum(start, nan if nan != nan else _ordered32(low))


overload(block_max)(_block_extremum(_maximum, max, _block_max_f32))
overload(block_min)(_block_extremum(_minimum, min, _block_min_f32))


def buffer(shape, dtype):
    """A scratch array of `shape` (a tuple) and `dtype`, C order: a block's or a row's
    terms. `np.empty(shape, dtype)`, whose Numba implementation is compiled (0.12-0.15 s,
    once a process and dtype) before a kernel's first call; this one is lowered
    straight to the runtime's allocation (issue 12, compile time)."""
    return np.empty(shape, dtype)


@type_callable(buffer)
def _type_buffer(context):
    def typer(shape, dtype):
        if (isinstance(shape, types.UniTuple) and isinstance(shape.dtype, types.Integer)
                and isinstance(dtype, types.NumberClass)):
            return types.Array(dtype.instance_type, len(shape), "C")
    return typer


@lower_builtin(buffer, types.UniTuple, types.NumberClass)
def _lower_buffer(context, builder, signature, args):
    array_type = signature.return_type
    shape_type = signature.args[0]
    shape = [context.cast(builder, size, shape_type.dtype, types.intp)
             for size in cgutils.unpack_tuple(builder, args[0], len(shape_type))]
    itemsize = context.get_constant(
        types.intp, context.get_abi_sizeof(context.get_data_type(array_type.dtype)))
    strides = [itemsize]
    for size in reversed(shape[1:]):
        strides.insert(0, builder.mul(strides[0], size))
    total = builder.mul(strides[0], shape[0])
    meminfo = context.nrt.meminfo_alloc_aligned(
        builder, total, context.get_preferred_array_alignment(array_type.dtype))
    array = make_array(array_type)(context, builder)
    populate_array(array, data=builder.bitcast(context.nrt.meminfo_data(builder, meminfo),
                                               array.data.type),
                   shape=cgutils.pack_array(builder, shape),
                   strides=cgutils.pack_array(builder, strides),
                   itemsize=itemsize, meminfo=meminfo)
    return impl_ret_new_ref(context, builder, array_type, array._getvalue())


def block_sum(terms, count):
    """The sum of terms[:count], float in float64, integers in uint64 (wrapping)."""
    if terms.dtype.kind == "f":
        return terms[:count].sum(dtype=np.float64)
    return terms[:count].astype(np.uint64).sum()


@overload(block_sum, jit_options={"fastmath": {"reassoc"}})
def _block_sum(terms, count):
    if isinstance(terms.dtype, types.Float):
        def sum_block(terms, count):
            acc = 0.0
            for i in range(count):
                acc += terms[i]
            return acc
        return sum_block

    # Integers add in uint64, which wraps: Numba's signed additions are `nsw`
    # (overflow undefined), and uint64 + int64 would be a float64.
    def sum_integers(terms, count):
        acc = np.uint64(0)
        for i in range(count):
            acc += np.uint64(terms[i])
        return acc
    return sum_integers


# ---------------------------------------------------------------- issue 12: prefetch
# (issue 12, W4) A row kernel reads each input row from memory in its first pass, and
# the hardware prefetcher, which stops at every 4 KB page, starts again cold at each
# row: the first pass waited on memory while the passes after it kept the core busy
# with no loads outstanding. `prefetch_head` asks for the start of the next row early
# (the prefetcher follows on from it). A hint: no effect on any result.

@intrinsic
def _prefetch(typingctx, row, index):
    """Start loading the cache line of row[index] (a 1-d array) into cache."""
    if isinstance(row, types.Array) and row.ndim == 1 and isinstance(index, types.Integer):
        def codegen(context, builder, signature, args):
            array = context.make_array(signature.args[0])(context, builder, value=args[0])
            offset = builder.mul(context.cast(builder, args[1], signature.args[1], types.intp),
                                 builder.extract_value(array.strides, 0))
            byte = ir.IntType(8).as_pointer()
            address = builder.gep(builder.bitcast(array.data, byte), [offset])
            int32 = ir.IntType(32)
            function = builder.module.declare_intrinsic(
                "llvm.prefetch", [byte], ir.FunctionType(ir.VoidType(), [byte] + [int32] * 3))
            # read, keep in all cache levels, data cache
            builder.call(function, [address, int32(0), int32(3), int32(1)])
            return context.get_dummy_value()
        return types.void(row, index), codegen


_PREFETCH_BYTES = 1024  # W4, 2 threads: 4 lines 2.21 ms, 8 2.11, 16 2.01, 32 2.03, 64 2.26


@_helper
def prefetch_head(rows, i):
    """Start loading the first _PREFETCH_BYTES of rows[i] (a 2-d array) into cache,
    if there is a row i."""
    if i < rows.shape[0]:
        row = rows[i]
        step = max(64 // row.itemsize, 1)  # one per 64-byte cache line
        for k in range(0, min(row.shape[0], _PREFETCH_BYTES // row.itemsize), step):
            _prefetch(row, k)


# ---------------------------------------------------------------- log1p, expm1, erf
# (issue 11, item 6) The same scheme as exp and log: float64 arithmetic rounded once
# to float32, straight-line code, so float32 loops vectorize; float64 calls libm.

def _log1p_f32(x):
    xd = np.float64(x)
    # u = 1 + x rounds only for |x| < 2^-29 or x > 2^29; the rounding error x - (u - 1),
    # divided by u, is the first-order correction log(u + e) - log(u) (as in
    # Goldberg's log1p), which also makes log1p(tiny) = tiny.
    u = 1.0 + xd
    y = _log_positive(u) + (xd - (u - 1.0)) / u
    y = _pick(xd < -1.0, math.nan, y)
    y = _pick(xd == -1.0, -math.inf, y)
    y = _pick(xd < math.inf, y, xd)  # inf and NaN are their own log1p
    return F(_pick(xd == 0.0, xd, y))  # keeps the sign of zero


log1p = _float32_path(math.log1p, _log1p_f32)


# e^r - 1 to r^10 / 10! (the next term is below 2e-11 of it for |r| <= ln 2 / 2): exp's
# q, good to 2e-10 of 1 + (e^r - 1), is 0.51 ulp of e^r - 1 alone, near |r| = ln 2 / 2.
_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10 = [1 / math.factorial(k) for k in range(2, 11)]


def _expm1_f32(x):
    xd = np.float64(x)
    # Beyond these expm1 rounds to inf or -1 in float32; NaN passes through.
    xd = _pick(xd > 89.0, 89.0, xd)
    xd = _pick(xd < -40.0, -40.0, xd)
    scale, r = _reduce_ln2(xd)
    p = _E6 + r * (_E7 + r * (_E8 + r * (_E9 + r * _E10)))
    expm1_r = r + r * r * (_E2 + r * (_E3 + r * (_E4 + r * (_E5 + r * p))))
    # For |x| <= ln 2 / 2, 2^n = 1 and the result is expm1(r) itself: no cancellation.
    y = (scale - 1.0) + scale * expm1_r
    return F(_pick(xd == 0.0, xd, y))  # keeps the sign of zero


expm1 = _float32_path(math.expm1, _expm1_f32)


# |x| < 1: erf x = x p(x^2), p the Taylor series of erf(x)/x cut after x^22 (the next
# term is below 2e-11 of erf x).
_ERF_T = [2 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1))
          for n in range(12)]
_T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7, _T8, _T9, _T10, _T11 = _ERF_T
# 1 <= |x| <= 4: erf x = 1 - e^(-x^2) R(x), R = e^(x^2) erfc(x) smooth (about
# 1 / (x sqrt(pi))); its degree-14 Chebyshev interpolant is within 2e-10 of it, so
# erf within 2e-11. Above 4, erf x rounds to 1 in float32 (erfc 4 = 1.5e-8).
_ERF_MID, _ERF_HALF = 2.5, 1.5
(_R0, _R1, _R2, _R3, _R4, _R5, _R6, _R7, _R8, _R9, _R10, _R11, _R12, _R13,
 _R14) = _chebyshev_monomials(lambda x: math.erfc(x) * math.exp(x * x), 14, 1.0, 4.0)


def _erf_f32(x):
    xd = np.float64(x)
    z = xd * xd  # exact: a float32 has 24 significant bits
    p = _T8 + z * (_T9 + z * (_T10 + z * _T11))
    p = _T4 + z * (_T5 + z * (_T6 + z * (_T7 + z * p)))
    p = _T0 + z * (_T1 + z * (_T2 + z * (_T3 + z * p)))
    near = xd * p  # keeps -0.0
    a = abs(xd)
    a = _pick(a > 4.0, 4.0, a)  # NaN passes through
    t = (a - _ERF_MID) * (1 / _ERF_HALF)
    r = _R10 + t * (_R11 + t * (_R12 + t * (_R13 + t * _R14)))
    r = _R5 + t * (_R6 + t * (_R7 + t * (_R8 + t * (_R9 + t * r))))
    r = _R0 + t * (_R1 + t * (_R2 + t * (_R3 + t * (_R4 + t * r))))
    scale, expm1_r = _exp_parts(-(a * a))
    far = 1.0 - (scale + scale * expm1_r) * r
    far = _pick(xd < 0.0, -far, far)
    return F(_pick(abs(xd) < 1.0, near, far))


erf = _float32_path(math.erf, _erf_f32)


# ---------------------------------------------------------------- issue 12: sin, cos near
# (issue 12, item a) The Payne-Hanek half of the float32 reduction is most of sin's and
# cos's cost, and only |x| >= 2^20 needs it. The CPU kernels' innermost loop (codegen/
# cpu.py) runs its blocks of elements with these `_near` versions, Cody-Waite alone,
# and ORs `far_trig` of every argument into a flag; a block whose flag is set runs again
# with `sin`, `cos` and `sincos`. Below 2^20 both compute the same operations on the
# same values (`_reduce_pio2_near`), so the results are bit for bit the same, NaN and
# inf included (their sin is `x - x` either way); at 2^20 and beyond, the `_near`
# results are wrong, and never kept. (haswell code on this machine, a float32 sincos
# loop: 2.2 -> 1.0 ns an element.)


@njit(inline="always")
def _sin_cos_near(x, shift):
    """`_sin_cos_quadrants` for |x| < 2^20 (and NaN, inf): Cody-Waite only."""
    nd, r = _reduce_pio2_near(np.float64(x))
    return _sin_cos_of(x, r, _int_of(nd), shift)


def _near_path(libm, float32, name):
    near = _float32_path(libm, float32, key=name)
    near.__name__ = near.__qualname__ = name
    near.__doc__ = (f"math.{libm.__name__}; float32 inside kernels: right for |x| < 2^20 only "
                    "(see far_trig).")
    return near


sin_near = _near_path(math.sin, lambda x: _sin_cos_near(x, 0)[0], "sin_near")
cos_near = _near_path(math.cos, lambda x: _sin_cos_near(x, 1)[0], "cos_near")


def sincos_near(x):
    """`sincos`; float32 inside kernels: right for |x| < 2^20 only (see far_trig)."""
    return math.sin(x), math.cos(x)


@overload(sincos_near, jit_options=_JIT)
def _sincos_near_by_type(x):
    if x == types.float32:
        return lambda x: _sin_cos_near(x, 0)
    if x == types.float64:
        return lambda x: _sin_cos_near_f64(x, 0)
    return lambda x: (math.sin(x), math.cos(x))


# `far_trig(x)`: whether the `_near` sin and cos of x may differ from `sin` and `cos`'s
# (defined at the end of the file, after the float64 functions it uses).


# ---------------------------------------------------------------- issue 12: float64
# (issue 12, float64) glibc's float64 exp, sin, cos and tanh are scalar calls (4.3, 6.4,
# 7.4 and 13.4 ns an element), and one call in a loop body keeps LLVM from vectorizing
# it: W2 in float64 ran at 6% of the triad against float32's 24%. These are fdlibm's
# (Sun's freely distributable libm, as in FreeBSD and musl) algorithms and
# coefficients, each documented there as within 1 ulp, rewritten branch-free: every
# case is computed and one is selected, so the loop vectorizes (4 float64 lanes in a
# 256-bit register on AVX2 and AVX-512 alike). As NumPy (SIMD float64 since 1.22) and
# PyTorch (SLEEF, 1 ulp) do, float64 is no longer libm bit for bit. tanh is not
# fdlibm's: 1 - 2 / (e^2x + 1) with e^2x + 1 kept as a pair, or a rational function
# below 0.55 (musl's and glibc's tanh from expm1 was 2.1 ulp, three divisions
# and twice the time). Measured maximum error against an 80-bit long double
# reference on 10^7 arguments per function (random over each range plus its edges and,
# for sin and cos, the float64 nearest to multiples of pi/2:
# tests/codegen/exhaustive_float64.py): exp 0.869 ulp, log 0.830, log1p 0.836,
# expm1 0.820, sin 0.776, cos 0.777, tanh 0.809. FLOAT64_ULPS are these bounds with a
# margin, as the tests check them.
# exp's, tanh's and the sin and cos kernels' polynomials are multiply-adds (`_fma`):
# float64 W2 waited on the two floating-point ports (170 vector operations a 4-lane
# iteration; not on the divider), 6.75 -> 5.6 ns an element in L1; every bound above
# held or improved (exp 0.872, sin 0.794, tanh 0.888 before; cos 0.775).
# sin and cos reduce by Cody-Waite below |x| = 2^20; at and beyond, `sin`, `cos` and
# `sincos` call libm for that element. The CPU kernels' blocks run `sin_near` and the
# rest first, as for float32: pi/2 to 119 bits (fdlibm's medium reduction, two rounds),
# enough except within |x| 2^-64 of a multiple of pi/2, which `far_trig` flags with
# |x| >= 2^20 (the block runs again in full); the full functions take the same
# reduction where it is enough, so the two give the same bits, and pi/2 to 152 bits
# where not. (7 operations fewer a sin or cos: W2 in float64 4% faster.)

FLOAT64_ULPS = {"exp": 0.9, "log": 0.85, "log1p": 0.85, "expm1": 0.85, "tanh": 0.85,
                "sin": 0.82, "cos": 0.82}


_TWO_52 = 4503599627370496.0
_TWO_52_BITS = 0x4330000000000000


@_helper
def _power_of_two(k):
    """2^k for an int64 -1022 <= k <= 1023, from its bits (masked so that the shift
    stays defined for the unselected lanes' garbage)."""
    return _float_of(((k + 1023) & 0x7FF) << 52)


@_helper
def _scale(y, k):
    """y 2^k for an int64 |k| <= 2000, in two steps so that neither factor leaves the
    normal range: the first product is exact, the second rounds once (subnormal
    results), or overflows."""
    half = k >> 1
    return y * _power_of_two(half) * _power_of_two(k - half)


@_helper
def _exponent_of(bits):
    """The biased exponent field of float64 bits, as a float64 (through the 2^52
    shifter: AVX2 has no int64 -> float64 vector conversion)."""
    return _float_of(((bits >> 52) & 0x7FF) | _TWO_52_BITS) - _TWO_52


# fdlibm e_exp.c: ln 2 in two parts (_E_LN2_HI has 32 significant bits: k _E_LN2_HI is
# exact for |k| < 2^21) and the Remez coefficients of its rational form of e^r.
_E_LN2_HI = 6.93147180369123816490e-01
_E_LN2_LO = 1.90821492927058770002e-10
_EP1, _EP2, _EP3 = 1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05
_EP4, _EP5 = -1.65339022054652515390e-06, 4.13813679705723846039e-08


@_helper
def _power_of_two_shifted(t):
    """2^k for t = k + 1.5 * 2^52 (k's two's complement in t's low bits: shifted up 52,
    the shifter's bits leave), -1022 <= k <= 1023: two vector operations where
    `_power_of_two(_int_of(k))` took five."""
    return _float_of((_bits_of(t) << 52) + _ONE_BITS)


@_helper
def _exp_reduced(x):
    """(t, k, hi, tail) with e^x = 2^k (1 + hi - tail) for float64 |x| < 1000: x = k ln 2 + r,
    |r| <= ln 2 / 2, r = hi - lo with hi exact, and tail = lo - r c / (2 - c), fdlibm's
    form of e^r - 1 - r, and t = k + 1.5 * 2^52 (k's integer in its low bits). (A
    polynomial instead, without the division, made W2 in float64 slower: the divider
    has room, the multiply-add ports do not.)"""
    t = _fma(x, _LOG2E, _SHIFTER)
    k = t - _SHIFTER  # x / ln 2 rounded to nearest
    hi = _fma(k, -_E_LN2_HI, x)  # k _E_LN2_HI is exact: fused or not, the same
    lo = k * _E_LN2_LO
    r = hi - lo
    z = r * r
    c = _fma(-z, _fma(_fma(_fma(_fma(z, _EP5, _EP4), z, _EP3), z, _EP2), z, _EP1), r)
    return t, k, hi, lo - (r * c) / (2.0 - c)


def _exp_f64(x):
    # Beyond these e^x is inf or 0 (e^709.79 overflows, e^-745.14 underflows to 0),
    # and k stays within what _scale takes. NaN passes through.
    xc = _pick(x > 709.8, 709.8, x)
    xc = _pick(xc < -746.0, -746.0, xc)
    t, _, hi, tail = _exp_reduced(xc)
    # y 2^k in two steps as `_scale` (-1077 <= k <= 1024), the powers from t's bits;
    # a NaN x has a NaN y, whatever garbage the powers are
    k = _bits_of(t) - _SHIFTER_BITS
    half = k >> 1
    return (1.0 - (tail - hi)) * _float_of((half + 1023) << 52) * _float_of((k - half + 1023) << 52)


# fdlibm e_log.c: log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f).
_LG1, _LG2, _LG3 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01
_LG4, _LG5 = 2.222219843214978396e-01, 1.818357216161805012e-01
_LG6, _LG7 = 1.531383769920937332e-01, 1.479819860511658591e-01


@_helper
def _log_kernel(f):
    """(hfsq, s (hfsq + R)) for log(1 + f) = f - hfsq + s (hfsq + R), |f| < 0.42."""
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    return hfsq, s * (hfsq + t2 + t1)


@_helper
def _split_sqrt_half(value):
    """(k, m) with value = 2^k m, m in [sqrt(1/2), sqrt(2)), for a positive normal
    float64 (k as a float64), read from the bits as `_log_positive` does."""
    bits = _bits_of(value) + (_ONE_BITS - _SQRT_HALF_BITS)
    return _exponent_of(bits) - 1023.0, _float_of((bits & _MANTISSA) + _SQRT_HALF_BITS)


def _log_f64(x):
    subnormal = x < 2.2250738585072014e-308
    k, m = _split_sqrt_half(_pick(subnormal, x * 18014398509481984.0, x))  # * 2^54
    k = k - _pick(subnormal, 54.0, 0.0)
    f = m - 1.0
    hfsq, tail = _log_kernel(f)
    y = k * _E_LN2_HI - ((hfsq - (tail + k * _E_LN2_LO)) - f)
    y = _pick(x < 0.0, math.nan, y)
    y = _pick(x == 0.0, -math.inf, y)
    return _pick(x < math.inf, y, x)  # inf and NaN are their own log


def _log1p_f64(x):
    # musl's log1p: u = 1 + x rounded; c = the rounding error over u, the first-order
    # correction; while u is in [sqrt(1/2), sqrt(2)) f is x itself and exact.
    u = 1.0 + x
    k, m = _split_sqrt_half(_pick(u > 0.0, u, 1.0))
    c = _pick(k >= 2.0, 1.0 - (u - x), x - (u - 1.0)) / u
    c = _pick(k < 54.0, c, 0.0)
    near = k == 0.0
    f = _pick(near, x, m - 1.0)
    c = _pick(near, 0.0, c)
    hfsq, tail = _log_kernel(f)
    y = tail + (k * _E_LN2_LO + c) - hfsq + f + k * _E_LN2_HI
    y = _pick(x < -1.0, math.nan, y)
    y = _pick(x == -1.0, -math.inf, y)
    y = _pick(x < math.inf, y, x)  # inf and NaN are their own log1p
    return _pick(x == 0.0, x, y)  # keeps the sign of zero


# fdlibm s_expm1.c: a rational approximation of r/2 coth(r/2) on |r| <= ln 2 / 2 and
# one formula per range of k, each arranged to lose nothing to cancellation.
_XQ1, _XQ2, _XQ3 = -3.33333333333331316428e-02, 1.58730158725481460165e-03, -7.93650757867487942473e-05
_XQ4, _XQ5 = 4.00821782732936239552e-06, -2.01099218183624371326e-07


@njit(inline="always")  # too big for LLVM's inliner, which would leave a call
def _expm1_f64_body(x):
    # Beyond these expm1 is inf or -1 (to float64 precision); NaN passes through.
    xc = _pick(x > 709.8, 709.8, x)
    xc = _pick(xc < -40.0, -40.0, xc)
    k = (xc * _LOG2E + _SHIFTER) - _SHIFTER
    hi = xc - k * _E_LN2_HI
    lo = k * _E_LN2_LO
    r = hi - lo
    c = (hi - r) - lo
    hfx = 0.5 * r
    hxs = r * hfx
    r1 = 1.0 + hxs * (_XQ1 + hxs * (_XQ2 + hxs * (_XQ3 + hxs * (_XQ4 + hxs * _XQ5))))
    t = 3.0 - r1 * hfx
    e = hxs * ((r1 - t) / (6.0 - r * t))
    y0 = r - (r * e - hxs)  # k == 0
    e = (r * (e - c) - c) - hxs
    y_minus_1 = 0.5 * (r - e) - 0.5
    y_1 = _pick(r < -0.25, -2.0 * (e - (r + 0.5)), 1.0 + 2.0 * (r - e))
    ki = _int_of(k)
    y_far = _scale(1.0 - (e - r), ki) - 1.0  # k <= -2 or k > 56
    two_minus_k = _power_of_two(-ki)
    y_mid = _scale((1.0 - two_minus_k) - (e - r), ki)  # 2 <= k < 20
    y_high = _scale((r - (e + two_minus_k)) + 1.0, ki)  # 20 <= k <= 56
    y = _pick(k < 20.0, y_mid, y_high)
    y = _pick((k <= -2.0) | (k > 56.0), y_far, y)
    y = _pick(k == 1.0, y_1, y)
    y = _pick(k == -1.0, y_minus_1, y)
    return _pick(k == 0.0, y0, y)


def _expm1_f64(x):
    return _pick(x == 0.0, x, _expm1_f64_body(x))  # keeps the sign of zero


# |x| <= 0.55: tanh x = x + x^3 P(x^2) / Q(x^2), Cephes' (Moshier's) rational form for
# |x| < 0.625 (tanh.c); x^3 P / Q is at most a tenth of tanh x. (A degree-10 polynomial
# instead was 0.77 ulp there, and W2 in float64 3% slower: the divider has room, the
# multiply-add ports do not.)
_TNP0, _TNP1, _TNP2 = -9.64399179425052238628e-01, -9.92877231001918586564e+01, -1.61468768441708447952e+03
_TNQ0, _TNQ1, _TNQ2 = 1.12811678491632931402e+02, 2.23548839060100448583e+03, 4.84406305325125486048e+03
_TANH_SMALL = 0.55  # tanh 0.55 > 1/2: above, 2 / (e^2x + 1) < 1/2 is subtracted from 1


def _tanh_f64(x):
    # Two formulas, both computed, one selected.
    w = abs(x)
    w = _pick(w > 20.0, 20.0, w)  # tanh 20 rounds to 1; NaN passes through
    t = w * w
    p = (_fma(_fma(t, _TNP0, _TNP1), t, _TNP2)
         / _fma(_fma(t + _TNQ0, t, _TNQ1), t, _TNQ2))
    small = _fma(w * t, p, w)  # keeps 0.0 (the sign comes last)
    # 1 - s, s = 2 / (d + d_lo), d + d_lo = (2^k + 1) + 2^k (e^r - 1): e^2w + 1 to about
    # 2^-60 (2^k + 1 is exact for k <= 52; beyond, s is below 2^-53 anyway).
    shifted, k, hi, tail = _exp_reduced(w + w)  # (t is w^2)
    two_k = _power_of_two_shifted(shifted)  # 0 <= k <= 58
    a = two_k + 1.0
    e_r = hi - tail  # e^r - 1, and what its rounding left out:
    e_r_lo = (hi - e_r) - tail
    b = two_k * e_r
    d = a + b
    d_lo = _fma(two_k, e_r_lo, b - (d - a))  # |b| < a: d + d_lo = a + b exactly
    s = 2.0 / d
    y = 1.0 - s
    # 1 - s as the pair y + ((1 - y) - s), then + s d_lo / d (d_lo's first-order share)
    large = y + _fma(s * d_lo, 0.5 * s, (1.0 - y) - s)
    y = _pick(w > _TANH_SMALL, large, small)
    return _pick(_bits_of(x) < 0, -y, y)  # the sign bit: tanh(-0.0) is -0.0


# fdlibm k_sin.c and k_cos.c (FreeBSD's revision of k_cos): sin and cos of y0 + y1,
# |y0 + y1| <= pi/4, y1 a tail below an ulp of y0.
_KS1, _KS2, _KS3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_KS4, _KS5, _KS6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_KC1, _KC2, _KC3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_KC4, _KC5, _KC6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11
# pi/2 in four parts (fdlibm e_rem_pio2.c): the first three 33 bits each, so that
# n times each is exact for n < 2^20; the fourth the rest, to 152 bits in all.
_RP1, _RP2 = 1.57079632673412561417e+00, 6.07710050630396597660e-11
_RP3, _RP3T = 2.02226624871116645580e-21, 8.47842766036889956997e-32


@_helper
def _two_sum(a, b):
    """(s, e) with s + e = a + b exactly, s = fl(a + b) (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@_helper
def _reduce_pio2_f64(x):
    """(n, y0, y1) with x = n pi/2 + y0 + y1, for |x| < 2^20: x - n pi/2 exactly to
    about 2^-100 absolute (the closest float64 below 2^20 to a multiple of pi/2 is
    about 2^-60 from it), as a pair."""
    n = np.rint(x * _TWO_OVER_PI) + 0.0
    r = x - n * _RP1  # exact: n _RP1 is, and within a factor 2 of x
    s, e = _two_sum(r, -(n * _RP2))
    s2, e2 = _two_sum(s, -(n * _RP3))
    tail = (e + e2) - n * _RP3T
    y0 = s2 + tail
    return n, y0, tail - (y0 - s2)


# fdlibm e_rem_pio2.c's medium reduction, two rounds: pi/2 as _RP1 + _RP2 + _RP2T, 119 bits.
_RP2T = 2.02226624879595063154e-21
_TWO_M64 = 5.421010862427522e-20  # 2^-64


@_python_helper
def _reduce_pio2_f64_near(x):
    """(n, y0, y1) as `_reduce_pio2_f64`, for |x| < 2^20, with 7 fewer operations: y0 + y1
    is within |n| 2^-121 of x - n pi/2, so within 2^-56 |y0| unless |y0| < |x| 2^-64
    (`_hard_pio2`; below 2^20 that is x within 2^-44 of a multiple of pi/2: the sin or
    cos of 1 float64 in about 10^13 random ones), where the 152-bit one is needed."""
    # n = rint(x 2/pi), ties to even as rint, by the 1.5 * 2^52 shifter (+0.0 for 0):
    # two additions where rint took two operations, adding 0.0 one, and the quadrant
    # `_sin_cos_reduced` wants is then n's bits plus the shifter (`_int_of` less one)
    n = (x * _TWO_OVER_PI + _SHIFTER) - _SHIFTER
    t = x - n * _RP1  # exact, as n _RP2 is
    w = n * _RP2
    r = t - w
    w = n * _RP2T - ((t - r) - w)
    y0 = r - w
    return n, y0, (r - y0) - w


@_python_helper
def _hard_pio2(x, y0):
    """Whether `_reduce_pio2_f64_near`'s y0 for x may be short of 2^-56 |y0|."""
    return abs(y0) < abs(x) * _TWO_M64


@_helper
def _sin_cos_kernels(y0, y1):
    z = y0 * y0
    v = z * y0
    r = _fma(_fma(_fma(_fma(z, _KS6, _KS5), z, _KS4), z, _KS3), z, _KS2)
    sin_y = y0 - _fma(-v, _KS1, _fma(z, _fma(-v, r, 0.5 * y1), -y1))
    w = z * z
    r = _fma(z, _fma(_fma(z, _KC3, _KC2), z, _KC1), w * w * _fma(_fma(z, _KC6, _KC5), z, _KC4))
    hz = 0.5 * z
    w = 1.0 - hz
    cos_y = w + (((1.0 - w) - hz) + _fma(z, r, -(y0 * y1)))
    return sin_y, cos_y


@_helper
def _sin_cos_near_f64(x, shift):
    """sin(x + shift pi/2), sin(x + (shift + 1) pi/2) where `far_trig` is False (|x| < 2^20
    and not `_hard_pio2`), NaN and inf: the CPU kernels' near pass."""
    n, y0, y1 = _reduce_pio2_f64_near(x)
    return _sin_cos_reduced(x, n, y0, y1, shift)


@_helper
def _sin_cos_full_f64(x, shift):
    """`_sin_cos_near_f64` for |x| < 2^20, the hard cases too: the near reduction where
    it is good enough, so that the two give the same bits there, else the 152-bit one."""
    n, y0, y1 = _reduce_pio2_f64_near(x)
    _, y0_full, y1_full = _reduce_pio2_f64(x)  # the same n
    hard = _hard_pio2(x, y0)
    return _sin_cos_reduced(x, n, _pick(hard, y0_full, y0), _pick(hard, y1_full, y1), shift)


@_helper
def _sin_cos_reduced(x, n, y0, y1, shift):
    """`_sin_cos_near_f64` once x = n pi/2 + y0 + y1 is reduced."""
    sin_y, cos_y = _sin_cos_kernels(y0, y1)
    quadrant = _bits_of(n + _SHIFTER) + shift  # n's two low bits (see the reduction)
    odd = (quadrant & 1) != 0
    sign = (quadrant & 2) << 62  # the sign bit, set in quadrants 2 and 3
    first = _float_of(_bits_of(_pick(odd, cos_y, sin_y)) ^ sign)
    second = _float_of(_bits_of(_pick(odd, -sin_y, cos_y)) ^ sign)
    # inf and NaN give NaN without a test: n is inf or NaN, and x - n pi/2 NaN
    return _pick(x == 0.0, _pick(shift == 0, x, 1.0), first), second  # sin(-0.0) is -0.0


def _sin_f64(x):
    if abs(x) < _FAR:  # a branch: only the far blocks of CPU kernels and CUDA-less code
        return _sin_cos_full_f64(x, 0)[0]
    return math.sin(x)


def _cos_f64(x):
    if abs(x) < _FAR:
        return _sin_cos_full_f64(x, 1)[0]
    return math.cos(x)


@_helper
def _sincos_f64(x):
    if abs(x) < _FAR:
        return _sin_cos_full_f64(x, 0)
    return math.sin(x), math.cos(x)


# Each float64 version, by the name `_float32_path` looks up (`libm`'s, or the `_near`
# functions' own): compiled and inlined as the float32 ones are.
FLOAT64 = {
    "exp": _exp_f64, "log": _log_f64, "log1p": _log1p_f64, "expm1": _expm1_f64,
    "tanh": _tanh_f64, "sin": _sin_f64, "cos": _cos_f64,
    "sin_near": lambda x: _sin_cos_near_f64(x, 0)[0],
    "cos_near": lambda x: _sin_cos_near_f64(x, 1)[0],
}


def far_trig(x):
    """Whether the `_near` sin and cos of x may differ from `sin` and `cos`'s: |x| >= 2^20
    (inf too; NaN is not far); for float64 also x within |x| 2^-64 of a multiple of
    pi/2. This Python version for calls from Python; kernels compile the overload."""
    if isinstance(x, (float, np.float64)):
        _, y0, _ = _reduce_pio2_f64_near(np.float64(x))
        return abs(x) >= _FAR or bool(_hard_pio2(x, y0))
    return abs(np.float64(x)) >= _FAR


@overload(far_trig, jit_options=_JIT)
def _far_trig_jit(x):
    if x == types.float64:
        return lambda x: (abs(x) >= _FAR) | _hard_pio2(x, _reduce_pio2_f64_near(x)[1])
    return lambda x: abs(np.float64(x)) >= _FAR
