"""Whether CUDA can be used: through numba.cuda, which is optional."""
from __future__ import annotations

from typing import Any

from fusegrad.runtime import devices as cuda_check
from fusegrad.tracer import dtypes

CPU = dtypes.device("cpu")


def device_count() -> int:
    if not cuda_check.cuda_available():
        return 0
    from numba import cuda
    return len(cuda.gpus)


def checked_device(spec: Any) -> dtypes.device:
    """The device `spec` names, CUDA checked to be usable (index 0 when none is given)."""
    device = dtypes.device(spec)
    if device.type == "cuda":
        cuda_check.require_cuda()
        if device.index is None:
            device = dtypes.device("cuda", 0)
    return device
