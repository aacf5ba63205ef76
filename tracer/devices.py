"""Whether CUDA can be used: through numba.cuda, which is optional."""
from __future__ import annotations

from typing import Any

import numpy as np

from fusegrad.runtime import devices as cuda_check
from fusegrad.runtime.device_arrays import as_numba, is_device_array
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


# ---------------------------------------------------------------- storage on the device (issue 13, item 3)

def on_device(data: Any) -> bool:
    """Whether a tensor's storage is in CUDA device memory (a Numba device array)."""
    return type(data) is not np.ndarray and is_device_array(data)


def to_storage(data: Any, device: dtypes.device):
    """`data` as the storage of a tensor on `device`: a NumPy array on the CPU, a
    Numba device array on CUDA; copied across the bus only when it is on the other."""
    if device.type == "cuda":
        if on_device(data):
            return data
        from numba import cuda
        return cuda.to_device(np.array(data, order="C"))   # (keeps 0-d: not ascontiguousarray)
    return host_array(data)


def host_array(data: Any) -> np.ndarray:
    """A tensor's storage as a NumPy array: itself on the CPU, a copy from the device."""
    return as_numba(data).copy_to_host() if on_device(data) else data
