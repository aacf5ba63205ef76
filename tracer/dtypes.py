"""PyTorch-style dtype, device and Size objects for the eager API.

A `dtype` wraps a NumPy dtype and prints as ``fusegrad.float32``. It compares equal
to its NumPy spellings (``np.float32``, ``np.dtype("float32")``, ``"float32"``) and
hashes like the NumPy dtype, so code written against either keeps working; NumPy
accepts it wherever a dtype is expected because it carries a ``.dtype`` attribute.

The module defines dtypes named `float`, `int` and `bool`, as torch does; below
them the builtins are reached through `builtins`.
"""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np


class dtype:  # noqa: N801  (PyTorch's spelling: fusegrad.dtype)
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, numpy_dtype: Any) -> None:
        self.name = name
        self.dtype = np.dtype(numpy_dtype)   # the NumPy dtype; the protocol NumPy reads

    @property
    def is_floating_point(self) -> bool:
        return self.dtype.kind == "f"

    @property
    def is_complex(self) -> bool:
        return self.dtype.kind == "c"

    @property
    def is_signed(self) -> bool:
        return self.dtype.kind in "fic"

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def kind(self) -> str:
        return self.dtype.kind

    def __repr__(self) -> str:
        return f"fusegrad.{self.name}"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, dtype):
            return self.dtype == other.dtype
        if other is None:
            return False
        try:
            return self.dtype == np.dtype(other)
        except TypeError:
            return NotImplemented

    def __hash__(self) -> int:
        return hash(self.dtype)

    def __reduce__(self):
        return (as_dtype, (self.name,))


float16 = half = dtype("float16", np.float16)
float32 = float = dtype("float32", np.float32)  # noqa: A001
float64 = double = dtype("float64", np.float64)
int8 = dtype("int8", np.int8)
int16 = short = dtype("int16", np.int16)
int32 = int = dtype("int32", np.int32)  # noqa: A001
int64 = long = dtype("int64", np.int64)
uint8 = dtype("uint8", np.uint8)
bool = dtype("bool", np.bool_)  # noqa: A001

_BY_NUMPY = {d.dtype: d for d in (float16, float32, float64, int8, int16, int32, int64, uint8, bool)}
DEFAULT_FLOAT = float32


def as_dtype(spec: Any) -> dtype:
    """A fusegrad dtype from a fusegrad dtype, a NumPy dtype or type, or a name."""
    if isinstance(spec, dtype):
        return spec
    if isinstance(spec, str) and spec in _NAMES:
        return _NAMES[spec]
    numpy_dtype = np.dtype(spec)
    found = _BY_NUMPY.get(numpy_dtype)
    if found is None:
        raise TypeError(f"fusegrad has no dtype for {numpy_dtype}")
    return found


def numpy_dtype(spec: Any) -> np.dtype | None:
    """The NumPy dtype of a dtype argument (None stays None)."""
    return None if spec is None else as_dtype(spec).dtype


# PyTorch's legacy tensor types (``fusegrad.FloatTensor``, ...), by name: the classes in
# `creation`, ``x.type()``'s answer and the version error's name all come from here.
LEGACY_TYPES = {"FloatTensor": float32, "DoubleTensor": float64, "HalfTensor": float16,
                "LongTensor": int64, "IntTensor": int32, "BoolTensor": bool, "ByteTensor": uint8}
_LEGACY_NAMES = {d: f"fusegrad.{name}" for name, d in LEGACY_TYPES.items()}


def legacy_type_name(numpy_dtype: Any) -> str:
    """``fusegrad.FloatTensor`` for float32 data; ``fusegrad.Tensor`` for a dtype without one."""
    return _LEGACY_NAMES.get(_BY_NUMPY.get(np.dtype(numpy_dtype)), "fusegrad.Tensor")


_NAMES = {"float": float32, "double": float64, "half": float16, "long": int64, "int": int32,
          "short": int16, **{d.name: d for d in _BY_NUMPY.values()}}


class device:  # noqa: N801
    """``fusegrad.device("cpu")``; compares equal to its string, as PyTorch's does."""

    __slots__ = ("type", "index")

    def __init__(self, spec: Any = "cpu", index: Any = None) -> None:
        if isinstance(spec, device):
            spec, index = spec.type, spec.index if index is None else index
        spec = str(spec)
        if ":" in spec:
            spec, number = spec.split(":", 1)
            index = builtins.int(number)
        if spec not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {spec}")
        self.type = spec
        self.index = index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            other = device(other)
        if not isinstance(other, device):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))


class Size(tuple):
    """PyTorch's torch.Size: a tuple that prints as ``fusegrad.Size([5, 3])``."""

    def __repr__(self) -> str:
        return f"fusegrad.Size({list(self)})"

    __str__ = __repr__

    def numel(self) -> int:
        total = 1
        for d in self:
            total *= d
        return total
