"""Whether CUDA can be used: through numba.cuda, which is optional."""
from __future__ import annotations

import functools
from typing import Any

from fusegrad.ir.errors import FusegradError
from fusegrad.tracer import dtypes

CPU = dtypes.device("cpu")


@functools.cache
def cuda_available() -> bool:
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:   # numba-cuda missing, no driver, broken install: all mean "no"
        return False


def device_count() -> int:
    if not cuda_available():
        return 0
    from numba import cuda
    return len(cuda.gpus)


class CudaUnavailable(FusegradError, AssertionError):
    """No usable CUDA: a FusegradError, and the AssertionError PyTorch raises there."""


def require_cuda() -> None:
    """The one check before anything is put on 'cuda': a CUDA tensor or compile_grad's
    device="cuda" (a clear error now, not a Numba traceback at the first launch)."""
    if not cuda_available():
        raise CudaUnavailable(
            "fusegrad: CUDA is not available, so nothing can run on 'cuda': "
            "numba.cuda.is_available() is False (CUDA is unavailable without a CUDA GPU and "
            "driver, and without Numba's CUDA target: pip install numba-cuda). Check "
            "fusegrad.cuda.is_available() first and stay on the CPU otherwise, or set "
            "NUMBA_ENABLE_CUDASIM=1 before numba is imported to run the CUDA kernels on "
            "Numba's simulator.")


def checked_device(spec: Any) -> dtypes.device:
    """The device `spec` names, CUDA checked to be usable (index 0 when none is given)."""
    device = dtypes.device(spec)
    if device.type == "cuda":
        require_cuda()
        if device.index is None:
            device = dtypes.device("cuda", 0)
    return device
