"""Eager-only Tensor methods: conversions, devices, printing, in-place ops, indexing.

In-place ops follow PyTorch: on a leaf that requires grad they raise (outside
``no_grad()``); on a recorded tensor they record the op and the tensor takes the
new ``grad_fn``; each bumps the version that a later backward checks.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fusegrad.ir import ops
from fusegrad.ir.errors import FusegradError
from fusegrad.tracer import autograd, creation, dtypes
from fusegrad.tracer import functions as F
from fusegrad.tracer.devices import checked_device
from fusegrad.tracer.dispatch import apply
from fusegrad.tracer.executor import wrap
from fusegrad.tracer.graph_nodes import Version, _grad_state
from fusegrad.tracer.printing import tensor_repr


class EagerMethodsMixin:

    # ------------------------------------------------------------ autograd

    def backward(self, gradient=None, retain_graph: bool | None = None, create_graph: bool = False,
                 inputs=None) -> None:
        autograd.backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    @property
    def data(self):
        self._check_eager("data")
        return wrap(self._data, device=self._device)

    @data.setter
    def data(self, other) -> None:
        self._check_eager("data")
        self._data = other._data if isinstance(other, EagerMethodsMixin) else np.asarray(other)

    def detach(self):
        self._check_eager("detach")
        return wrap(self._data, version=self._version_counter, device=self._device)

    def detach_(self):
        self._check_eager("detach_")
        self._grad_fn = None
        self._requires_grad = False
        return self

    # ------------------------------------------------------------ conversions

    def numpy(self, force: bool = False) -> np.ndarray:
        """The data as a NumPy array sharing memory with the tensor."""
        self._check_eager("numpy()")
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        if self._device.type != "cpu" and not force:
            raise TypeError(f"can't convert {self._device} device type tensor to numpy. "
                            "Use Tensor.cpu() to copy the tensor to host memory first.")
        return self._data

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def item(self):
        data = self._eager_data()
        if data.size != 1:
            raise RuntimeError(f"a Tensor with {data.size} elements cannot be converted to Scalar")
        return data.reshape(-1)[0].item()

    def tolist(self):
        return self._eager_data().tolist()

    def __repr__(self) -> str:
        return tensor_repr(self)

    def __format__(self, spec: str) -> str:
        if self._value is None and self._data.ndim == 0 and spec:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def type(self, dtype: Any = None):
        """With no argument the legacy type name (``fusegrad.FloatTensor``); else a cast."""
        if dtype is None:
            return dtypes.legacy_type_name(self._eager_data().dtype)
        if isinstance(dtype, str) and dtype.endswith("Tensor"):
            dtype = dtypes.LEGACY_TYPES[dtype.rsplit(".", 1)[-1]]
        elif isinstance(dtype, type) and isinstance(getattr(dtype, "dtype", None), dtypes.dtype):
            dtype = dtype.dtype   # a legacy type: x.type(fusegrad.DoubleTensor)
        return self._cast(dtypes.numpy_dtype(dtype))

    def long(self): return self._cast(np.int64)
    def int(self): return self._cast(np.int32)
    def bool(self): return self._cast(np.bool_)
    def half(self): return self._cast(np.float16)

    def all(self):
        return wrap(np.asarray(self._eager_data().all()))

    def any(self):
        return wrap(np.asarray(self._eager_data().any()))

    def equal(self, other) -> bool:
        return bool(np.array_equal(self._eager_data(), other._eager_data()))

    def is_floating_point(self) -> bool:
        return np.dtype(self.dtype).kind == "f"

    def element_size(self) -> int:
        return np.dtype(self.dtype).itemsize

    def nelement(self) -> int:
        return self.numel()

    def contiguous(self):
        return self

    def is_contiguous(self) -> bool:
        return bool(self._eager_data().flags.c_contiguous)

    def clone(self):
        """A copy that stays connected to the graph (CloneBackward0)."""
        result = apply(_identity, self, grad_fn="CloneBackward0")
        result._data = np.array(self._data)
        result._version_counter = Version()
        if result._grad_fn is not None:
            result._grad_fn.saved = [result._saved()]
        return result

    # ------------------------------------------------------------ devices

    @property
    def device(self):
        return self._device

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    def cuda(self, device: Any = None, non_blocking: bool = False, **kwargs):
        target = dtypes.device("cuda" if device is None else
                               (f"cuda:{device}" if isinstance(device, int) else device))
        return self.to(target)

    def cpu(self):
        return self.to("cpu")

    def to(self, *args, **kwargs):
        """``to(device)``, ``to(dtype)``, ``to(other)`` or ``to(device, dtype)``."""
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        for arg in args:
            if isinstance(arg, EagerMethodsMixin):
                device, dtype = arg._device, arg.dtype
            elif isinstance(arg, (str, dtypes.device)):
                device = arg
            elif arg is not None:
                dtype = arg
        result = self if dtype is None else self._cast(dtypes.numpy_dtype(dtype))
        if device is None:
            return result
        device = checked_device(device)
        if device == self._device:
            return result
        # Storage stays in host memory; the device is where compiled kernels run.
        moved = apply(_identity, result, grad_fn="ToCopyBackward0")
        moved._data = np.array(result._data)
        moved._version_counter = Version()
        moved._device = device
        if moved._grad_fn is not None:
            moved._grad_fn.saved = [moved._saved()]
        return moved

    # ------------------------------------------------------------ shape helpers

    def squeeze(self, dim: int | None = None):
        shape = tuple(self.shape)
        if dim is None:
            shape = tuple(d for d in shape if d != 1)
        elif shape and shape[dim % len(shape)] == 1:
            dim = dim % len(shape)
            shape = shape[:dim] + shape[dim + 1:]
        return apply(ops.reshape, self, shape=shape, grad_fn="SqueezeBackward0")

    def unsqueeze(self, dim: int):
        shape = list(self.shape)
        shape.insert(dim if dim >= 0 else dim + len(shape) + 1, 1)
        return apply(ops.reshape, self, shape=tuple(shape), grad_fn="UnsqueezeBackward0")

    def flatten(self):
        return F.reshape(self, self.numel())

    def view_as(self, other):
        return F.reshape(self, tuple(other.shape))

    def expand_as(self, other):
        return F.broadcast_to(self, tuple(other.shape))

    def clamp(self, min=None, max=None):  # noqa: A002  (PyTorch's parameter names)
        return apply(_clamp, self, low=min, high=max, grad_fn="ClampBackward1")

    def new_tensor(self, data):
        return creation.tensor(data, dtype=self.dtype)

    def new_ones(self, *size, dtype=None):
        return creation.ones(*size, dtype=dtype or self.dtype)

    def new_zeros(self, *size, dtype=None):
        return creation.zeros(*size, dtype=dtype or self.dtype)

    def new_full(self, size, fill_value, dtype=None):
        return creation.full(size, fill_value, dtype=dtype or self.dtype)

    # ------------------------------------------------------------ indexing

    def __getitem__(self, index):
        """Basic indexing of a tensor that requires grad is recorded (the IR's slice);
        otherwise NumPy indexing, a view sharing storage as in PyTorch."""
        self._check_eager("indexing")
        if self._requires_grad and _grad_state.enabled:
            return F.getitem(self, index)
        data = self._data[_plain_index(index)]
        if isinstance(data, np.ndarray) and np.may_share_memory(data, self._data):
            return wrap(data, version=self._version_counter, device=self._device)
        return wrap(np.asarray(data), device=self._device)

    def __setitem__(self, index, value) -> None:
        self._check_inplace()
        if self._requires_grad and _grad_state.enabled:
            raise FusegradError(
                "fusegrad's autograd does not record assignment into a tensor that requires "
                "grad; assign under fusegrad.no_grad(), or build the value out of place "
                "(fusegrad.where, slicing and arithmetic)")
        if isinstance(value, EagerMethodsMixin):
            value = value._data
        self._data[_plain_index(index)] = value
        self._version_counter.bump()

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    # ------------------------------------------------------------ in-place ops

    def _check_inplace(self) -> None:
        self._check_eager("an in-place operation")
        if self._requires_grad and self._grad_fn is None and _grad_state.enabled:
            raise RuntimeError("a leaf Variable that requires grad is being used in an "
                               "in-place operation.")

    def _assign(self, result) -> "EagerMethodsMixin":
        """Write `result` (computed out of place) into this tensor's storage."""
        self._check_inplace()
        if tuple(result.shape) != tuple(self.shape):
            raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the "
                               f"broadcast shape {list(result.shape)}")
        if not np.can_cast(result._data.dtype, self._data.dtype, casting="same_kind"):
            raise RuntimeError(f"result type {result.dtype} can't be cast to the desired "
                               f"output type {self.dtype}")
        np.copyto(self._data, result._data, casting="unsafe")
        self._version_counter.bump()
        if result._grad_fn is not None:
            result._grad_fn.saved = [self._saved()]
            self._grad_fn, self._output_nr = result._grad_fn, result._output_nr
            self._requires_grad = True
        return self

    def add_(self, other, alpha=1):
        return self._assign(F.add(self, other if alpha == 1 else F.mul(other, alpha)))

    def sub_(self, other, alpha=1):
        return self._assign(F.sub(self, other if alpha == 1 else F.mul(other, alpha)))

    def mul_(self, other):
        return self._assign(F.mul(self, other))

    def div_(self, other):
        return self._assign(F.div(self, other))

    def pow_(self, other):
        return self._assign(F.pow(self, other))

    def __iadd__(self, other): return self.add_(other)
    def __isub__(self, other): return self.sub_(other)
    def __imul__(self, other): return self.mul_(other)
    def __itruediv__(self, other): return self.div_(other)

    def copy_(self, source, non_blocking: bool = False):
        return self._assign(apply(_replace, self, source, grad_fn="CopyBackwards"))

    def fill_(self, value):
        return self._assign(apply(_replace, self, value, grad_fn="FillBackward0"))

    def zero_(self):
        return self.fill_(0)

    def uniform_(self, a: float = 0.0, b: float = 1.0):
        return self.copy_(creation.random_array(self.shape, "uniform", a, b, self._data.dtype))

    def normal_(self, mean: float = 0.0, std: float = 1.0):
        return self.copy_(creation.random_array(self.shape, "normal", mean, std, self._data.dtype))


def _identity(x):
    return x


def _replace(x, value):
    """`value` broadcast over `x` (the value of fill_/copy_; no gradient reaches x)."""
    if not hasattr(value, "shape"):
        return ops.broadcast_to(ops.const(value, x.dtype), x.shape)
    return ops.broadcast_to(ops.cast(value, x.dtype), x.shape)


def _clamp(x, *, low, high):
    # Selects, not maximum/minimum: those split the gradient of a tie in two, and
    # PyTorch's clamp passes it whole to x at its bounds (NaN stays NaN).
    if low is not None:
        x = ops.where(ops.lt(x, low), low, x)
    if high is not None:
        x = ops.where(ops.gt(x, high), high, x)
    return x


def _plain_index(index):
    if isinstance(index, tuple):
        return tuple(_plain_index(i) for i in index)
    if isinstance(index, EagerMethodsMixin):
        return index._eager_data()
    return index
