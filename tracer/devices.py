"""Whether CUDA can be used: through numba.cuda, which is optional."""
from __future__ import annotations

import functools


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


def require_cuda() -> None:
    """PyTorch's error when a CUDA tensor is asked for without CUDA."""
    if not cuda_available():
        raise AssertionError("fusegrad: CUDA is not available (numba.cuda found no usable GPU "
                             "and driver), so tensors cannot be moved to 'cuda'. Check "
                             "fusegrad.cuda.is_available() first and stay on the CPU otherwise.")
