"""The float64 functions of codegen/scalar_math.py against an 80-bit long double
reference (NumPy's float128 on x86: glibc's expl, logl, ..., with 11 more bits than
float64), on random arguments spanning each function's range plus the hard cases:
prints the maximum error in ulps per function. Not a test (a minute per function):

    python tests/codegen/exhaustive_float64.py [count per function, default 10^7]

tests/codegen/test_scalar_math.py checks the same bounds on a fixed sample. The
reference is within about 2^-11 ulp of the exact value, so the bounds printed are
to about 0.001 ulp.
"""
import math
import sys

import numpy as np
from numba import njit

from fusegrad.codegen import scalar_math as fm

NAMES = ("exp", "log", "log1p", "expm1", "tanh", "sin", "cos")


def elementwise(f):
    @njit(error_model="numpy")
    def kernel(a, out):
        for i in range(a.shape[0]):
            out[i] = f(a[i])
    return kernel


@njit(error_model="numpy")
def _sincos_kernel(a, sin_out, cos_out):
    for i in range(a.shape[0]):
        sin_out[i], cos_out[i] = fm.sincos_near(a[i])


@njit(error_model="numpy")
def _far_kernel(a, far):
    for i in range(a.shape[0]):
        far[i] = fm.far_trig(a[i])


def log_uniform(rng, count, lo_exponent, hi_exponent, signed=True):
    """|x| = 2^u with u uniform in [lo_exponent, hi_exponent), random signs."""
    x = np.exp2(rng.uniform(lo_exponent, hi_exponent, count))
    return x * rng.choice([-1.0, 1.0], count) if signed else x


def random_bits(rng, count, hi_bits=0x7FF0000000000000):
    """Uniformly random bit patterns of positive finite float64s (subnormals too)."""
    return rng.integers(0, hi_bits, count, dtype=np.int64).view(np.float64)


def around(x, count=2000):
    """The float64s within `count` steps of x."""
    bits = np.float64(x).view(np.int64) + np.arange(-count, count + 1, dtype=np.int64)
    return bits.view(np.float64)


def pi_over_2_multiples(rng, count, top):
    """The float64 nearest k pi/2 and its neighbours: where x - k pi/2 cancels most."""
    k = np.rint(rng.uniform(1, top, count)).astype(np.longdouble)
    x = (k * (np.longdouble("3.14159265358979323846264338327950288") / 2)).astype(np.float64)
    return np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)])


# Below 2^20, float64s among the closest to a multiple of pi/2 relative to their size
# (|x - k pi/2| / x 1.4e-22 to 2.5e-21; found with mpmath among the nearest float64s to
# each k pi/2): the near reduction is short there (`scalar_math._hard_pio2`).
HARD_PIO2 = (321307.9594422229, 826882.8943881015, 229174.47169039503, 458348.94338079006,
             916697.8867615801, 966242.373705018, 961605.3829483194, 366215.4556289622)


def sample(name, count, seed=12):
    """Arguments for `name`: most of them random over its range, the rest its edges."""
    rng = np.random.default_rng(seed)
    q = count // 4
    if name == "exp":
        parts = [rng.uniform(-746, 710, 2 * q), log_uniform(rng, 2 * q, -60, 9.5),
                 around(709.782712893384), around(-708.3964185322641), around(-745.1332191019411),
                 around(0.34657359027997264), around(1.0)]
    elif name == "log":
        parts = [random_bits(rng, 2 * q), 1.0 + log_uniform(rng, q, -60, -1),
                 rng.uniform(0.5, 2.0, q), around(1.0), around(np.sqrt(0.5)), around(np.sqrt(2.0)),
                 around(2.2250738585072014e-308), around(5e-324)]
    elif name == "log1p":
        parts = [random_bits(rng, q), log_uniform(rng, q, -60, 0), -1.0 + log_uniform(rng, q, -53, -1, False),
                 rng.uniform(-0.3, 0.5, q), around(np.sqrt(0.5) - 1), around(np.sqrt(2.0) - 1),
                 around(-1.0 + 2.0 ** -30), around(2.0 ** 53), around(2.0 ** 54)]
    elif name == "expm1":
        parts = [rng.uniform(-40, 710, q), rng.uniform(-3, 3, q), log_uniform(rng, 2 * q, -60, 5.5),
                 around(0.34657359027997264), around(-0.34657359027997264), around(1.0397207708399179),
                 around(709.782712893384), around(-38.0), around(20 * 0.6931471805599453)]
    elif name == "tanh":
        parts = [rng.uniform(-20, 20, q), rng.uniform(-1.5, 1.5, q), log_uniform(rng, q, -60, 4.5),
                 rng.uniform(-0.6, 0.6, q),  # the rational's hardest cases are below 0.55
                 around(0.5493061443340549), around(0.25541281188299536), around(20.0), around(1e-300)]
    else:  # sin, cos: the vectorized range, the hard cases in it, and beyond (libm)
        parts = [log_uniform(rng, 2 * q, -30, 20), rng.uniform(-2 ** 20, 2 ** 20, q),
                 pi_over_2_multiples(rng, q // 6, 2 ** 20 / (np.pi / 2) - 1),
                 log_uniform(rng, q // 2, 20, 1023), around(2.0 ** 20), around(-(2.0 ** 20)),
                 around(np.pi / 4), around(np.pi / 2)] + [around(x, 20) for x in HARD_PIO2]
    return np.concatenate(parts)


def ulps(got, reference):
    """|got - reference| in float64 ulps at the long double `reference`."""
    _, e = np.frexp(reference.astype(np.float64))
    ulp = np.maximum(np.ldexp(1.0, e - 53), 2.0 ** -1074)
    return np.abs(got.astype(np.longdouble) - reference) / ulp.astype(np.longdouble)


def max_ulps(name, a):
    """(max ulp error, the argument where it is) of `name` on the float64s a."""
    out = np.empty_like(a)
    elementwise(getattr(fm, name))(a, out)
    with np.errstate(all="ignore"):
        reference = getattr(np, name)(a.astype(np.longdouble))
        finite = np.isfinite(reference.astype(np.float64))
        # where the reference overflows float64 the result must be that inf
        assert np.array_equal(out[~finite], reference[~finite].astype(np.float64), equal_nan=True), name
        error = ulps(out[finite], reference[finite])
    worst = int(np.argmax(error))
    return float(error[worst]), float(a[finite][worst])


def main(count=10 ** 7):
    print(f"{'function':9} {'arguments':>10} {'max ulp':>8}  at x")
    for name in NAMES:
        a = sample(name, count)
        error, where = max_ulps(name, a)
        print(f"{name:9} {a.size:10d} {error:8.3f}  {where!r}", flush=True)
    # sincos shares the reduction: it must give sin's and cos's own results
    a = sample("sin", min(count, 10 ** 6))
    far = np.empty(a.size, np.bool_)
    _far_kernel(a, far)
    assert far[np.isin(a, HARD_PIO2)].all() and not far[np.abs(a) < 2.0 ** 20].all()
    a = a[~far]
    s, c, s1, c1 = (np.empty_like(a) for _ in range(4))
    _sincos_kernel(a, s, c)
    elementwise(fm.sin)(a, s1)
    elementwise(fm.cos)(a, c1)
    assert np.array_equal(s, s1) and np.array_equal(c, c1)
    print("sincos_near: sin's and cos's own results, bit for bit, wherever far_trig is False")


if __name__ == "__main__":
    main(int(float(sys.argv[1])) if len(sys.argv) > 1 else 10 ** 7)
