"""codegen/scalar_math.py: the float32 exp, log, tanh, sin, cos, log1p, expm1 and erf
kernels use, against float64 NumPy (libm's erf), and the vectorized block sum.

Measured on all 2^32 float32 inputs: max 0.5007 ulp (exp), 0.501 (log), 0.507 (tanh),
0.529 (sin, cos). The sweeps here take every 257th bit pattern of the domain (4099th
for sin and cos, whose domain is every float32) plus every float32 near each
threshold, and allow 0.51 ulp (0.54 for sin and cos). log1p, expm1 and erf (issue 11,
item 6), on all 2^32 float32 inputs against float64 libm: max 0.5006, 0.50001 and
0.5014 ulp; the sweeps here take every 1031st for log1p and erf.
"""
import json
import math
import os
import re
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import njit

from fusegrad.codegen import scalar_math as fm


def elementwise(f):
    @njit(error_model="numpy")
    def kernel(a, out):
        for i in range(a.shape[0]):
            out[i] = f(a[i])
    return kernel


NAMES = ("exp", "log", "tanh", "sin", "cos", "log1p", "expm1", "erf")
FAST = {name: elementwise(getattr(fm, name)) for name in NAMES}
LIBM = {name: elementwise(getattr(math, name)) for name in NAMES}
EXACT = {name: getattr(np, name, None) for name in NAMES}
# NumPy has no erf: float64 libm's, through the same loop.
EXACT["erf"] = lambda a: run(LIBM["erf"], a)
BOUND = {"exp": 0.51, "log": 0.51, "tanh": 0.51, "sin": 0.54, "cos": 0.54,
         "log1p": 0.51, "expm1": 0.51, "erf": 0.51}  # ulps


def run(kernel, values):
    out = np.empty_like(values)
    kernel(values, out)
    return out


def around(x, count=1 << 16):
    """Every float32 within `count` steps of x."""
    bits = np.float32(x).view(np.int32) + np.arange(-count, count + 1, dtype=np.int32)
    return bits.view(np.float32)


def between(lo, hi, stride=257):
    """Every `stride`-th float32 bit pattern in [lo, hi], through zero and subnormals."""
    def ordinal(x):  # float32 order as integers: negatives below zero
        b = np.int64(np.float32(x).view(np.int32))
        return b if b >= 0 else -(b & 0x7FFFFFFF)
    k = np.arange(ordinal(lo), ordinal(hi) + 1, stride, dtype=np.int64)
    bits = np.where(k >= 0, k, -k | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


LN_SMALLEST_NORMAL, LN_HALF_SMALLEST = -87.33654, -103.97208
DOMAINS = {
    "exp": [between(-110, 90), around(88.72284), around(LN_SMALLEST_NORMAL),
            around(LN_HALF_SMALLEST), around(0.0), around(0.34657359)],
    "log": [between(0, np.finfo(np.float32).max), around(1.0), around(2.0 ** -126),
            around(np.sqrt(0.5)), around(np.sqrt(2.0))],
    "tanh": [between(-12, 12), around(0.0), around(2.0 ** -13), around(0.625), around(-9.0)],
    # The whole range (Payne-Hanek above 2^20), the switch between the reductions,
    # quadrant edges, and the float32 nearest to multiples of pi/2 (the hardest cases).
    "sin": [between(-3.4e38, 3.4e38, stride=4099), around(2.0 ** 20), around(-(2.0 ** 20)),
            around(np.pi / 4), around(np.pi), around(1e22), around(16367173.0)],
}
DOMAINS["cos"] = DOMAINS["sin"] + [around(np.pi / 2), around(-3 * np.pi / 2)]
DOMAINS.update({
    # Where 1 + x stops being exact in float64 (2^-29, 2^29), the bit-read reduction's
    # edges (1 + x at sqrt(1/2) and sqrt(2)), and near -1, where log1p goes to -inf.
    "log1p": [between(-1, np.finfo(np.float32).max, stride=1031), around(0.0), around(2.0 ** -29),
              around(2.0 ** 29), around(np.sqrt(0.5) - 1), around(np.sqrt(2.0) - 1),
              around(-1.0 + 2.0 ** -20)],
    # The edges of exp's reduction (|x| = ln 2 / 2, where 2^n leaves 1), overflow, and
    # where expm1 rounds to -1.
    "expm1": [between(-110, 90), around(0.0), around(0.34657359), around(-0.34657359),
              around(88.72284), around(-17.32868), around(2.0 ** -25)],
    # The switch between the series and the tail at |x| = 1, and where erf reaches 1.
    "erf": [between(-5, 5, stride=1031), between(-3.4e38, 3.4e38, stride=65537), around(0.0),
            around(1.0), around(-1.0), around(3.9192059), around(4.0)],
})


def ulps(got, exact):
    """|got - exact| in float32 ulps at `exact` (a float64): 2^(e - 23) in the binade
    of exact, 2^-149 among the subnormals."""
    _, e = np.frexp(exact)
    ulp = np.maximum(np.ldexp(1.0, e - 24), 2.0 ** -149)
    return np.abs(got.astype(np.float64) - exact) / ulp


@pytest.mark.parametrize("name", FAST)
def test_float32_within_half_an_ulp(name):
    a = np.concatenate(DOMAINS[name])
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # log1p below -1
        exact = EXACT[name](a.astype(np.float64))
        rounded = exact.astype(np.float32)
    got = run(FAST[name], a)
    finite = np.isfinite(rounded)
    np.testing.assert_array_equal(got[~finite], rounded[~finite])
    assert np.max(ulps(got[finite], exact[finite])) <= BOUND[name]


SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1e-38,
                     1.0, -1.0, 88.72283, 88.72284, 89.0, -87.33654, -103.97207, -103.97209,
                     -110.0, 3.4e38, -3.4e38, -0.99999994, 4.0, -4.0], dtype=np.float32)


@pytest.mark.parametrize("name", FAST)
def test_float32_special_values_as_numpy(name):
    with np.errstate(all="ignore"):
        expected = EXACT[name](SPECIALS.astype(np.float64)).astype(np.float32)
    got = run(FAST[name], SPECIALS)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)  # NaN matches NaN; +0.0 matches -0.0
    np.testing.assert_array_equal(np.signbit(got[:2]), np.signbit(expected[:2]))


def test_special_values_spelled_out():
    exp, log, tanh = (run(FAST[name], SPECIALS[:6]) for name in ("exp", "log", "tanh"))
    assert list(exp[:4]) == [1, 1, np.inf, 0] and np.isnan(exp[4:6]).all()
    assert list(log[:3]) == [-np.inf, -np.inf, np.inf] and np.isnan(log[3:6]).all()
    assert list(tanh[:4]) == [0, 0, 1, -1] and np.isnan(tanh[4:6]).all()
    assert np.signbit(tanh[1]) and not np.signbit(tanh[0])
    sin, cos = (run(FAST[name], SPECIALS[:6]) for name in ("sin", "cos"))
    assert list(sin[:2]) == [0, 0] and np.signbit(sin[1]) and np.isnan(sin[2:6]).all()
    assert list(cos[:2]) == [1, 1] and np.isnan(cos[2:6]).all()
    assert run(FAST["exp"], np.float32([-100.0]))[0] == np.float32(np.exp(-100.0))  # subnormal
    smallest = np.float32(1e-45)  # 2^-149
    assert run(FAST["log"], np.array([smallest]))[0] == np.float32(np.log(np.float64(smallest)))


def test_log1p_expm1_erf_special_values_spelled_out():
    log1p, expm1, erf = (run(FAST[name], SPECIALS[:6]) for name in ("log1p", "expm1", "erf"))
    assert list(log1p[:3]) == [0, 0, np.inf] and np.isnan(log1p[3:6]).all()  # log1p(-inf)
    assert list(expm1[:4]) == [0, 0, np.inf, -1] and np.isnan(expm1[4:6]).all()
    assert list(erf[:4]) == [0, 0, 1, -1] and np.isnan(erf[4:6]).all()
    for zeros in (log1p, expm1, erf):
        assert not np.signbit(zeros[0]) and np.signbit(zeros[1])
    assert run(FAST["log1p"], np.float32([-1.0, -1.5]))[0] == -np.inf
    assert np.isnan(run(FAST["log1p"], np.float32([-1.5]))[0])
    tiny = np.float32([1e-45, -1e-45, 1e-30])  # log1p, expm1 of tiny x are x
    for name in ("log1p", "expm1"):
        np.testing.assert_array_equal(run(FAST[name], tiny), tiny)


def llvm_of(kernel):
    kernel(np.ones(4, np.float32), np.ones(4, np.float32))
    return kernel.inspect_llvm()[kernel.signatures[0]]


LIBM_CALL = r"call [^@\n]*@(llvm\.)?(exp|log|tanh|sin|cos|erf)"  # log1pf, expm1f too  # llvm.exp.v16f32: 16 expf calls


def float_lanes(llvm: str) -> int:
    """The widest vector of float32 in the IR (0: none)."""
    return max(map(int, re.findall(r"<(\d+) x float>", llvm)), default=0)


@pytest.mark.parametrize("name", FAST)
def test_float32_loop_vectorizes(name):
    """On this machine, whatever its vector instructions: the loop vectorizer made a
    vector body, and no libm call is left in it. How wide is the target's business
    (see test_float32_lanes_per_target)."""
    llvm = llvm_of(FAST[name])
    assert "llvm.loop.isvectorized" in llvm and float_lanes(llvm) >= 4
    assert not re.search(LIBM_CALL, llvm)
    assert re.search(LIBM_CALL, llvm_of(LIBM[name]))  # the check sees libm when it is there


# Lanes per vector iteration, the same on AVX2 (haswell) and AVX-512 (skylake-avx512,
# whose LLVM tuning prefers 256-bit vectors): every float32 function fills a 256-bit
# register with float32 (its float64 arithmetic takes two). On a target that prefers
# 512-bit vectors (znver4, say) all of them are twice as wide. sin and cos were 4 lanes
# with scalar loads on AVX2 until their Payne-Hanek reduction stopped reading a table
# (LLVM judged vpgatherqq unprofitable there; W2 96.9 ms on an AVX2-only EPYC).
LANES = 8


def kernel_spellings() -> dict[str, str]:
    """Each function's element expression as the CPU kernels spell it (the primitives'
    own `spell`), sigmoid and softplus (ops.softplus's composition) included."""
    from fusegrad.ir import primitives as P

    def spell(primitive, *args):
        return primitive.spell([f"({a})" for a in args], np.dtype(np.float32), {})
    spellings = {name: spell(getattr(P, name), "x") for name in NAMES}
    spellings["sigmoid"] = spell(P.sigmoid, "x")
    tail = spell(P.log1p, spell(P.exp, spell(P.neg, spell(P.abs_, "x"))))
    spellings["softplus"] = spell(P.add, spell(P.maximum, "x", "np.float32(0.0)"), tail)
    return spellings


LANES_SCRIPT = """
import json, math, re
import numpy as np
from numba import njit
from fusegrad.codegen import scalar_math
found = {}
for name, expression in %r.items():
    namespace = dict(np=np, math=math, scalar_math=scalar_math, njit=njit)
    exec("def element(x):\\n    return " + expression, namespace)
    element = njit(inline="always")(namespace["element"])
    @njit("void(float32[::1], float32[::1])", error_model="numpy")  # compiled, never run
    def kernel(a, out):
        for i in range(a.shape[0]):
            out[i] = element(a[i])
    llvm = kernel.inspect_llvm()[kernel.signatures[0]]
    # The vector loop's blocks: from each "vector.body" label to the next label.
    body = "\\n".join(re.findall(r"^vector\\.body[^\\n]*:.*?(?=^[\\w.]+:|\\Z)", llvm, re.S | re.M))
    found[name] = dict(
        vectorized="llvm.loop.isvectorized" in llvm and bool(body),
        lanes=max(map(int, re.findall(r"<(\\d+) x float>", body)), default=0),
        libm=bool(re.search(%r, llvm)),
        # table reads (gathers) and work done one lane at a time: extracts and
        # inserts, scalar loads, calls that are not vector intrinsics
        lane_by_lane=sorted(set(re.findall(r"extractelement|insertelement|gather"
                                           r"|= load (?!<)\\S+|call [^@\\n]*@(?!llvm\\.\\w+\\.v\\d)[\\w.]+",
                                           body))))
print(json.dumps(found))
"""


@pytest.mark.parametrize("cpu", ["haswell", "skylake-avx512"])
def test_float32_lanes_per_target(cpu):
    """Compiled for an explicit target in a subprocess (the target is fixed when Numba
    starts), so the expectation holds whatever CPU runs the suite: every function's
    float32 loop is vectorized at full width, with no libm call and nothing done one
    lane at a time in its body (LLVM vectorizes around scalarized code too)."""
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES="")  # "": the CPU's own
    result = subprocess.run([sys.executable, "-c", LANES_SCRIPT % (kernel_spellings(), LIBM_CALL)],
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert set(found) == set(NAMES) | {"sigmoid", "softplus"}
    expected = dict(vectorized=True, lanes=LANES, libm=False, lane_by_lane=[])
    assert {name: seen for name, seen in found.items() if seen != expected} == {}


def test_lane_by_lane_code_is_seen():
    """The inspection finds what it looks for: a table read per element (the old sin
    reduction's) on haswell, and libm's sin anywhere."""
    spellings = {"table": "scalar_math._TWO_OVER_PI_PAIRS[np.int64(x) & 3] * x",
                 "libm": "math.sin(x)"}
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="")
    result = subprocess.run([sys.executable, "-c", LANES_SCRIPT % (spellings, LIBM_CALL)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["table"]["lane_by_lane"] != [] and found["libm"]["libm"]


def test_compiling_them_warns_nothing(tmp_path, monkeypatch, recwarn):
    """Numba warns about its own SSA variables when it inlines code with branches into
    a parallel kernel; the helpers leave it nothing to say to the user."""
    import fusegrad as fg
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))  # compile, do not load
    f = fg.compile_grad(lambda x, y: (fg.sin(x) * y + fg.cos(x * y)).sum())
    x = np.linspace(-3, 3, 1 << 16, dtype=np.float32)  # big enough for the threaded kernel
    value, _ = f(x, x)
    # Numba issues these under its own filters: only a recorder sees them.
    assert [str(w.message) for w in recwarn] == []
    np.testing.assert_allclose(value, (np.sin(x) * x + np.cos(x * x)).sum(), rtol=1e-5)


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


@njit
def block_extrema(terms, count, start):
    return fm.block_max(terms, count, start), fm.block_min(terms, count, start)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_block_max_and_min(dtype):
    terms = (np.random.default_rng(2).standard_normal(1031) * 100).astype(dtype)
    high, low = block_extrema(terms, 1000, dtype(0))  # only the first `count` terms
    assert high == max(terms[:1000].max(), 0) and low == min(terms[:1000].min(), 0)
    assert block_extrema(terms, 0, dtype(7)) == (7, 7)  # the start alone


def test_block_extrema_nan_wins_as_in_numpy():
    terms = np.array([1.0, np.nan, 3.0, -np.inf], np.float32)
    for count in (2, 4):
        assert all(np.isnan(v) for v in block_extrema(terms, count, np.float32(0)))
    assert np.isnan(block_extrema(terms, 1, np.float32(np.nan))).all()
    assert block_extrema(terms, 1, np.float32(-np.inf)) == (1.0, -np.inf)


def test_block_extrema_vectorize():
    """float64 through LLVM's `maximum`; float32 as int32 extrema of ordered bits
    (issue 12)."""
    def llvm_for(dtype):
        block_extrema(np.ones(4, dtype), 4, dtype(0))
        (signature,) = [s for s in block_extrema.signatures if s[2] == numba.from_dtype(dtype)]
        return block_extrema.inspect_llvm(signature)
    llvm = llvm_for(np.float64)
    assert re.search(r"llvm\.maximum\.v(4|8)f64", llvm)
    assert re.search(r"llvm\.minimum\.v(4|8)f64", llvm)
    llvm = llvm_for(np.float32)
    assert re.search(r"llvm\.smax\.v(8|16)i32", llvm)
    assert re.search(r"llvm\.smin\.v(8|16)i32", llvm)


@njit
def _folded_extrema(terms, count, start):
    """The reference: one `maximum` and `minimum` after another, as before issue 12."""
    high = low = start
    for i in range(count):
        high, low = fm._maximum(high, terms[i]), fm._minimum(low, terms[i])
    return high, low


def test_float32_block_extrema_as_llvm_maximum():
    """Ordered int32 keys give `maximum`'s and `minimum`'s results: signed zeros
    (-0 < +0), infinities, subnormals, NaNs of either sign (the NaN itself)."""
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.0],
                        np.float32)
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF], np.uint32).view(np.float32)
    rng = np.random.default_rng(5)
    for trial in range(300):
        pool = specials if trial % 3 else np.concatenate([specials, nans[trial % 4:][:1]])
        terms = rng.choice(pool, rng.integers(0, 40))
        start = rng.choice(np.concatenate([specials, nans]) if trial % 5 == 0 else specials)
        got = block_extrema(terms, len(terms), start)
        expected = _folded_extrema(terms, len(terms), start)
        for g, e in zip(got, expected):
            bits = np.float32([g, e]).view(np.uint32)  # the sign of zero too
            assert (np.isnan(g) and np.isnan(e)) or bits[0] == bits[1], \
                (terms, start, got, expected)


# ---------------------------------------------------------------- issue 12: float64
# float64 exp, log, log1p, expm1, tanh, sin and cos have their own vectorizable versions
# (fdlibm's algorithms, branch-free), no longer libm bit for bit: each within its
# documented bound (scalar_math.FLOAT64_ULPS, measured on 10^7 arguments a function by
# tests/codegen/exhaustive_float64.py), checked here on a fixed sample of the same kind.

def _exhaustive_float64():
    """The big check's module, loaded by path (the tests import no helper modules, so
    they work under any pytest import mode)."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "exhaustive_float64", Path(__file__).with_name("exhaustive_float64.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


F64 = _exhaustive_float64()


@pytest.mark.parametrize("name", F64.NAMES)
def test_float64_within_documented_ulps(name):
    a = F64.sample(name, 40_000)
    error, where = F64.max_ulps(name, a)
    assert error <= fm.FLOAT64_ULPS[name], (name, error, where)
    assert error > 0.5  # the sample reaches the hard cases (and the check can fail)


SPECIALS64 = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
                       1.0, -1.0, 709.782712893384, 709.7827128933841, -708.3964185322641,
                       -745.1332191019411, -745.1332191019412, 1e300, -1e300, 2.0 ** 20,
                       -(2.0 ** 20), np.nextafter(2.0 ** 20, 0), 1e22, 20.0, 21.0, -38.0, -40.0,
                       -0.9999999999999999, 2.0 ** 54, 1e-300])


@pytest.mark.parametrize("name", F64.NAMES)
def test_float64_special_values_as_numpy(name):
    """Infinities, NaN, zeros (with their sign), and exactly representable results
    (1, -1, inf, 0 at the overflow and underflow thresholds) as NumPy gives them; the
    rest within the bound."""
    got = run(FAST[name], SPECIALS64)
    with np.errstate(all="ignore"):
        expected = EXACT[name](SPECIALS64)
    exact = ~np.isfinite(expected) | np.isin(expected, [0.0, 1.0, -1.0])
    np.testing.assert_array_equal(got[exact], expected[exact])
    np.testing.assert_array_equal(np.signbit(got[expected == 0]), np.signbit(expected[expected == 0]))
    with np.errstate(all="ignore"):
        reference = getattr(np, name)(SPECIALS64[~exact].astype(np.longdouble))
    assert np.max(F64.ulps(got[~exact], reference), initial=0) <= fm.FLOAT64_ULPS[name]


def test_float64_sin_cos_far_and_near_agree():
    """Beyond 2^20 float64 sin and cos are libm's; below, the kernels' near pass and the
    full functions give the same bits, so a block's results do not depend on whether
    it ran again."""
    far = np.array([2.0 ** 20, -(2.0 ** 20), 1e22, -3e300, 1.7e308])
    for name in ("sin", "cos"):
        np.testing.assert_array_equal(run(FAST[name], far), run(LIBM[name], far))
    near = np.concatenate([np.linspace(-2.0 ** 20, 2.0 ** 20, 4001)[1:-1], SPECIALS64[:5]])
    assert not run(FAR_TRIG, near[:-5]).any()  # (the specials: inf is far)
    for name in ("sin", "cos"):
        full, near_only = run(FAST[name], near), run(elementwise(getattr(fm, name + "_near")), near)
        np.testing.assert_array_equal(full, near_only)
        assert not np.array_equal(full, run(LIBM[name], near))  # not libm: the check can fail


FAR_TRIG = elementwise(fm.far_trig)


def test_float64_near_reduction_flags_its_hard_cases():
    """The near pass reduces by pi/2 to 119 bits, short of 2^-56 |y0| only where x is
    within |x| 2^-64 of a multiple of pi/2: `far_trig` flags those (the block runs again
    in full), and the full functions take the 152-bit reduction there."""
    hard = np.array(F64.HARD_PIO2 + tuple(-x for x in F64.HARD_PIO2))
    assert run(FAR_TRIG, hard).all()
    assert all(fm.far_trig(x) for x in hard[:2])  # called from Python
    with np.errstate(all="ignore"):
        reference = {name: getattr(np, name)(hard.astype(np.longdouble)) for name in ("sin", "cos")}
    worst_near = 0.0
    for name in ("sin", "cos"):
        assert np.max(F64.ulps(run(FAST[name], hard), reference[name])) <= fm.FLOAT64_ULPS[name]
        near = run(elementwise(getattr(fm, name + "_near")), hard)
        worst_near = max(worst_near, np.max(F64.ulps(near, reference[name])))
    assert worst_near > fm.FLOAT64_ULPS["sin"]  # the flag is needed (and the check can fail)
    neighbours = np.concatenate([F64.around(x, 4)[[0, 8]] for x in F64.HARD_PIO2])
    assert not run(FAR_TRIG, neighbours).any()  # only the hard ones


_SIN_SUM = None


def test_float64_kernel_block_with_a_hard_case_runs_in_full():
    """A kernel's block holding one hard argument gives the full functions' bits."""
    import fusegrad as fg
    global _SIN_SUM
    _SIN_SUM = _SIN_SUM or fg.compile_grad(lambda x: fg.sin(x).sum())
    x = np.linspace(-4.0, 4.0, 3000)
    x[1500] = F64.HARD_PIO2[2]  # near an odd multiple of pi/2: cos is the hard one
    _, (gx,) = _SIN_SUM(x)  # cos x
    full = run(FAST["cos"], x)
    np.testing.assert_array_equal(gx, full)
    assert run(elementwise(fm.cos_near), x)[1500] != full[1500]


def test_float64_special_values_spelled_out():
    exp, log, tanh, sin, cos = (run(FAST[name], SPECIALS64[:5]) for name in ("exp", "log", "tanh", "sin", "cos"))
    assert list(exp[:4]) == [1, 1, np.inf, 0] and np.isnan(exp[4])
    assert list(log[:3]) == [-np.inf, -np.inf, np.inf] and np.isnan(log[3:5]).all()
    assert list(tanh[:4]) == [0, 0, 1, -1] and np.signbit(tanh[1]) and not np.signbit(tanh[0])
    assert list(sin[:2]) == [0, 0] and np.signbit(sin[1]) and np.isnan(sin[2:5]).all()
    assert list(cos[:2]) == [1, 1] and np.isnan(cos[2:5]).all()
    tiny = np.array([5e-324, -5e-324, 1e-300])  # log1p, expm1, tanh, sin of tiny x are x
    for name in ("log1p", "expm1", "tanh", "sin"):
        np.testing.assert_array_equal(run(FAST[name], tiny), tiny)
    assert run(FAST["log"], np.array([5e-324]))[0] == np.log(5e-324)  # subnormal argument
    assert run(FAST["exp"], np.array([-740.0]))[0] == np.exp(-740.0)  # subnormal result


def float64_spellings() -> dict[str, str]:
    """The float64 element expressions the CPU kernels' vector loops run: sin and cos
    as the near pass spells them (the full ones fall back to libm beyond 2^20)."""
    from fusegrad.ir import primitives as P

    def spell(primitive, *args):
        return primitive.spell([f"({a})" for a in args], np.dtype(np.float64), {})
    spellings = {name: spell(getattr(P, name), "x") for name in F64.NAMES}
    spellings["sin"], spellings["cos"] = "scalar_math.sin_near(x)", "scalar_math.cos_near(x)"
    spellings["sincos"] = "scalar_math.sincos_near(x)[0] * scalar_math.sincos_near(x)[1]"
    # the near pass ORs far_trig of every sin and cos argument into its block's flag
    spellings["far_trig"] = "scalar_math.sin_near(x) + np.float64(scalar_math.far_trig(x))"
    spellings["sigmoid"] = spell(P.sigmoid, "x")
    tail = spell(P.log1p, spell(P.exp, spell(P.neg, spell(P.abs_, "x"))))
    spellings["softplus"] = spell(P.add, spell(P.maximum, "x", "np.float64(0.0)"), tail)
    return spellings


# Lanes per vector iteration: a 256-bit register of float64 on AVX2 and on AVX-512
# (whose LLVM tuning for skylake-avx512 prefers 256-bit vectors, as for float32).
LANES_SCRIPT_F64 = LANES_SCRIPT.replace("float32[::1]", "float64[::1]").replace(" x float>", " x double>")


@pytest.mark.parametrize("cpu", ["haswell", "skylake-avx512"])
def test_float64_lanes_per_target(cpu):
    """As test_float32_lanes_per_target, for float64: compiled for the target in a
    subprocess, never run; vectorized, 4 lanes, no libm call, nothing lane by lane."""
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES="")
    result = subprocess.run([sys.executable, "-c", LANES_SCRIPT_F64 % (float64_spellings(), LIBM_CALL)],
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert set(found) == set(F64.NAMES) | {"sincos", "sigmoid", "softplus", "far_trig"}
    expected = dict(vectorized=True, lanes=4, libm=False, lane_by_lane=[])
    assert {name: seen for name, seen in found.items() if seen != expected} == {}


# (issue 12, float64 W2) The float64 loops were bound by the two floating-point ports,
# and Numba never fuses a multiply and an add on its own: exp's, tanh's and the sin and
# cos kernels' polynomials are `_fma`, a multiply and an add marked `contract` (one
# vfmadd each; W2's float64 kernel 6.4 -> 4.8 ns an element). At least this many a
# copy of the function (the vector loop and the scalar remainder hold one each).
FUSED_MULTIPLY_ADDS = {"exp": 7, "tanh": 14, "sin": 14, "cos": 14}


@pytest.mark.parametrize("name", sorted(FUSED_MULTIPLY_ADDS))
def test_float64_polynomials_are_fused_multiply_adds(name):
    run(FAST[name], np.array([0.5]))  # compiled for float64
    llvm = next(text for signature, text in FAST[name].inspect_llvm().items()
                if "float64" in str(signature))
    assert llvm.count("fmul contract") >= FUSED_MULTIPLY_ADDS[name]


def test_float64_compiling_them_warns_nothing(tmp_path, monkeypatch, recwarn):
    """test_compiling_them_warns_nothing for float64 (whose full sin and cos branch to
    libm beyond 2^20), through a kernel with a near pass and its far pass."""
    import fusegrad as fg
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))
    f = fg.compile_grad(lambda x, y: (fg.sin(x) * y + fg.cos(x * y) + fg.tanh(x) * fg.exp(y)).sum())
    y = np.linspace(-3, 3, 1 << 16)
    x = y.copy()
    x[7] = 3e6  # one block runs its far pass
    value, (gx, gy) = f(x, y)
    assert [str(w.message) for w in recwarn] == []
    expected = (np.sin(x) * y + np.cos(x * y) + np.tanh(x) * np.exp(y)).sum()
    np.testing.assert_allclose(value, expected, rtol=1e-13)
    expected_gx = np.cos(x) * y - np.sin(x * y) * y + (1 - np.tanh(x) ** 2) * np.exp(y)
    np.testing.assert_allclose(gx, expected_gx, rtol=1e-12, atol=1e-12)
