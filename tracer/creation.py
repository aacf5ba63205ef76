"""Making eager tensors: ``fg.tensor``, ``fg.ones``, ``fg.rand``, ``fg.from_numpy``, ...

Dtypes follow PyTorch: Python floats give the default float32, Python ints int64,
bools bool; NumPy arrays keep their dtype. Random numbers come from a NumPy
Generator seeded by `manual_seed` (the streams differ from PyTorch's).
"""
from __future__ import annotations

import builtins
import numbers
from typing import Any

import numpy as np

from fusegrad.ir.errors import UnsupportedError
from fusegrad.tracer import dtypes
from fusegrad.tracer.dtypes import Size, numpy_dtype
from fusegrad.tracer.executor import wrap
from fusegrad.tracer.state import TensorState

DEFAULT_SEED = 67280421310721   # PyTorch's default seed: unseeded programs repeat run to run
_generator = np.random.default_rng(DEFAULT_SEED)
_seed = DEFAULT_SEED


def _unsupported(function: str, **given: Any) -> None:
    """PyTorch's out= and generator= are accepted by name only to refuse them clearly:
    ignoring them would leave `out` unwritten, or draw from the global stream."""
    for name, value in given.items():
        if value is not None:
            raise UnsupportedError(f"{function}: {name}= is not supported by fusegrad; use the "
                                "returned tensor" + (" (seed with fusegrad.manual_seed)"
                                                      if name == "generator" else ""))


def _make(array: np.ndarray, requires_grad: bool, device: Any):
    return wrap(array, requires_grad=requires_grad, device=device)


def _sizes(size: tuple) -> tuple[int, ...]:
    """``f(2, 3)``, ``f((2, 3))``, ``f([2, 3])`` and ``f(x.size())`` alike."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for d in size:
        if not isinstance(d, (numbers.Integral, np.integer)) or isinstance(d, bool):
            raise TypeError(f"size must be a sequence of ints, got {size!r}")
        if d < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {d}: {list(size)}")
    return tuple(builtins.int(d) for d in size)


def _python_dtype(data: Any) -> np.dtype:
    """PyTorch's inference for (nested) Python data."""
    array = np.asarray(data)
    if array.dtype.kind == "b":
        return np.dtype(np.bool_)
    if array.dtype.kind in "iu":
        return np.dtype(np.int64)
    if array.dtype.kind == "f":
        return dtypes.DEFAULT_FLOAT.dtype
    raise TypeError(f"can't convert data of type {array.dtype} to a fusegrad tensor")


def _from_data(data: Any, dtype: Any) -> np.ndarray:
    wanted = numpy_dtype(dtype)
    if isinstance(data, TensorState):
        array = data._eager_data()
        return np.array(array, dtype=wanted or array.dtype)
    if isinstance(data, (np.ndarray, np.generic)):
        return np.array(data, dtype=wanted or data.dtype)
    if isinstance(data, (list, tuple)):
        data = [_plain(item) for item in data]
    return np.array(data, dtype=wanted or _python_dtype(data))


def _plain(item: Any) -> Any:
    if isinstance(item, TensorState):
        return item._eager_data().tolist()
    if isinstance(item, (list, tuple)):
        return [_plain(i) for i in item]
    return item


# ---------------------------------------------------------------- from data

def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
           pin_memory: bool = False):
    """A new leaf tensor holding a copy of `data`."""
    return _make(_from_data(data, dtype), requires_grad, device)


def as_tensor(data: Any, dtype: Any = None, device: Any = None):
    if isinstance(data, TensorState) and (dtype is None or data.dtype == dtype):
        return data
    if isinstance(data, np.ndarray) and (dtype is None or data.dtype == numpy_dtype(dtype)):
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray):
    """A tensor sharing memory with `array`: a change to one shows in the other."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    dtypes.as_dtype(array.dtype)   # raises for dtypes fusegrad has no name for
    return wrap(array)


def legacy_array(args: tuple, dtype: Any) -> np.ndarray:
    """``Tensor()``, ``Tensor(2, 3)`` (sizes, zero-filled) or ``Tensor([1, 2])`` (data)."""
    wanted = numpy_dtype(dtype)
    if not args:
        return np.empty((0,), wanted)
    if len(args) == 1 and not isinstance(args[0], (Size, numbers.Integral)):
        data = args[0]
        if isinstance(data, TensorState):
            array = data._eager_data()
            return array if array.dtype == wanted else array.astype(wanted)
        return np.array(_plain(data) if isinstance(data, (list, tuple)) else data, dtype=wanted)
    return np.zeros(_sizes(args), wanted)


# ---------------------------------------------------------------- filled

def _filled(fill, size: tuple, dtype: Any, device: Any, requires_grad: bool):
    array = np.full(_sizes(size), fill, dtype=numpy_dtype(dtype) or dtypes.DEFAULT_FLOAT.dtype)
    return _make(array, requires_grad, device)


def ones(*size, dtype: Any = None, device: Any = None, requires_grad: bool = False, out=None):
    _unsupported("ones", out=out)
    return _filled(1, size, dtype, device, requires_grad)


def zeros(*size, dtype: Any = None, device: Any = None, requires_grad: bool = False, out=None):
    _unsupported("zeros", out=out)
    return _filled(0, size, dtype, device, requires_grad)


def empty(*size, dtype: Any = None, device: Any = None, requires_grad: bool = False, out=None):
    _unsupported("empty", out=out)
    return _filled(0, size, dtype, device, requires_grad)   # zeros: deterministic "uninitialized"


def full(size, fill_value, dtype: Any = None, device: Any = None, requires_grad: bool = False):
    if dtype is None:
        dtype = _python_dtype(fill_value)
    return _filled(fill_value, (size,), dtype, device, requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, device: Any = None,
        requires_grad: bool = False):
    array = np.eye(n, m, dtype=numpy_dtype(dtype) or dtypes.DEFAULT_FLOAT.dtype)
    return _make(array, requires_grad, device)


def _like(t, fill, dtype, device, requires_grad):
    # The dtype and shape only: a traced tensor has them too (`fg.zeros_like(x)` inside
    # compile_grad is a constant of the trace).
    wanted = numpy_dtype(dtype) or numpy_dtype(t.dtype)
    return _make(np.full(t.shape, fill, dtype=wanted), requires_grad, device or t._device)


def ones_like(t, dtype: Any = None, device: Any = None, requires_grad: bool = False):
    return _like(t, 1, dtype, device, requires_grad)


def zeros_like(t, dtype: Any = None, device: Any = None, requires_grad: bool = False):
    return _like(t, 0, dtype, device, requires_grad)


def empty_like(t, dtype: Any = None, device: Any = None, requires_grad: bool = False):
    return _like(t, 0, dtype, device, requires_grad)


def full_like(t, fill_value, dtype: Any = None, device: Any = None, requires_grad: bool = False):
    return _like(t, fill_value, dtype, device, requires_grad)


def arange(start, end=None, step=1, *, dtype: Any = None, device: Any = None,
           requires_grad: bool = False):
    if end is None:
        start, end = 0, start
    is_float = any(isinstance(v, float) for v in (start, end, step))
    wanted = numpy_dtype(dtype) or (dtypes.DEFAULT_FLOAT.dtype if is_float else np.dtype(np.int64))
    array = np.arange(start, end, step, dtype=np.float64 if is_float else np.int64).astype(wanted)
    return _make(array, requires_grad, device)


def linspace(start, end, steps: int, *, dtype: Any = None, device: Any = None,
             requires_grad: bool = False):
    array = np.linspace(start, end, steps).astype(numpy_dtype(dtype) or dtypes.DEFAULT_FLOAT.dtype)
    return _make(array, requires_grad, device)


# ---------------------------------------------------------------- random

class Generator:
    """What `manual_seed` returns (PyTorch returns its generator)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed

    def initial_seed(self) -> int:
        return self._seed

    def __repr__(self) -> str:
        return f"<fusegrad.Generator seed={self._seed}>"


def manual_seed(seed: int) -> Generator:
    """Seed rand/randn (NumPy's generator: the numbers differ from PyTorch's)."""
    global _generator, _seed
    _seed = builtins.int(seed)
    _generator = np.random.default_rng(_seed)
    return Generator(_seed)


def initial_seed() -> int:
    return _seed


def _random_dtype(dtype: Any) -> np.dtype:
    wanted = numpy_dtype(dtype) or dtypes.DEFAULT_FLOAT.dtype
    if wanted.kind != "f":
        raise RuntimeError(f"random floats need a floating dtype, got {dtypes.as_dtype(wanted)}")
    return wanted


def _generated(dtype: np.dtype) -> np.dtype:
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def rand(*size, dtype: Any = None, device: Any = None, requires_grad: bool = False, generator=None):
    """Uniform on [0, 1)."""
    _unsupported("rand", generator=generator)
    wanted = _random_dtype(dtype)
    array = _generator.random(_sizes(size), dtype=_generated(wanted)).astype(wanted, copy=False)
    return _make(array, requires_grad, device)


def randn(*size, dtype: Any = None, device: Any = None, requires_grad: bool = False, generator=None):
    """Standard normal."""
    _unsupported("randn", generator=generator)
    wanted = _random_dtype(dtype)
    array = _generator.standard_normal(_sizes(size), dtype=_generated(wanted)).astype(wanted, copy=False)
    return _make(array, requires_grad, device)


def randint(low, high=None, size=(), *, dtype: Any = None, device: Any = None,
            requires_grad: bool = False):
    if high is None or isinstance(high, (tuple, list)):   # randint(high, size), as PyTorch
        low, high, size = 0, low, (size if high is None else high)
    array = _generator.integers(low, high, size=_sizes((size,)))
    return _make(array.astype(numpy_dtype(dtype) or np.int64), requires_grad, device)


def rand_like(t, dtype: Any = None, device: Any = None, requires_grad: bool = False):
    return rand(*t.shape, dtype=dtype or t.dtype, device=device or t._device,
                requires_grad=requires_grad)


def randn_like(t, dtype: Any = None, device: Any = None, requires_grad: bool = False):
    return randn(*t.shape, dtype=dtype or t.dtype, device=device or t._device,
                 requires_grad=requires_grad)


def random_array(shape: tuple, kind: str, a: float, b: float, dtype: np.dtype) -> np.ndarray:
    """Numbers for the in-place fills uniform_ (on [a, b)) and normal_ (mean a, std b)."""
    if kind == "uniform":
        return (_generator.random(shape) * (b - a) + a).astype(dtype)
    return (_generator.standard_normal(shape) * b + a).astype(dtype)


# ---------------------------------------------------------------- legacy types

class _LegacyTensorType(type):
    """``fg.FloatTensor([1, 2])`` constructs; ``isinstance(t, fg.FloatTensor)`` checks the dtype."""

    def __call__(cls, *args, device: Any = None):
        return wrap(legacy_array(args, cls.dtype), device=device)

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, TensorState) and not obj._mode.traced and obj.dtype == cls.dtype

    def __repr__(cls) -> str:
        return f"<class 'fusegrad.{cls.__name__}'>"


def _legacy_type(name: str, dtype: dtypes.dtype) -> type:
    return _LegacyTensorType(name, (), {"dtype": dtype, "__module__": "fusegrad"})


_LEGACY = {name: _legacy_type(name, d) for name, d in dtypes.LEGACY_TYPES.items()}
FloatTensor, DoubleTensor, HalfTensor = _LEGACY["FloatTensor"], _LEGACY["DoubleTensor"], _LEGACY["HalfTensor"]
LongTensor, IntTensor = _LEGACY["LongTensor"], _LEGACY["IntTensor"]
BoolTensor, ByteTensor = _LEGACY["BoolTensor"], _LEGACY["ByteTensor"]


# ---------------------------------------------------------------- misc

def is_tensor(obj: Any) -> bool:
    return isinstance(obj, TensorState)


def numel(t) -> int:
    return t.numel()


def get_default_dtype():
    return dtypes.DEFAULT_FLOAT
