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
            or hasattr(obj, "__cuda_array_interface__") or is_cuda_dlpack(obj))


def as_numba(obj: Any):
    """`obj` as a Numba device array sharing its memory (Numba's own unchanged)."""
    if getattr(type(obj), "__cuda_ndarray__", False) is True:
        return obj
    from numba import cuda
    return cuda.as_cuda_array(from_dlpack(obj) if is_cuda_dlpack(obj) else obj)


def shape_and_dtype(obj: Any) -> tuple[tuple, np.dtype]:
    """The shape and NumPy dtype of a device array, read from its interface where it
    has one (torch's dtype is not a NumPy dtype)."""
    if is_cuda_dlpack(obj):
        obj = from_dlpack(obj)
    interface = getattr(obj, "__cuda_array_interface__", None)
    if interface is not None:
        return tuple(interface["shape"]), np.dtype(interface["typestr"])
    return tuple(obj.shape), np.dtype(obj.dtype)


def is_cupy(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "cupy"


def wants_cupy(args) -> bool:
    """Whether results should come back as CuPy arrays: a CuPy array (or a DLPack
    array, which came in through CuPy) was passed."""
    return any(is_cupy(a) or is_cuda_dlpack(a) for a in args)


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


# ---------------------------------------------------------------- DLPack (issue 13, s3 item 3)
# An array that offers only DLPack on a CUDA device (a JAX array; any array library's
# `__dlpack__` without `__cuda_array_interface__`) goes in through CuPy, whose
# `cupy.from_dlpack` wraps the same memory (no copy) in an array that has the
# interface; results then come back as CuPy arrays, which speak DLPack to the
# caller's library (`jax.dlpack.from_dlpack(out)`, `torch.from_dlpack(out)`).
# Numba (0.68; numba.cuda) has no DLPack import of its own: without CuPy such an
# array is refused, saying what to pass instead.

_DLPACK_CUDA = (2, 13)   # kDLCUDA, kDLCUDAManaged


def is_cuda_dlpack(obj: Any) -> bool:
    """Whether `obj` speaks DLPack, without the CUDA array interface, from CUDA memory."""
    if isinstance(obj, np.ndarray) or hasattr(obj, "__cuda_array_interface__"):
        return False
    device = getattr(obj, "__dlpack_device__", None)
    if device is None or not hasattr(obj, "__dlpack__"):
        return False
    try:
        return int(device()[0]) in _DLPACK_CUDA
    except Exception:   # noqa: BLE001 -- a CPU object whose device query fails is not ours
        return False


def from_dlpack(obj: Any):
    """A DLPack array on the GPU as a CuPy array on the same memory."""
    from fusegrad.ir.errors import UnsupportedError
    try:
        import cupy
    except ImportError:
        raise UnsupportedError(
            f"a {type(obj).__name__} on the GPU offers DLPack but not __cuda_array_interface__"
            ": fusegrad takes such arrays through CuPy (cupy.from_dlpack, no copy), which is "
            "not installed; install cupy (pip install cupy-cuda12x), or pass an array with "
            "the interface (CuPy, torch CUDA tensors, numba.cuda device arrays)") from None
    return cupy.from_dlpack(obj)
