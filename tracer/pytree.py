"""Pytrees: nested dicts, lists, tuples and NamedTuples as `compile_grad` arguments.

An argument is walked once per call into a flat list of array leaves (the graph's
inputs, in a fixed order) and a *key*: the tree's structure, each array leaf's shape
and dtype, and the value of every other leaf (a constant of the trace). The key is
the trace's cache key, so it must never hold an array, nor an array's `repr` (NumPy
shortens it above 1,000 elements: a changed array would reuse an old trace). It also
describes the tree well enough to rebuild it with a gradient at each floating-point
leaf, as `jax.grad` returns them.

One key per node:

    (shape, dtype.str)                        an array
    (shape, dtype.str, ON_DEVICE)             an array in CUDA device memory
    (CONST, type, value)                      any other leaf: hashable, floats by repr
    (SEQUENCE, type, (child keys, ...))       a list, tuple or NamedTuple
    (MAPPING, type, (keys, ...), (child keys, ...))    a dict

A (nested) list or tuple of plain numbers is an array, as NumPy reads it.
"""
from __future__ import annotations

import numbers
import re
from typing import Any, Callable, Iterator

import numpy as np

from fusegrad.ir.errors import DTypeError, FusegradError, ShapeError, bare
from fusegrad.ir.graph import FLOATING
from fusegrad.runtime.device_arrays import (as_numba, from_dlpack, is_cuda_dlpack, is_device_array,
                                            shape_and_dtype)
from fusegrad.tracer.state import TensorState

CONST, SEQUENCE, MAPPING = "const", "sequence", "mapping"
# Marks the key of a leaf in CUDA device memory: such a call traces apart from one
# with host arrays (the CPU target refuses it; CUDA returns device arrays for it).
ON_DEVICE = "cuda"


class ArgumentError(FusegradError, TypeError):
    """An argument compile_grad cannot take."""


class UnhashableConstant(Exception):
    """A leaf that is neither an array nor hashable (raised with the leaf)."""


def flatten(arg: Any, leaves: list[np.ndarray]) -> tuple:
    """The key of `arg`; its array leaves are appended to `leaves`."""
    if is_device_array(arg) or _on_gpu(arg):
        array = device_leaf(arg._data if _on_gpu(arg) else arg)
        leaves.append(array)
        shape, dtype = shape_and_dtype(array)
        return (shape, dtype.str, ON_DEVICE)
    array = as_array(arg)
    if array is not None:
        leaves.append(array)
        return (array.shape, array.dtype.str)
    if _is_sequence(arg):
        return (SEQUENCE, type(arg), tuple(flatten(item, leaves) for item in arg))
    if isinstance(arg, dict):
        return (MAPPING, type(arg), tuple(arg), tuple(flatten(v, leaves) for v in arg.values()))
    return (CONST, type(arg), _const_key(arg))


def substitute(arg: Any, replace: Callable[[np.ndarray], Any]) -> Any:
    """`arg` with each array leaf `a` replaced by `replace(a)`, in `flatten`'s order."""
    array = (device_leaf(arg._data if _on_gpu(arg) else arg)
             if is_device_array(arg) or _on_gpu(arg) else as_array(arg))
    if array is not None:
        return replace(array)
    if _is_sequence(arg):
        return _rebuild(type(arg), [substitute(item, replace) for item in arg])
    if isinstance(arg, dict):
        return _rebuild_mapping(type(arg), arg, [substitute(v, replace) for v in arg.values()])
    return arg


def gradients(key: tuple, grads: Iterator[np.ndarray]) -> Any:
    """The tree of `key` with the next of `grads` at each floating-point array leaf and
    None at every other leaf (integer arrays and constants have no gradient)."""
    tag = key[0]
    if tag is CONST:
        return None
    if tag is SEQUENCE:
        return _rebuild(key[1], [gradients(k, grads) for k in key[2]])
    if tag is MAPPING:
        return _rebuild_mapping(key[1], key[2], [gradients(k, grads) for k in key[3]])
    return next(grads) if np.dtype(key[1]).kind == "f" else None


def leaf_paths(key: tuple, path: str) -> list[str]:
    """Where each array leaf of `key` sits, as Python spells it: ``params['w']``."""
    tag = key[0]
    if tag is CONST:
        return []
    if tag is SEQUENCE:
        fields = getattr(key[1], "_fields", None)
        return [p for i, k in enumerate(key[2])
                for p in leaf_paths(k, f"{path}.{fields[i]}" if fields else f"{path}[{i}]")]
    if tag is MAPPING:
        return [p for name, k in zip(key[2], key[3]) for p in leaf_paths(k, f"{path}[{name!r}]")]
    return [path]


def identifier(path: str) -> str:
    """A name for the IR value of a leaf: ``params['w']`` -> ``params_w``."""
    name = re.sub(r"\W+", "_", path).strip("_")
    return name if name.isidentifier() else f"leaf_{name}"


def as_array(arg: Any) -> np.ndarray | None:
    """`arg` as a graph input (C-contiguous, native-endian; the caller's array is never
    written to), or None when it is not an array."""
    if isinstance(arg, np.ndarray):
        array = arg
    elif isinstance(arg, TensorState):
        array = arg.detach().numpy()
    elif isinstance(arg, (list, tuple)) and _is_array_literal(arg):
        try:
            array = np.asarray(arg)  # accepted like NumPy does (documented in the README)
        except ValueError as error:  # ragged
            raise ShapeError(f"a nested list of numbers is taken as an array, and {bare(error)}") from None
    else:
        return None
    return checked_array(array)


def check_dtype(array: np.ndarray) -> None:
    # float16 and long double pass NumPy's checks but Numba has no CPU arrays of
    # them: refuse here rather than fail with a Numba traceback at the first call.
    dtype = array.dtype
    if dtype.kind not in "biu" and dtype not in FLOATING and dtype.newbyteorder("=") not in FLOATING:
        raise DTypeError(f"unsupported array dtype {array.dtype} (shape {array.shape}): arrays "
                         f"must be float32 or float64 (or bool or integer, which get no "
                         f"gradient); convert with .astype(np.float32)")


def checked_array(array: np.ndarray) -> np.ndarray:
    check_dtype(array)
    dtype = array.dtype
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    # Not np.ascontiguousarray: it returns 0-d arrays as shape (1,), which made a
    # scalar argument trace as a vector (and its gradient come back 1-d).
    return np.asarray(array, order="C")


def _is_array_literal(seq: list | tuple) -> bool:
    """A non-empty (nested) list or tuple of numbers only."""
    if not seq:
        return False
    for item in seq:
        if isinstance(item, (list, tuple)):
            if not _is_array_literal(item):
                return False
        elif not isinstance(item, numbers.Number):
            return False
    return True


def _is_sequence(arg: Any) -> bool:
    kind = type(arg)
    return kind is list or kind is tuple or (isinstance(arg, tuple) and hasattr(kind, "_fields"))


def _rebuild(kind: type, items: list) -> Any:
    if kind is list:
        return items
    if kind is tuple:
        return tuple(items)
    return kind(*items)  # a NamedTuple


def _rebuild_mapping(kind: type, keys, values: list) -> dict:
    pairs = zip(keys, values)
    if kind is dict:
        return dict(pairs)
    try:
        return kind(pairs)          # OrderedDict and the like
    except TypeError:               # a subclass with another constructor (defaultdict)
        return dict(pairs)


def _const_key(arg: Any) -> Any:
    try:
        hash(arg)
    except TypeError:
        raise UnhashableConstant(arg) from None
    # 0.0 == -0.0 (and they hash alike), yet x / 0.0 and x / -0.0 differ in sign; and
    # nan != nan would retrace on every call. repr tells floats apart exactly.
    if isinstance(arg, (float, complex, np.floating, np.complexfloating)):
        return repr(arg)
    return arg


def find_path(arg: Any, leaf: Any, path: str) -> str | None:
    """Where `leaf` (by identity) sits in `arg`, for error messages."""
    if arg is leaf:
        return path
    if _is_sequence(arg):
        fields = getattr(type(arg), "_fields", None)
        for i, item in enumerate(arg):
            found = find_path(item, leaf, f"{path}.{fields[i]}" if fields else f"{path}[{i}]")
            if found:
                return found
    elif isinstance(arg, dict):
        for name, item in arg.items():
            found = find_path(item, leaf, f"{path}[{name!r}]")
            if found:
                return found
    return None


# ---------------------------------------------------------------- device arrays (issue 13, item 1)

class _Described:
    """Shape and dtype alone, for check_dtype's message."""

    def __init__(self, shape: tuple, dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype


def device_leaf(arg: Any):
    """A device array as a graph input: itself where it has a NumPy dtype and shape
    (Numba's, CuPy's), else (torch) a Numba device array on the same memory. Never
    copied; its dtype checked as a host array's is. (A DLPack-only array: through CuPy.)"""
    if is_cuda_dlpack(arg):
        arg = from_dlpack(arg)
    shape, dtype = shape_and_dtype(arg)
    check_dtype(_Described(shape, dtype))
    if isinstance(getattr(arg, "dtype", None), np.dtype):
        return arg
    return as_numba(arg)


def _on_gpu(arg: Any) -> bool:
    """An eager tensor whose storage is on the GPU: its device array is the leaf."""
    return isinstance(arg, TensorState) and arg._device.type == "cuda"
