"""Arrays that already live on a CUDA device, as `compile_grad(device="cuda")` takes
and returns them (issue 13, item 1).

A device array is anything exposing `__cuda_array_interface__` (CuPy arrays, torch
CUDA tensors, Numba device arrays) or a Numba device array itself (the simulator's
have no interface, only the `__cuda_ndarray__` marker real ones also carry). They
go into the kernels without a copy: Numba's own arrays as they are, the others
wrapped by `numba.cuda.as_cuda_array`, which shares their memory. Results come back
as device arrays of the kind that came in where that is free: CuPy arrays when a
CuPy array was passed (`cupy.asarray` shares the memory), Numba device arrays
otherwise (`cupy.asarray`, `torch.as_tensor(..., device="cuda")` and
`jax.dlpack` take those without a copy).

Nothing here imports numba.cuda until a device array is actually seen: the check
is on the object's type, so CPU-only callers pay nothing.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def is_device_array(obj: Any) -> bool:
    """Whether `obj` is an array in CUDA device memory. (hasattr on the instance, not
    the type: torch defines the interface on every tensor and raises AttributeError
    for one on the CPU.)"""
    return (getattr(type(obj), "__cuda_ndarray__", False) is True
            or hasattr(obj, "__cuda_array_interface__"))


def as_numba(obj: Any):
    """`obj` as a Numba device array sharing its memory (Numba's own unchanged)."""
    if getattr(type(obj), "__cuda_ndarray__", False) is True:
        return obj
    from numba import cuda
    return cuda.as_cuda_array(obj)


def shape_and_dtype(obj: Any) -> tuple[tuple, np.dtype]:
    """The shape and NumPy dtype of a device array, read from its interface where it
    has one (torch's dtype is not a NumPy dtype)."""
    interface = getattr(obj, "__cuda_array_interface__", None)
    if interface is not None:
        return tuple(interface["shape"]), np.dtype(interface["typestr"])
    return tuple(obj.shape), np.dtype(obj.dtype)


def is_cupy(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "cupy"


def wants_cupy(args) -> bool:
    """Whether results should come back as CuPy arrays: a CuPy array was passed."""
    return any(is_cupy(a) for a in args)


def to_cupy(array):
    """A Numba device array as a CuPy array on the same memory (no copy)."""
    import cupy
    return cupy.asarray(array)


def device_copy_into(target, source) -> None:
    """Write the Numba device array `source` (same shape; any dtype, cast as NumPy's
    unsafe casting) into the Numba device array `target`, on the device (issue 13, s3)."""
    if hasattr(target, "_ary"):   # the simulator's arrays wrap NumPy's
        np.copyto(target._ary, source._ary, casting="unsafe")
    elif (source.dtype == target.dtype and target.is_c_contiguous()
          and source.is_c_contiguous()):
        target.copy_to_device(source)            # cuMemcpyDtoD
    else:   # strided (a view), or a cast: Numba's assignment kernel, on the device
        target[()] = source   # (`()`: the whole array; Numba's indexing has no `...`)
