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

        from fusegrad.runtime.cuda import bus_copies
        bus_copies["host_to_device"] += 1
        return cuda.to_device(np.array(data, order="C"))   # (keeps 0-d: not ascontiguousarray)
    return host_array(data)


def host_array(data: Any) -> np.ndarray:
    """A tensor's storage as a NumPy array: itself on the CPU, a copy from the device
    (counted in runtime.cuda.bus_copies, as the executables' copies are)."""
    if not on_device(data):
        return data
    from fusegrad.runtime.cuda import bus_copies
    bus_copies["device_to_host"] += 1
    return as_numba(data).copy_to_host()


# ---------------------------------------------------------------- writing device storage (issue 13, s3 item 1)
# In-place ops on CUDA tensors write their result (computed out of place, on the
# device) into the tensor's device array: a device-to-device copy, never the bus.

def copy_into(target: Any, source: Any) -> None:
    """Write `source` (same shape; any dtype, cast as NumPy's unsafe casting) into the
    storage `target`, on whichever device both are."""
    if not on_device(target):
        np.copyto(target, source, casting="unsafe")
        return
    target, source = as_numba(target), as_numba(source)
    if _simulated(target):   # the simulator's arrays wrap NumPy's
        np.copyto(target._ary, source._ary, casting="unsafe")
    elif (source.dtype == target.dtype and target.is_c_contiguous()
          and source.is_c_contiguous()):
        target.copy_to_device(source)            # cuMemcpyDtoD
    else:   # strided (a view), or a cast: Numba's assignment kernel, on the device
        target[...] = source


def copy_of(data: Any) -> Any:
    """A copy of a tensor's storage, on its device."""
    if not on_device(data):
        return np.array(data)
    from numba import cuda
    copy = cuda.device_array(data.shape, data.dtype)
    copy_into(copy, data)
    return copy


def may_share_memory(a: Any, b: Any) -> bool:
    """np.may_share_memory for storages on either device (CPU and CUDA never share).
    On the GPU, conservatively: whether both are in one allocation."""
    device_a, device_b = on_device(a), on_device(b)
    if not (device_a or device_b):
        return bool(np.may_share_memory(a, b))
    if device_a != device_b:
        return False
    a, b = as_numba(a), as_numba(b)
    if _simulated(a):
        return bool(np.may_share_memory(a._ary, b._ary))
    if a.size == 0 or b.size == 0:
        return False
    from numba.cuda.cudadrv import driver
    return driver.device_extents(a.gpu_data) == driver.device_extents(b.gpu_data)


def ones_on_device(shape: tuple, dtype: np.dtype):
    """A read-only device array of ones (backward()'s implicit seed): copied over once
    per shape and dtype, not once per backward()."""
    key = (tuple(shape), np.dtype(dtype))
    ones = _ONES.get(key)
    if ones is None:
        from numba import cuda
        ones = _ONES[key] = cuda.to_device(np.ones(shape, dtype))
    return ones


_ONES: dict = {}


def _simulated(array: Any) -> bool:
    return hasattr(array, "_ary")   # numba.cuda.simulator's FakeCUDAArray
