"""The Tensor type: a traced IR value inside compile_grad, an eager array outside.

Math methods and operators all go through `tracer.functions`, so there is one
implementation of each op for both modes. The state (the traced value; the eager
data, version and autograd state) lives in `tracer.state`, below every module that
reads it; eager ops run in `tracer.executor`.

In-place ops follow PyTorch: on a leaf that requires grad they raise (outside
``no_grad()``); on a recorded tensor they record the op and the tensor takes the
new ``grad_fn``; each bumps the version that a later backward checks.
"""
from __future__ import annotations

import functools
import numbers
import weakref
from typing import Any, Callable, NamedTuple

import numpy as np

from fusegrad.ir import ops
from fusegrad.ir.errors import DTypeError, ShapeError, TraceError, UnsupportedError
from fusegrad.tracer import autograd, creation, dtypes
from fusegrad.tracer import numpy_dispatch
from fusegrad.tracer import executor as executor_views
from fusegrad.tracer import functions as F
from fusegrad.tracer.creation import legacy_array
from fusegrad.tracer.devices import (checked_device, copy_into, copy_of, host_array,
                                     may_share_memory, on_device, to_storage)
from fusegrad.tracer.dispatch import apply
from fusegrad.tracer.dtypes import Size
from fusegrad.tracer.executor import wrap
from fusegrad.tracer.graph_nodes import Version, _grad_state
from fusegrad.tracer.printing import tensor_repr
from fusegrad.tracer.source import user_line
from fusegrad.tracer.state import EAGER, TensorState


class Tensor(TensorState):
    """An n-dimensional array that records the operations applied to it."""

    __array_priority__ = 1000  # so `ndarray * tensor` defers to Tensor.__rmul__

    def __init__(self, *args: Any, dtype: Any = None, device: Any = None,
                 requires_grad: bool = False) -> None:
        """The legacy constructor: ``Tensor([1, 2])`` (data) or ``Tensor(2, 3)`` (sizes)."""
        self._init_eager(legacy_array(args, dtype or dtypes.float32), device=device)
        if requires_grad:
            self.requires_grad_(True)

    # ------------------------------------------------------------ shape and type

    @property
    def shape(self):
        return self._shape()

    @property
    def ndim(self) -> int:
        return len(self._shape())

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(np.prod(self._shape(), dtype=np.int64))

    def size(self, dim: int | None = None):
        shape = Size(self._shape())
        return shape if dim is None else shape[dim]

    def __len__(self) -> int:
        if not self._shape():
            raise TypeError("len() of a 0-d tensor")
        return self._shape()[0]

    # ------------------------------------------------------------ data-dependent Python

    def __bool__(self) -> bool:
        self._mode.check_known("the truth value")
        return bool(self._eager_data())

    def __float__(self) -> float:
        self._mode.check_known("the float value")
        return float(self._python_scalar())   # any one-element tensor, as in PyTorch

    def __int__(self) -> int:
        self._mode.check_known("the int value")
        return int(self._python_scalar())

    def __index__(self) -> int:
        return self.__int__()

    # ------------------------------------------------------------ operators and methods
    # Those that are one function of `tracer.functions` come from `_TABLE` (below the
    # class); here are the ones with more to do.

    def __pos__(self):
        return self

    # Elementwise, traced and eager alike, as in NumPy, JAX and PyTorch: identity
    # equality made `x * (tokens != 0)` trace as `x * True`. Hashing stays by
    # identity (as torch's), so tensors remain usable as dictionary keys; code that
    # looks tensors up in lists must compare with `is`.
    def __eq__(self, other):
        return F.eq(self, other) if _comparable(other) else NotImplemented

    def __ne__(self, other):
        return F.ne(self, other) if _comparable(other) else NotImplemented

    __hash__ = object.__hash__

    def expand(self, *shape):
        return F.broadcast_to(self, F._sizes(shape))

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with <= 2 dimensions, got {self.ndim}")
        return F.apply(ops.transpose, self, perm=None, grad_fn="TBackward0") if self.ndim == 2 else self

    @property
    def T(self):
        return F.permute(self, *reversed(range(self.ndim)))

    def float(self): return self._cast(np.float32)
    def double(self): return self._cast(np.float64)

    def astype(self, dtype: Any):
        return self._cast(dtype)

    def _cast(self, dtype):
        return F.apply(ops.cast, self, dtype=np.dtype(dtype), grad_fn="ToCopyBackward0")

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
        if isinstance(other, Tensor):   # (it may move the tensor to another device, as in PyTorch)
            self._data, self._device = other._data, other._device
        else:
            self._data = to_storage(np.asarray(other), self._device)

    def detach(self):
        self._check_eager("detach")
        return wrap(self._data, version=self._version_counter, device=self._device)

    def detach_(self):
        self._check_eager("detach_")
        self._version_counter   # noqa: B018 (made now, while the grad_fn that saved it is known)
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
        return host_array(self._data)   # (force=True on the GPU: a copy, as PyTorch's)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self._mode.traced:   # NumPy asks for the data: most often `ndarray[traced index]`
            raise TraceError(
                "NumPy needs the values of a traced tensor, which exist only when the compiled "
                "function runs; to index a NumPy array with a traced index, write "
                "fg.take(array, index, axis=0) or fg.tensor(array)[index]; to fill an array "
                "with traced values, make it with fg.zeros inside the function" + _at_user_line())
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    # NumPy's functions on a Tensor run as fusegrad's (issue 11, item 8): `np.exp(t)`,
    # `np.sum(t, axis=1)`, and `ndarray + t`, which NumPy sends here too.
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return numpy_dispatch.array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return numpy_dispatch.array_function(func, types, args, kwargs)

    def item(self):
        data = self._eager_data()
        if data.size != 1:
            raise RuntimeError(f"a Tensor with {data.size} elements cannot be converted to Scalar")
        return data.item()

    def tolist(self):
        return self._eager_data().tolist()

    def __repr__(self) -> str:
        return tensor_repr(self)

    def __format__(self, spec: str) -> str:
        if not self._mode.traced and self._data.ndim == 0 and spec:
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
        if on_device(self._data):   # (a view's layout, read without a copy to the host)
            return bool(self._data.is_c_contiguous())
        return bool(self._eager_data().flags.c_contiguous)

    def clone(self):
        """A copy that stays connected to the graph (CloneBackward0)."""
        return self._copy("CloneBackward0")

    def _copy(self, grad_fn: str):
        """A recorded copy with storage (and a version) of its own."""
        result = apply(_identity, self, grad_fn=grad_fn)
        result._data = copy_of(self._data)   # (the op's result is a view: the identity)
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
            if isinstance(arg, Tensor):
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
        # A recorded copy (on the tensor's device), then its storage moved across the bus.
        moved = result._copy("ToCopyBackward0")
        moved._data = to_storage(moved._data, device)
        moved._device = device
        return moved

    # ------------------------------------------------------------ shape helpers

    def squeeze(self, dim=None, *, axis=None):
        # layout (issue 11, item 5): a tuple of dims, and NumPy's axis= keyword
        dim = dim if axis is None else axis
        shape = tuple(self.shape)
        if dim is None:
            shape = tuple(d for d in shape if d != 1)
        elif shape:
            dims = {d % len(shape) for d in ((dim,) if isinstance(dim, int) else dim)}
            shape = tuple(d for i, d in enumerate(shape) if not (i in dims and d == 1))
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
        """Traced, or recorded for autograd: the IR's slice. Otherwise NumPy's basic
        indexing, a view sharing storage as in PyTorch."""
        if (self._mode.traced or (self._requires_grad and _grad_state.enabled) or _traced_in(index)
                or on_device(self._data)):   # on the GPU: an op, whose result is a view
            # of the device array (executor._views_on_device)
            result = F.getitem(self, index)
            if not self._mode.traced and executor_views.base_of(result) is self:
                # A recorded view of a base: an in-place op on it is written through
                # the base (see _write_through_base).
                result._view_of = (weakref.ref(self), index)
            return result
        data = self._data[_plain_index(index)]
        if isinstance(data, np.ndarray) and np.may_share_memory(data, self._data):
            return wrap(data, version=self._version_counter, device=self._device)
        return wrap(np.asarray(data), device=self._device)

    def __setitem__(self, index, value) -> None:
        # A functional update (issue 11, item 3): traced, the tensor takes the updated
        # value; recorded, the update is an op whose result is written into the storage.
        traced = self._mode.traced or _traced_in(index) or _traced_in(value)
        if traced or (_grad_state.enabled and (self._requires_grad or
                                                getattr(value, "_requires_grad", False))):
            self._record_update(index, value, traced)
            return
        self._check_inplace()
        if on_device(self._data):
            self._set_on_device(index, value)
            return
        if isinstance(value, Tensor):
            value = value._data
        self._data[_plain_index(index)] = value
        self._version_counter.bump()

    def _set_on_device(self, index, value) -> None:
        """``self[index] = value`` (not recorded) on a CUDA tensor: into a view of its
        device array for a basic index; otherwise as the functional update, on the
        device, written back."""
        if isinstance(value, Tensor) and value._device != self._device:
            value = value.to(self._device)
        region, kept = (_device_region(self._data, _plain_index(index)) if _basic(index)
                        else (None, None))
        if region is not None and (not isinstance(value, Tensor) or value.dtype == self.dtype):
            value = value._data if isinstance(value, Tensor) else value
            if hasattr(value, "shape") and len(value.shape) <= len(kept):
                # The integers' axes are one-element slices in `region`: the value
                # gets them back, as length-1 axes, to broadcast as NumPy would.
                shape = (1,) * (len(kept) - len(value.shape)) + tuple(value.shape)
                full = [1] * len(region.shape)
                for axis, size in zip(kept, shape):
                    full[axis] = size
                value = (value if not on_device(value) or value.is_c_contiguous()
                         else copy_of(value)).reshape(tuple(full))
            if on_device(value) and tuple(value.shape) == tuple(region.shape):
                copy_into(region, value)
            else:   # Numba's assignment kernel broadcasts the value, on the device
                region[()] = value   # (`()`: all of it; Numba's indexing has no `...`)
            self._version_counter.bump()
            return
        self._assign(F.index_update(self, index, value, "set"), checked=True)

    def _record_update(self, index, value, traced: bool, written_view=None) -> None:
        """``self[index] = value`` as an op: traced, or recorded for autograd
        (`written_view`: the view of this tensor whose in-place op this is)."""
        source = self
        if not traced:
            self._check_unshared(index, value, written_view=written_view)
            if self._grad_fn is None and not self._requires_grad:
                # The op reads a copy: its input must not change when the result is
                # written over it, since the backward may recompute from it.
                source = wrap(copy_of(self._data), device=self._device)
        self._assign(F.index_update(source, index, value, "set"), checked=True)

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

    def _assign(self, result, checked: bool = False) -> "Tensor":
        """Write `result` (computed out of place) into this tensor's storage (`checked`:
        the tensors sharing it have been checked for an assignment's region)."""
        if result._grad_fn is None and self._mode is EAGER and result._mode is EAGER:
            # Nothing recorded (an optimizer's update under no_grad): the checks below
            # that apply, written out, and the copy.
            data, new = self._data, result._data
            if data.__class__ is np.ndarray and new.__class__ is np.ndarray \
                    and new.shape == data.shape and new.dtype is data.dtype \
                    and not (self._requires_grad and self._grad_fn is None and _grad_state.enabled):
                np.copyto(data, new, casting="unsafe")
                self._version_counter.bump()
                return self
        if self._mode.traced or result._mode.traced:
            return self._rebind(result)
        self._check_inplace()
        if result._data.shape != self._data.shape:   # both eager here
            raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the "
                               f"broadcast shape {list(result.shape)}")
        if result._data.dtype is not self._data.dtype and \
                not np.can_cast(result._data.dtype, self._data.dtype, casting="same_kind"):
            raise RuntimeError(f"result type {result.dtype} can't be cast to the desired "
                               f"output type {self.dtype}")
        if result._grad_fn is not None and not checked:
            if self._write_through_base(result):
                return self
            # Recorded: this tensor's grad_fn becomes the op's, which a tensor sharing the
            # storage (its base, or a view of it) would not see (PyTorch rebases their
            # grad_fn; fusegrad refuses rather than leave their gradients wrong).
            self._check_unshared(Ellipsis, None, "an in-place operation on")
        copy_into(self._data, result._data)   # (on the GPU: device to device)
        self._version_counter.bump()
        if result._grad_fn is not None:
            result._grad_fn.saved = [self._saved()]
            self._grad_fn, self._output_nr = result._grad_fn, result._output_nr
            self._requires_grad = True
        return self

    def _write_through_base(self, result) -> bool:
        """An in-place op on a slice of a recorded base (``base[0:2].mul_(3)``, and the
        first half of ``h[:, 1:] += d``) is ``base[index] = result``: the base's grad_fn
        takes the update (PyTorch's CopySlices), and the slice's is the op's."""
        base = executor_views.base_of(self)
        origin = getattr(self, "_view_of", None)
        if base is None or origin is None or origin[0]() is not base or \
                not (base._grad_fn is not None or base._requires_grad):
            return False
        base._record_update(origin[1], result, False, written_view=self)
        result._grad_fn.saved = [self._saved()]
        self._grad_fn, self._output_nr = result._grad_fn, result._output_nr
        self._requires_grad = True
        return True

    def _check_unshared(self, index, value, what: str = "assignment into",
                        written_view=None) -> None:
        """A recorded assignment changes this tensor's storage and its own grad_fn only:
        refuse it where another tensor that records gradients sees that storage (PyTorch
        rewrites those tensors' grad_fn too; fusegrad would leave them silently wrong)."""
        base = executor_views.base_of(self)
        if base is not None and (base._grad_fn is not None or base._requires_grad):
            raise UnsupportedError(
                f"{what} a view of another tensor (a slice or reshape of it) that records "
                "gradients: fusegrad cannot carry it into that tensor's gradient; assign "
                "into the tensor itself (base[...] = v), or clone() the view first"
                + _at_user_line())
        plain = _plain_index(index)
        try:   # `...` keeps an integer index's element a view (a 0-d array, not a scalar)
            if on_device(self._data):   # (the whole array: may_share_memory there is per allocation)
                raise TypeError
            region = self._data[(plain if isinstance(plain, tuple) else (plain,)) + (Ellipsis,)]
        except (IndexError, TypeError, ValueError):   # index arrays, or a `...` already
            region = self._data
        for view in executor_views.views_of(self):
            if view is not value and view is not written_view and view._grad_fn is not None and \
                    may_share_memory(view._data, region):
                raise UnsupportedError(
                    f"{what} a tensor of shape {list(self.shape)} would change a view "
                    f"of it (shape {list(view.shape)}, made by slicing or reshape) whose "
                    "gradient fusegrad cannot update: clone() the view before the assignment, "
                    "or build the new value out of place (x = x.at[index].set(v))"
                    + _at_user_line())

    def _rebind(self, result) -> "Tensor":
        """Traced, an in-place op gives the tensor its result as its new value (as JAX's
        ``x = x + y``): the graph is unchanged, and no caller's array is written."""
        local = (getattr(self, "_born_tracing", False) and self._grad_fn is None
                 and not self._requires_grad)
        if not self._mode.traced and not local:
            raise TraceError(
                "an in-place update of an eager tensor with a traced value inside compile_grad"
                ": the tensor was created outside the traced function, which must not change "
                "it; create it inside the function (e.g. fg.zeros(n)), or write "
                "x.at[index].set(v) to get a new tensor" + _at_user_line())
        if tuple(result.shape) != tuple(self.shape):
            raise ShapeError(f"output with shape {list(self.shape)} doesn't match the "
                             f"broadcast shape {list(result.shape)}" + _at_user_line())
        if not np.can_cast(result.dtype, self.dtype, casting="same_kind"):
            raise DTypeError(f"result type {np.dtype(result.dtype).name} can't be cast to the "
                             f"desired output type {np.dtype(self.dtype).name}" + _at_user_line())
        self._mode = result._cast(self.dtype)._mode if result.dtype != self.dtype else result._mode
        return self

    @property
    def at(self) -> F.IndexUpdates:
        """JAX's functional updates: ``x.at[idx].set(v)``, ``.add(v)``, ``.multiply(v)``,
        ``.get()``, each a new tensor (x is unchanged)."""
        return F.IndexUpdates(self)

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
        if isinstance(source, Tensor) and source._device != self._device:
            source = source.to(self._device)   # across the bus, as PyTorch's copy_
        return self._assign(apply(_replace, self, source, grad_fn="CopyBackwards"))

    def fill_(self, value):
        return self._assign(apply(_replace, self, value, grad_fn="FillBackward0"))

    def zero_(self):
        data = self._data
        if self._mode is EAGER and data.__class__ is np.ndarray and data.dtype.kind == "f" \
                and not (self._requires_grad and _grad_state.enabled):
            # Nothing to record and nothing to check (`_assign`'s fast case): in place.
            data.fill(0)
            self._version_counter.bump()
            return self
        return self.fill_(0)

    def uniform_(self, a: float = 0.0, b: float = 1.0):
        return self.copy_(creation.random_array(self.shape, "uniform", a, b, self._data.dtype))

    def normal_(self, mean: float = 0.0, std: float = 1.0):
        return self.copy_(creation.random_array(self.shape, "normal", mean, std, self._data.dtype))


class _Row(NamedTuple):
    function: Callable
    methods: tuple[str, ...]      # its method names: PyTorch's and NumPy's spellings
    operator: str | None = None   # t OP other: function(t, other)
    reflected: str | None = None  # other OP t: function(other, t)


# Tensor's operators and methods that apply one function of `tracer.functions` to the
# tensor: adding an op to Tensor is one row.
_TABLE = (
    _Row(F.add, ("add",), "__add__", "__radd__"),
    _Row(F.sub, ("sub",), "__sub__", "__rsub__"),
    _Row(F.mul, ("mul",), "__mul__", "__rmul__"),
    _Row(F.div, ("div",), "__truediv__", "__rtruediv__"),
    _Row(F.pow, ("pow",), "__pow__", "__rpow__"),
    _Row(F.matmul, ("matmul",), "__matmul__", "__rmatmul__"),
    _Row(F.neg, (), "__neg__"),
    _Row(F.abs, ("abs",), "__abs__"),
    _Row(F.lt, (), "__lt__"),
    _Row(F.le, (), "__le__"),
    _Row(F.gt, (), "__gt__"),
    _Row(F.ge, (), "__ge__"),
    _Row(F.eq, ("eq",)),          # == and != are in the class: they also compare with None
    _Row(F.ne, ("ne",)),
    # logical, bitwise, modular (issue 11, item 4)
    _Row(F.bitwise_and, ("bitwise_and",), "__and__", "__rand__"),
    _Row(F.bitwise_or, ("bitwise_or",), "__or__", "__ror__"),
    _Row(F.bitwise_xor, ("bitwise_xor",), "__xor__", "__rxor__"),
    _Row(F.bitwise_not, ("bitwise_not",), "__invert__"),
    _Row(F.logical_and, ("logical_and",)),
    _Row(F.logical_or, ("logical_or",)),
    _Row(F.logical_xor, ("logical_xor",)),
    _Row(F.logical_not, ("logical_not",)),
    _Row(F.remainder, ("remainder",), "__mod__", "__rmod__"),
    _Row(F.floor_divide, ("floor_divide",), "__floordiv__", "__rfloordiv__"),
    _Row(F.exp, ("exp",)),
    _Row(F.log, ("log",)),
    _Row(F.sin, ("sin",)),
    _Row(F.cos, ("cos",)),
    _Row(F.tanh, ("tanh",)),
    _Row(F.sqrt, ("sqrt",)),
    _Row(F.sign, ("sign",)),
    _Row(F.sigmoid, ("sigmoid",)),
    _Row(F.relu, ("relu",)),
    _Row(F.maximum, ("maximum",)),
    _Row(F.minimum, ("minimum",)),
    _Row(F.mm, ("mm",)),
    _Row(F.mv, ("mv",)),
    _Row(F.dot, ("dot",)),
    _Row(F.sum, ("sum",)),
    _Row(F.mean, ("mean",)),
    _Row(F.max, ("max",)),
    _Row(F.min, ("min",)),
    _Row(F._var_method, ("var",)),   # PyTorch's method: unbiased by default (issue 11, item 7)
    _Row(F.logsumexp, ("logsumexp",)),
    _Row(F.softmax, ("softmax",)),
    _Row(F.argmax, ("argmax",)),
    _Row(F.reshape, ("reshape", "view")),
    _Row(F.permute, ("permute",)),
    _Row(F.transpose, ("transpose",)),
    # more elementwise math (issue 11, item 6): NumPy's and PyTorch's names
    _Row(F.log1p, ("log1p",)),
    _Row(F.expm1, ("expm1",)),
    _Row(F.square, ("square",)),
    _Row(F.rsqrt, ("rsqrt",)),
    _Row(F.tan, ("tan",)),
    _Row(F.arctan, ("arctan", "atan")),
    _Row(F.sinh, ("sinh",)),
    _Row(F.cosh, ("cosh",)),
    _Row(F.arcsin, ("arcsin", "asin")),
    _Row(F.arccos, ("arccos", "acos")),
    _Row(F.log2, ("log2",)),
    _Row(F.log10, ("log10",)),
    _Row(F.exp2, ("exp2",)),
    _Row(F.floor, ("floor",)),
    _Row(F.ceil, ("ceil",)),
    _Row(F.round, ("round",)),
    _Row(F.softplus, ("softplus",)),
    _Row(F.arctan2, ("arctan2", "atan2")),
    _Row(F.hypot, ("hypot",)),
    _Row(F.clip, ("clip", "clamp")),
    # layout (issue 11, item 5): the methods are PyTorch's (x.repeat is NumPy's tile)
    _Row(F.flip, ("flip",)),
    _Row(F.repeat_interleave, ("repeat_interleave",)),
    _Row(F._repeat_method, ("repeat",)),
    _Row(F.tile, ("tile",)),
    _Row(F._split_method, ("split",)),
    _Row(F.chunk, ("chunk",)),
    # gathers (issue 11, item 2): PyTorch's x.gather(dim, index), NumPy's x.take
    _Row(F._gather_method, ("gather",)),
    _Row(F._take_method, ("take",)),
    _Row(F.take_along_axis, ("take_along_dim",)),
    # reductions and matrix helpers (issue 11, item 7): PyTorch's methods (x.std() is
    # unbiased, x.cumsum(dim), x.norm(p, dim)), NumPy's keywords where they fit
    _Row(F._std_method, ("std",)),
    _Row(F.cumsum, ("cumsum",)),
    _Row(F.cumprod, ("cumprod",)),
    _Row(F.prod, ("prod",)),
    _Row(F.norm, ("norm",)),
    _Row(F.diag, ("diag",)),
    _Row(F.diagonal, ("diagonal",)),
    _Row(F.trace, ("trace",)),
    _Row(F.tril, ("tril",)),
    _Row(F.triu, ("triu",)),
    _Row(F.outer, ("outer",)),
    _Row(F.any_, ("any",)),
    _Row(F.all_, ("all",)),
    # erf, log_softmax (issue 11, item 6, rest)
    _Row(F.erf, ("erf",)),
    _Row(F.erfc, ("erfc",)),
    _Row(F.log_softmax, ("log_softmax",)),
)


def _install(cls: type, table: tuple[_Row, ...]) -> None:
    for row in table:
        for name in row.methods + ((row.operator,) if row.operator else ()):
            _define(cls, name, _forward(row.function))
        if row.reflected:
            _define(cls, row.reflected, _reflect(row.function))


def _forward(function: Callable) -> Callable:
    @functools.wraps(function)   # help() shows the function's signature and doc
    def method(self, *args, **kwargs):
        return function(self, *args, **kwargs)
    return method


def _reflect(function: Callable) -> Callable:
    @functools.wraps(function)
    def method(self, other):
        return function(other, self)
    return method


def _define(cls: type, name: str, method: Callable) -> None:
    if name in vars(cls):
        raise TypeError(f"{cls.__name__}.{name} is both defined in the class and in _TABLE")
    method.__name__ = name
    method.__qualname__ = f"{cls.__name__}.{name}"
    setattr(cls, name, method)


_install(Tensor, _TABLE)
TensorState._result_type = Tensor


def _comparable(other: Any) -> bool:
    """What `==` compares elementwise; anything else (None, a string) falls back to
    Python's identity comparison, so `t == None` is False, as in PyTorch."""
    return isinstance(other, (Tensor, np.ndarray, np.generic, numbers.Number, list, tuple))


def _identity(x):
    return x


def _replace(x, value):
    """`value` broadcast over `x` (the value of fill_/copy_; no gradient reaches x)."""
    if not hasattr(value, "shape"):
        return ops.broadcast_to(ops.const(value, x.dtype), x.shape)
    return ops.broadcast_to(ops.cast(value, x.dtype), x.shape)


def _at_user_line() -> str:
    line = user_line()
    return f"\n  at {line}" if line else ""


def _traced_in(item) -> bool:
    """Whether an index or an assigned value holds a traced tensor."""
    if isinstance(item, tuple):
        return any(_traced_in(i) for i in item)
    return isinstance(item, Tensor) and item._mode.traced


def _device_region(data, index):
    """The view of the device array `data` that a basic index selects, its integers
    as one-element slices (Numba reads an element back to the host; a slice stays a
    view), and the axes of the view that the index keeps; (None, None) where an index
    is out of range (the functional update then says so)."""
    index = index if isinstance(index, tuple) else (index,)
    if index.count(Ellipsis) > 1:
        return None, None
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (data.ndim - len(index) + 1) + index[at + 1:]
    if len(index) > data.ndim:
        return None, None
    slices, kept = [], [axis for axis in range(len(index), data.ndim)]
    for axis, (i, size) in enumerate(zip(index, data.shape)):
        if isinstance(i, slice):
            slices.append(i)
            kept.append(axis)
        elif -size <= i < size:
            slices.append(slice(i % size, i % size + 1))
        else:
            return None, None
    return (data[tuple(slices)] if slices else data), sorted(kept)


def _basic(index) -> bool:
    """Whether an index is basic (integers, slices, ...): a view of the storage."""
    if isinstance(index, tuple):
        return all(_basic(i) for i in index)
    return index is Ellipsis or isinstance(index, (slice, numbers.Integral)) and \
        not isinstance(index, bool)


def _plain_index(index):
    if isinstance(index, tuple):
        return tuple(_plain_index(i) for i in index)
    if isinstance(index, Tensor):
        return index._eager_data()
    return index


# ---------------------------------------------------------------- batched matmul, axes (issue 11, item 1)
# x.bmm(y) and NumPy's and PyTorch's names for moving axes; x.transpose is in _TABLE
# (it takes both NumPy's and PyTorch's arguments, see functions.transpose).
_install(Tensor, (
    _Row(F.bmm, ("bmm",)),
    _Row(F.swapaxes, ("swapaxes", "swapdims")),
    _Row(F.moveaxis, ("moveaxis", "movedim")),
))
Tensor.mT = property(F.matrix_transpose, doc="The last two axes swapped (PyTorch's x.mT).")


# ---------------------------------------------------------------- fewer layers (issue 12, eager speed, round 2)
# Tensor's most used operators and methods are the fast functions themselves
# (`functions.FAST_BINARY` ...), one layer fewer than `_forward`'s wrapper: `a + b`
# calls the function that finds the prepared op. Each method is its own function
# object, named as `_define` names it.

def _fast_methods() -> None:
    rows = {row.function: row for row in _TABLE}
    made = {"binary": executor_views.fast_binary, "unary": executor_views.fast_unary,
            "reduction": executor_views.fast_reduction}
    for kind, table in (("binary", F.FAST_BINARY), ("unary", F.FAST_UNARY),
                        ("reduction", F.FAST_REDUCTION)):
        for name, (build, grad_fn) in table.items():
            function = getattr(F, name)
            row = rows.get(function)
            if row is None:
                continue
            general = function.__wrapped__
            for method in row.methods + ((row.operator,) if row.operator else ()):
                _rebind_method(method, made[kind](build, grad_fn, general))
            if row.reflected:
                _rebind_method(row.reflected, made[kind](build, grad_fn, general, reflected=True))


def _rebind_method(name: str, method: Callable) -> None:
    method.__name__ = name
    method.__qualname__ = f"Tensor.{name}"
    setattr(Tensor, name, method)


_fast_methods()
for _operator, _build in (("__iadd__", ops.add), ("__isub__", ops.sub), ("__imul__", ops.mul),
                          ("__itruediv__", ops.div)):
    _rebind_method(_operator, executor_views.fast_inplace(_build, getattr(Tensor, _operator)))


# ---------------------------------------------------------------- plain ops (issue 12, eager per-op cost, round 3)
executor_views.bind_result_type(Tensor)
