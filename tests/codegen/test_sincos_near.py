"""Issue 12, item a: float32 sin and cos in the CPU kernels' blocks reduce by Cody-Waite
alone (scalar_math's `*_near`) and run a block again in full when an argument is at
least 2^20 (`far_trig`). Their results are the full functions', bit for bit.

tests/codegen/exhaustive_sincos_near.py checks the functions on all 2^32 float32; here a
sample of every range, the threshold and the special values, and the kernels.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from fusegrad import ir
from fusegrad.codegen import SourceNames, emit, plan_kernels
from fusegrad.codegen import scalar_math as fm
from fusegrad.codegen.source import is_generated
from fusegrad.ir import ops
from fusegrad.ir.graph import Value
from fusegrad.runtime import Executable

F32 = np.dtype(np.float32)
TWO_20 = np.float32(2.0 ** 20)


@njit(error_model="numpy")
def _both(x, near, full, far):
    for i in range(x.size):
        near[0, i], near[1, i] = fm.sincos_near(x[i])
        near[2, i], near[3, i] = fm.sin_near(x[i]), fm.cos_near(x[i])
        full[0, i], full[1, i] = fm.sincos(x[i])
        full[2, i], full[3, i] = fm.sin(x[i]), fm.cos(x[i])
        far[i] = fm.far_trig(x[i])


def _sample() -> np.ndarray:
    """Every 4099th float32 bit pattern, every float32 near 2^20, pi/4's and the
    quadrant edges' neighbours, and the special values."""
    step = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    near = [np.float32(v).view(np.int32) + np.arange(-4096, 4097, dtype=np.int32)
            for v in (2.0 ** 20, np.pi / 4, np.pi / 2, np.pi, 1e5 * np.pi)]
    specials = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45,
                           np.finfo(np.float32).max, -np.finfo(np.float32).max])
    return np.concatenate([step] + [n.view(np.float32) for n in near]
                          + [-n.view(np.float32) for n in near] + [specials])


def test_near_is_full_bit_for_bit_below_two_to_the_twenty():
    x = _sample()
    near, full = np.empty((4, x.size), F32), np.empty((4, x.size), F32)
    far = np.empty(x.size, np.bool_)
    _both(x, near, full, far)
    np.testing.assert_array_equal(far, np.abs(x) >= TWO_20)  # NaN is not far, inf is
    kept = ~far
    assert kept.sum() > x.size // 4
    assert (near[:, kept].view(np.uint32) == full[:, kept].view(np.uint32)).all()
    below = np.nextafter(TWO_20, np.float32(0))
    assert not fm.far_trig(below) and not fm.far_trig(-below) and fm.far_trig(-TWO_20)


def _graph(with_sum: bool):
    """sin and cos of one value stored (and summed), and a lone sin of another."""
    x, y = Value((4100,), F32, "x"), Value((4100,), F32, "y")
    with ir.building() as builder:
        s, c, t = ops.sin(x), ops.cos(x), ops.sin(ops.mul(x, y))
        outputs = (s, c, t)
        if with_sum:
            outputs += (ops.reduce_sum(ops.mul(s, c)),)
    return builder.finish((x, y), outputs)


@pytest.mark.parametrize("with_sum", [True, False], ids=["blocks-with-sums", "elementwise"])
def test_blocks_with_large_arguments_run_in_full(with_sum):
    """Blocks of 1024 (4100 elements: five, the last short) holding one huge argument,
    one inf, one NaN or none give the full functions' bits everywhere."""
    graph = _graph(with_sum)
    plan = plan_kernels(graph)
    (kernel,) = plan.steps
    source = emit(kernel, SourceNames(graph), plan)
    assert "scalar_math.sincos_near(x[i0])" in source and "scalar_math.sin_near(" in source
    assert source.count("if far:") == 1, source  # one function per kernel (codegen/cpu.py)
    x = np.random.default_rng(0).uniform(-10, 10, 4100).astype(F32)
    x[[5, 1030, 2100, 4099]] = [3e30, np.inf, np.nan, -(2.0 ** 20)]
    x[3000] = -0.0
    y = np.ones_like(x)
    y[7] = 1e10  # x * y far in block 0 only for the lone sin
    outputs = Executable(plan)([x, y])
    full = np.empty((4, x.size), F32)
    _both(x, np.empty_like(full), full, np.empty(x.size, np.bool_))
    for got, want in ((outputs[0], full[0]), (outputs[1], full[1])):
        assert (got.view(np.uint32) == want.view(np.uint32)).all()
    xy = x * y
    lone = np.empty((4, x.size), F32)
    _both(xy, np.empty_like(lone), lone, np.empty(x.size, np.bool_))
    assert (outputs[2].view(np.uint32) == lone[0].view(np.uint32)).all()
    if with_sum:
        assert np.isnan(outputs[3])  # sin(inf) is NaN
        finite = np.isfinite(x)
        outputs = Executable(plan)([np.where(finite, x, 1.0).astype(F32), y])
        expected = (full[0][finite].astype(np.float64) * full[1][finite]).sum()
        one = np.float64(np.sin(np.float32(1.0))) * np.cos(np.float32(1.0))
        expected += one * (~finite).sum()
        np.testing.assert_allclose(outputs[3], expected, rtol=1e-6)


def test_the_flag_is_the_templates_own_name():
    """`far` is in the kernels' vocabulary: an argument named `far` is renamed."""
    x = Value((4100,), F32, "far")
    with ir.building() as builder:
        y = ops.sin(x)
    graph = builder.finish((x,), (y,))
    plan = plan_kernels(graph)
    source = emit(plan.steps[0], SourceNames(graph), plan)
    assert "scalar_math.sin_near(far_v[i0])" in source and "far = False" in source
    assert is_generated("far")


def test_column_sums_keep_the_full_functions():
    """A block run twice would add its column partials twice: such kernels do not
    split off a near pass."""
    x = Value((6, 4), F32, "x")
    with ir.building() as builder:
        total = ops.reduce_sum(ops.sin(x), 0)
    graph = builder.finish((x,), (total,))
    plan = plan_kernels(graph)
    source = emit(plan.steps[0], SourceNames(graph), plan)
    assert "_near" not in source and "far" not in source, source


LOOP_SCRIPT = """
import json, re
import numpy as np
from numba import njit
from fusegrad.codegen import scalar_math as fm
from fusegrad.codegen.source import is_generated

@njit("boolean(float32[::1], float32[::1], float32[::1])", error_model="numpy")  # never run
def kernel(a, s, c):
    far = False
    for i in range(a.shape[0]):
        s[i], c[i] = fm.sincos_near(a[i])
        c[i] += fm.sin_near(a[i] * c[i]) + fm.cos_near(a[i] + s[i])
        far = far | fm.far_trig(a[i]) | fm.far_trig(a[i] * c[i])
    return far

llvm = kernel.inspect_llvm()[kernel.signatures[0]]
body = "\\n".join(re.findall(r"^vector\\.body[^\\n]*:.*?(?=^[\\w.]+:|\\Z)", llvm, re.S | re.M))
print(json.dumps(dict(
    lanes=max(map(int, re.findall(r"<(\\d+) x float>", body)), default=0),
    lane_by_lane=sorted(set(re.findall(r"extractelement|insertelement|gather|= load (?!<)\\S+"
                                       r"|call [^@\\n]*@(?!llvm\\.\\w+\\.v\\d)[\\w.]+", body))))))
"""


@pytest.mark.parametrize("cpu", ["haswell", "skylake-avx512"])
def test_near_pass_vectorizes_per_target(cpu):
    """The near pass, flag included, is 8 float32 lanes on AVX2 and AVX-512 with nothing
    done one lane at a time (compiled for the target in a subprocess, never run)."""
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES="")
    result = subprocess.run([sys.executable, "-c", LOOP_SCRIPT], env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == dict(lanes=8, lane_by_lane=[])
