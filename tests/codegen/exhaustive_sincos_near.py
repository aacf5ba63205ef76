"""Every float32 (all 2^32 bit patterns): scalar_math's sin_near, cos_near and sincos_near
give the bits of sin, cos and sincos wherever far_trig is False, and far_trig is True
exactly where |x| >= 2^20. Not part of the suite (about a minute on 2 cores); run

    python tests/codegen/exhaustive_sincos_near.py

after changing the float32 sin and cos (issue 12, item a; tests/codegen/test_sincos_near.py
checks a sample).
"""
from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit, prange

from fusegrad.codegen import scalar_math as fm

SLICE = 1 << 24  # bit patterns per call


@njit(parallel=True, error_model="numpy")
def _results(x, near, full, far):
    for i in prange(x.size):
        near[0, i], near[1, i] = fm.sincos_near(x[i])
        near[2, i], near[3, i] = fm.sin_near(x[i]), fm.cos_near(x[i])
        full[0, i], full[1, i] = fm.sincos(x[i])
        full[2, i], full[3, i] = fm.sin(x[i]), fm.cos(x[i])
        far[i] = fm.far_trig(x[i])


def main() -> int:
    start = time.perf_counter()
    near, full = np.empty((4, SLICE), np.float32), np.empty((4, SLICE), np.float32)
    far = np.empty(SLICE, np.bool_)
    differ = misflagged = far_count = 0
    for first in range(0, 1 << 32, SLICE):
        x = np.arange(first, first + SLICE, dtype=np.uint64).astype(np.uint32).view(np.float32)
        _results(x, near, full, far)
        with np.errstate(invalid="ignore"):  # signalling NaNs, widened
            misflagged += int((far != (np.abs(x.astype(np.float64)) >= 2.0 ** 20)).sum())
        far_count += int(far.sum())
        differ += int((near.view(np.uint32) != full.view(np.uint32))[:, ~far].any(axis=0).sum())
    print(f"{1 << 32:,} float32: {differ} differ, {misflagged} misflagged, "
          f"{far_count:,} far (run in full), {time.perf_counter() - start:.0f} s")
    return 1 if differ or misflagged else 0


if __name__ == "__main__":
    sys.exit(main())
