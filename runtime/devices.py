"""Whether CUDA can be used (through numba.cuda, which is optional), and the one check
made before anything is put on 'cuda': an eager CUDA tensor, compile_grad's
device="cuda", or a CUDA executable. A clear error then, not a Numba traceback at the
first launch."""
from __future__ import annotations

import functools

from fusegrad.ir.errors import FusegradError


@functools.cache
def cuda_available() -> bool:
    try:
        from numba import cuda  # importing it costs; only asked for when CUDA is named
        return bool(cuda.is_available())
    except Exception:   # numba-cuda missing, no driver, broken install: all mean "no"
        return False


class CudaUnavailable(FusegradError, AssertionError):
    """No usable CUDA: a FusegradError, and the AssertionError PyTorch raises there."""


def require_cuda() -> None:
    if not cuda_available():
        raise CudaUnavailable(
            "fusegrad: CUDA is not available, so nothing can run on 'cuda': "
            "numba.cuda.is_available() is False (CUDA is unavailable without a CUDA GPU and "
            "driver, and without Numba's CUDA target: pip install numba-cuda). Check "
            "fusegrad.cuda.is_available() first and stay on the CPU otherwise, or set "
            "NUMBA_ENABLE_CUDASIM=1 before numba is imported to run the CUDA kernels on "
            "Numba's simulator.")
