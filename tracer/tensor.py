"""The Tensor type: a traced IR value inside compile_grad, an eager array outside.

Math methods and operators all go through `tracer.functions`, so there is one
implementation of each op for both modes. The eager state (data, requires_grad,
grad, grad_fn) and the autograd methods live in `tracer.eager`.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from fusegrad.ir import ops
from fusegrad.tracer import dtypes
from fusegrad.tracer import functions as F
from fusegrad.tracer.creation import legacy_array
from fusegrad.tracer.dispatch import data_dependent_error
from fusegrad.tracer.dtypes import Size
from fusegrad.tracer.eager import EagerTensorMixin
from fusegrad.tracer.eager_methods import EagerMethodsMixin


class Tensor(EagerMethodsMixin, EagerTensorMixin):
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
        if self._value is not None:
            raise data_dependent_error("the truth value")
        return bool(self._eager_data())

    def __float__(self) -> float:
        if self._value is not None:
            raise data_dependent_error("the float value")
        return float(self._python_scalar())   # any one-element tensor, as in PyTorch

    def __int__(self) -> int:
        if self._value is not None:
            raise data_dependent_error("the int value")
        return int(self._python_scalar())

    def __index__(self) -> int:
        return self.__int__()

    def __getitem__(self, index):
        # Traced, or recorded for autograd: the IR's slice. Plain eager data keeps
        # NumPy's view semantics (the eager mixin's __getitem__).
        if self._value is not None:
            return F.getitem(self, index)
        return super().__getitem__(index)

    # ------------------------------------------------------------ operators

    def __add__(self, other): return F.add(self, other)
    def __radd__(self, other): return F.add(other, self)
    def __sub__(self, other): return F.sub(self, other)
    def __rsub__(self, other): return F.sub(other, self)
    def __mul__(self, other): return F.mul(self, other)
    def __rmul__(self, other): return F.mul(other, self)
    def __truediv__(self, other): return F.div(self, other)
    def __rtruediv__(self, other): return F.div(other, self)
    def __pow__(self, other): return F.pow(self, other)
    def __rpow__(self, other): return F.pow(other, self)
    def __matmul__(self, other): return F.matmul(self, other)
    def __rmatmul__(self, other): return F.matmul(other, self)
    def __neg__(self): return F.neg(self)
    def __pos__(self): return self
    def __abs__(self): return F.abs(self)
    def __lt__(self, other): return F.lt(self, other)
    def __le__(self, other): return F.le(self, other)
    def __gt__(self, other): return F.gt(self, other)
    def __ge__(self, other): return F.ge(self, other)
    # Elementwise, traced and eager alike, as in NumPy, JAX and PyTorch: identity
    # equality made `x * (tokens != 0)` trace as `x * True`. Hashing stays by
    # identity (as torch's), so tensors remain usable as dictionary keys; code that
    # looks tensors up in lists must compare with `is`.
    def __eq__(self, other):
        return F.eq(self, other) if _comparable(other) else NotImplemented

    def __ne__(self, other):
        return F.ne(self, other) if _comparable(other) else NotImplemented

    __hash__ = object.__hash__

    def eq(self, other): return F.eq(self, other)
    def ne(self, other): return F.ne(self, other)

    # ------------------------------------------------------------ methods

    def add(self, other): return F.add(self, other)
    def sub(self, other): return F.sub(self, other)
    def mul(self, other): return F.mul(self, other)
    def div(self, other): return F.div(self, other)
    def pow(self, other): return F.pow(self, other)
    def exp(self): return F.exp(self)
    def log(self): return F.log(self)
    def sin(self): return F.sin(self)
    def cos(self): return F.cos(self)
    def tanh(self): return F.tanh(self)
    def sqrt(self): return F.sqrt(self)
    def abs(self): return F.abs(self)
    def sign(self): return F.sign(self)
    def sigmoid(self): return F.sigmoid(self)
    def relu(self): return F.relu(self)
    def maximum(self, other): return F.maximum(self, other)
    def minimum(self, other): return F.minimum(self, other)
    def mm(self, other): return F.mm(self, other)
    def mv(self, other): return F.mv(self, other)
    def dot(self, other): return F.dot(self, other)
    def matmul(self, other): return F.matmul(self, other)

    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return F.sum(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return F.mean(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return F.max(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return F.min(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def var(self, axis=None, keepdims=False, **kwargs):
        return F.var(self, axis, keepdims, **kwargs)

    def logsumexp(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return F.logsumexp(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def softmax(self, axis=-1, *, dim=None):
        return F.softmax(self, axis, dim=dim)

    def argmax(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return F.argmax(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def reshape(self, *shape): return F.reshape(self, *shape)
    def view(self, *shape): return F.reshape(self, *shape)
    def permute(self, *dims): return F.permute(self, *dims)
    def expand(self, *shape): return F.broadcast_to(self, F._sizes(shape))

    def transpose(self, dim0: int | None = None, dim1: int | None = None):
        return F.transpose(self, dim0, dim1)

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


def _comparable(other: Any) -> bool:
    """What `==` compares elementwise; anything else (None, a string) falls back to
    Python's identity comparison, so `t == None` is False, as in PyTorch."""
    return isinstance(other, (Tensor, np.ndarray, np.generic, numbers.Number, list, tuple))
