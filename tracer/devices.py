"""Whether CUDA can be used: through numba.cuda, which is optional."""
from __future__ import annotations

from typing import Any

import numpy as np

from fusegrad.runtime import devices as cuda_check
from fusegrad.runtime.device_arrays import as_numba, device_copy_into, is_device_array
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
    device_copy_into(as_numba(target), as_numba(source))


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


# ---------------------------------------------------------------- views of device storage (issue 13, s3 item 2)
# A slice, reshape, transpose or expand of a CUDA tensor is a view of its device
# array (new shape and strides over the same memory), as on the CPU; a write through
# it is seen by the base. Where no view exists (a reshape of a strided array) the op
# runs as a kernel and its result is a copy, as PyTorch's reshape is.

VIEW_PRIMITIVES = ("reshape", "transpose", "slice", "broadcast_to")


def device_view(array: Any, node) -> Any:
    """The view of the device array `array` that the layout node `node` computes, or
    None where it is not a view of it."""
    name, attrs = node.primitive.name, node.attrs
    shape = tuple(node.out.shape)
    if name == "reshape":
        if shape == tuple(array.shape):
            return array
        if array.is_c_contiguous():
            return array.reshape(shape)
        if [d for d in shape if d != 1] != [d for d in array.shape if d != 1]:
            return None   # (a strided array's reshape that would merge or split axes: a copy)
        if _simulated(array):   # only length-1 axes come or go: NumPy's reshape is a view
            return type(array)(array._ary.reshape(shape))
        kept = iter(s for d, s in zip(array.shape, array.strides) if d != 1)
        return _strided(array, shape, tuple(next(kept) if d != 1 else array.dtype.itemsize
                                            for d in shape))
    if name == "slice":
        if any(step <= 0 for _, _, step in attrs["index"]):
            return None   # (negative steps: a kernel; Numba's views take positive ones)
        return array[tuple(slice(*triple) for triple in attrs["index"])]
    if name == "transpose":
        perm = attrs["perm"] or tuple(reversed(range(array.ndim)))
        if _simulated(array):
            return type(array)(np.transpose(array._ary, perm))
        return _strided(array, shape, tuple(array.strides[p] for p in perm))
    if name == "broadcast_to":
        if _simulated(array):
            return type(array)(np.broadcast_to(array._ary, shape))
        lead = len(shape) - array.ndim
        strides = (0,) * lead + tuple(0 if size == 1 and shape[lead + i] != 1 else stride
                                      for i, (size, stride) in enumerate(zip(array.shape,
                                                                             array.strides)))
        return _strided(array, shape, strides)
    return None


def _strided(array: Any, shape: tuple, strides: tuple) -> Any:
    """A Numba device array over `array`'s memory, from its first element (numba's
    transpose is a copying kernel, and it has no broadcast)."""
    return type(array)(shape=shape, strides=strides, dtype=array.dtype, gpu_data=array.gpu_data)
