"""Every float32 (all 2^32 bit patterns) through scalar_math's float32 exp and tanh
(or the functions named) against float64 libm rounded: prints the maximum error in
ulps over the finite results, and how many non-finite results, and signs of zero,
differ from libm's. Not part of the suite (about a minute per function on 2 cores):

    python tests/codegen/exhaustive_float32.py [--unfused] [exp tanh log ...]

--unfused compiles `_fma` as a separate multiply and add, as a CPU without fused
multiply-add runs it (issue 12: the bounds hold both ways). tests/codegen/
test_scalar_math.py checks the same bounds on a sample.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from fusegrad.codegen import scalar_math as fm

SLICE = 1 << 24  # bit patterns per call


@intrinsic
def _unfused(typingctx, a, b, c):
    if a == b == c == types.float64:
        def codegen(context, builder, signature, args):
            return builder.fadd(builder.fmul(args[0], args[1]), args[2])
        return types.float64(a, b, c), codegen


def checker(name):
    ours, libm = getattr(fm, name), getattr(math, name)

    @njit(parallel=True, error_model="numpy")
    def check(x, worst, wrong):
        """worst[i]: the error in ulps at x[i] (0 where libm's result is not finite);
        wrong[i]: a non-finite result or a zero's sign not as libm's."""
        for i in prange(x.size):
            got = np.float64(ours(x[i]))
            exact = libm(np.float64(x[i]))
            rounded = np.float64(np.float32(exact))
            if math.isfinite(rounded):
                ulp = max(math.ldexp(1.0, math.frexp(exact)[1] - 24), 2.0 ** -149)
                worst[i] = abs(got - exact) / ulp
                wrong[i] = rounded == 0.0 and got == 0.0 and (
                    math.copysign(1.0, got) != math.copysign(1.0, rounded))
            else:
                worst[i] = 0.0
                wrong[i] = not (got == rounded or (got != got and rounded != rounded))
    return check


def main(arguments: list[str]) -> int:
    if "--unfused" in arguments:
        fm._fma = _unfused  # before the first compile, which reads the global
    names = [a for a in arguments if not a.startswith("--")] or ["exp", "tanh"]
    worst, wrong = np.empty(SLICE), np.empty(SLICE, np.bool_)
    for name in names:
        start, check = time.perf_counter(), checker(name)
        largest, at, differ = 0.0, 0.0, 0
        for first in range(0, 1 << 32, SLICE):
            x = np.arange(first, first + SLICE, dtype=np.uint64).astype(np.uint32).view(np.float32)
            check(x, worst, wrong)
            i = int(np.argmax(worst))
            if worst[i] > largest:
                largest, at = float(worst[i]), float(x[i])
            differ += int(wrong.sum())
        print(f"{name}: max {largest:.5f} ulp (at {at!r}), {differ} special values differ, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
