"""NumPy's functions applied to Tensors (issue 11, item 8).

``np.exp(t)``, ``np.clip(t, 0, 1)``, ``np.sum(t, axis=1)``, ``ndarray + t`` reach
Tensor through NumPy's ``__array_ufunc__`` / ``__array_function__`` protocols
(NEP 13 and 18) and run as the fusegrad function of the same meaning, so they trace
inside `compile_grad` and record gradients eagerly.

A NumPy function that fusegrad lacks cannot trace (a traced tensor has no data) and
would drop the gradient of a tensor that requires grad, so there it raises
`NumpyFunctionError` (a TypeError), naming the function and the ``fg.`` one to use;
arguments fusegrad does not take (``out=``, ``where=``, ``dtype=``) raise its
`UnsupportedError` (a NotImplementedError), as fusegrad's own spellings do. On a plain eager
tensor it runs on the tensor's data as it did before this protocol existed
(``np.allclose(t, x)``, ``np.fft.fft(t)``), and returns what NumPy returns.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from fusegrad.ir.errors import FusegradError, ShapeError, UnsupportedError
from fusegrad.tracer import creation as C
from fusegrad.tracer import functions as F
from fusegrad.tracer.state import TensorState


class NumpyFunctionError(FusegradError, TypeError):
    """A NumPy function (or one of its arguments) that fusegrad cannot apply to a
    Tensor. A TypeError, as NumPy raises when no array type implements a function."""


# ---------------------------------------------------------------- ufuncs

# np.<ufunc>(...) -> the fusegrad function with NumPy's semantics for the same inputs.
UFUNCS: dict[np.ufunc, Callable] = {
    np.add: F.add, np.subtract: F.sub, np.multiply: F.mul,
    np.divide: F.div, np.power: F.pow, np.float_power: F.pow,
    np.negative: F.neg, np.positive: lambda x: x, np.absolute: F.abs,
    np.matmul: F.matmul,
    np.exp: F.exp, np.exp2: F.exp2, np.expm1: F.expm1,
    np.log: F.log, np.log1p: F.log1p, np.log2: F.log2, np.log10: F.log10,
    np.sqrt: F.sqrt, np.square: F.square, np.sign: F.sign,
    np.sin: F.sin, np.cos: F.cos, np.tan: F.tan,
    np.arcsin: F.arcsin, np.arccos: F.arccos, np.arctan: F.arctan, np.arctan2: F.arctan2,
    np.sinh: F.sinh, np.cosh: F.cosh, np.tanh: F.tanh, np.hypot: F.hypot,
    np.floor: F.floor, np.ceil: F.ceil, np.rint: F.round,
    np.maximum: F.maximum, np.minimum: F.minimum,
    np.remainder: F.remainder, np.floor_divide: F.floor_divide,
    np.less: F.lt, np.less_equal: F.le, np.greater: F.gt, np.greater_equal: F.ge,
    np.equal: F.eq, np.not_equal: F.ne,
    np.logical_and: F.logical_and, np.logical_or: F.logical_or,
    np.logical_xor: F.logical_xor, np.logical_not: F.logical_not,
    np.bitwise_and: F.bitwise_and, np.bitwise_or: F.bitwise_or,
    np.bitwise_xor: F.bitwise_xor, np.invert: F.bitwise_not,
}


def array_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    name = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    if not _only_known_arrays(inputs + tuple(kwargs.get("out", ()))):
        return NotImplemented
    function = UFUNCS.get(ufunc) if method == "__call__" else None
    if function is None:
        return _fall_back(lambda *a, **k: getattr(ufunc, method)(*a, **k), name,
                          inputs, kwargs, _suggestion(ufunc.__name__))
    given = {k for k, v in kwargs.items() if v is not None}
    if given:   # a spelling refused by name, as fusegrad's own out= is
        raise UnsupportedError(
            f"{name} on a fusegrad Tensor: fusegrad does not support the keyword "
            f"argument(s) {', '.join(sorted(given))} (tensors are not written in place; "
            f"use the result, and fg.where to select elements)")
    return function(*inputs)


# ---------------------------------------------------------------- functions

def _reduction(function: Callable) -> Callable:
    def numpy_spelling(a, axis=None, keepdims=False):
        return function(a, axis=_axis(axis), keepdims=keepdims)
    return numpy_spelling


def _var(a, axis=None, ddof=0, keepdims=False):
    return F.var(a, axis=_axis(axis), ddof=ddof, keepdims=keepdims)


def _arg(function: Callable) -> Callable:
    def numpy_spelling(a, axis=None, keepdims=False):
        return function(a, axis=axis, keepdims=keepdims)
    return numpy_spelling


def _clip(a, a_min=None, a_max=None, *, min=None, max=None):  # noqa: A002
    return F.clip(a, a_min if min is None else min, a_max if max is None else max)


def _transpose(a, axes=None):
    return F.transpose(a) if axes is None else F.permute(a, *np.atleast_1d(axes))


def _reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    if order != "C":
        raise UnsupportedError(f"numpy.reshape on a fusegrad Tensor: only order='C', got {order!r}")
    shape = newshape if shape is None else shape
    return F.reshape(a, *(shape if isinstance(shape, (tuple, list)) else (shape,)))


def _dot(a, b):
    if np.ndim(a) > 2 or np.ndim(b) > 2:
        raise NumpyFunctionError(
            "numpy.dot on a fusegrad Tensor with more than 2 dimensions: its N-d "
            "contraction differs from matmul; use fg.matmul (or @) for batched products")
    return F.matmul(a, b) if np.ndim(a) and np.ndim(b) else F.mul(a, b)


def _round(a, decimals=0):
    if decimals != 0:
        raise UnsupportedError("numpy.round on a fusegrad Tensor: only decimals=0; "
                                 f"got decimals={decimals} (scale, fg.round, and unscale)")
    return F.round(a)


# np.<function>(...) -> its fusegrad spelling. The adapters take NumPy's parameter
# names; any other argument the user passes (out=, dtype=, ...) is refused by name.
FUNCTIONS: dict[Callable, Callable] = {
    np.sum: _reduction(F.sum), np.mean: _reduction(F.mean),
    np.max: _reduction(F.amax), np.min: _reduction(F.amin),
    np.amax: _reduction(F.amax), np.amin: _reduction(F.amin),
    np.var: _var,
    np.argmax: _arg(F.argmax), np.argmin: _arg(F.argmin),
    np.clip: _clip, np.where: F.where,
    np.transpose: _transpose, np.reshape: _reshape,
    np.broadcast_to: lambda array, shape: F.broadcast_to(array, shape),
    np.dot: _dot, np.round: _round, np.around: _round,
    # shape queries: known while tracing
    np.shape: lambda a: tuple(a.shape), np.ndim: lambda a: len(a.shape),
    np.size: lambda a, axis=None: int(np.prod(a.shape)) if axis is None else a.shape[axis],
}


def array_function(func: Callable, types: tuple, args: tuple, kwargs: dict) -> Any:
    if not all(issubclass(t, (TensorState, np.ndarray)) for t in types):
        return NotImplemented
    name = f"{func.__module__.replace('numpy._core.', 'numpy.')}.{func.__name__}"
    name = name.replace("numpy.fromnumeric", "numpy").replace("numpy.multiarray", "numpy")
    adapter = FUNCTIONS.get(func)
    if adapter is None:
        return _fall_back(func, name, args, kwargs, _suggestion(func.__name__))
    try:
        inspect.signature(adapter).bind(*args, **kwargs)
    except TypeError:
        raise UnsupportedError(
            f"{name} on a fusegrad Tensor: fusegrad supports {name}"
            f"{inspect.signature(adapter)}, got the keyword argument(s) "
            f"{', '.join(sorted(kwargs)) or '(none)'} and {len(args)} positional") from None
    return adapter(*args, **kwargs)


# ---------------------------------------------------------------- what fusegrad lacks

def _fall_back(call: Callable, name: str, args: tuple, kwargs: dict, suggestion: str) -> Any:
    """Run NumPy on the data of plain eager tensors, as NumPy did before Tensor
    implemented its protocols; refuse where that would lose the trace or a gradient."""
    tensors = _tensors((args, kwargs))
    if any(t._mode.traced for t in tensors):
        raise NumpyFunctionError(
            f"{name} cannot be applied to a traced fusegrad Tensor inside compile_grad "
            f"(it would need the array's values); {suggestion}")
    if any(t._requires_grad for t in tensors):
        raise NumpyFunctionError(
            f"{name} on a fusegrad Tensor that requires grad would lose its gradient; "
            f"{suggestion}, or apply it to tensor.detach()")
    return call(*_to_numpy(args), **_to_numpy(kwargs))


def _suggestion(numpy_name: str) -> str:
    import fusegrad   # the public namespace: the names users write
    if callable(getattr(fusegrad, numpy_name, None)):
        return f"use fg.{numpy_name}"
    return f"fusegrad has no {numpy_name} yet"


def _tensors(tree: Any) -> list:
    if isinstance(tree, TensorState):
        return [tree]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    if isinstance(tree, dict):
        return _tensors(list(tree.values()))
    return []


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, TensorState):
        return np.asarray(tree)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_numpy(item) for item in tree)
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return tree


def _only_known_arrays(values: tuple) -> bool:
    """Leave to another library's protocol the operands it owns (NEP 13)."""
    return all(isinstance(v, (TensorState, np.ndarray, np.generic)) or
               not hasattr(type(v), "__array_ufunc__") for v in values)


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


# ---------------------------------------------------------------- batched matmul, axes (issue 11, item 1)

def _einsum(subscripts, *operands, optimize=False):
    # optimize= only chooses an order of contraction; the result is the same.
    return F.einsum(subscripts, *operands)


FUNCTIONS.update({
    np.swapaxes: lambda a, axis1, axis2: F.swapaxes(a, axis1, axis2),
    np.moveaxis: lambda a, source, destination: F.moveaxis(a, source, destination),
    np.einsum: _einsum,
})
if hasattr(np, "matrix_transpose"):   # NumPy 2
    FUNCTIONS[np.matrix_transpose] = lambda x: F.matrix_transpose(x)

# ---------------------------------------------------------------- gathers (issue 11, item 2)

def _take(a, indices, axis=None, mode="raise"):
    if mode != "raise":
        raise UnsupportedError(f"numpy.take on a fusegrad Tensor: only mode='raise' (an index "
                               f"out of bounds is an error), got mode={mode!r}")
    return F.take(a, indices, axis)


FUNCTIONS.update({
    np.take: _take,
    np.take_along_axis: lambda arr, indices, axis: F.take_along_axis(arr, indices, axis),
})

# ---------------------------------------------------------------- reductions and matrix helpers
# (issue 11, item 7) NumPy's signatures, NumPy's defaults (np.std: ddof=0).

def _std(a, axis=None, ddof=0, keepdims=False):
    return F.std(a, axis=_axis(axis), ddof=ddof, keepdims=keepdims)


def _scan(function: Callable) -> Callable:
    def numpy_spelling(a, axis=None):
        return function(a, axis=axis)
    return numpy_spelling


def _norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 (NumPy's name)
    return F._numpy_norm(x, ord, _axis(axis), keepdims)


FUNCTIONS.update({
    np.std: _std,
    np.cumsum: _scan(F.cumsum), np.cumprod: _scan(F.cumprod),
    np.prod: _reduction(F.prod),
    np.any: _reduction(F.any_), np.all: _reduction(F.all_),
    np.linalg.norm: _norm,
    np.diag: lambda v, k=0: F.diag(v, k),
    np.diagonal: lambda a, offset=0, axis1=0, axis2=1: F.diagonal(a, offset, axis1, axis2),
    np.trace: lambda a, offset=0, axis1=0, axis2=1: F.trace(a, offset, axis1, axis2),
    np.tril: lambda m, k=0: F.tril(m, k), np.triu: lambda m, k=0: F.triu(m, k),
    np.outer: lambda a, b: F.outer(a, b),
})


# ---------------------------------------------------------------- layout (issue 11, items 5 and 8)
# NumPy's signatures and defaults: concatenate's axis=None flattens first, squeeze
# refuses an axis whose size is not 1 (fg.squeeze and x.squeeze leave it, as PyTorch).

def _concatenate(arrays, axis=0):
    if axis is None:
        return F.concatenate([F.reshape(a, -1) for a in arrays], axis=0)
    return F.concatenate(list(arrays), axis=axis)


def _squeeze(a, axis=None):
    shape = tuple(np.shape(a))
    for i in (() if axis is None else (axis,) if isinstance(axis, int) else axis):
        if not -len(shape) <= i < len(shape) or shape[i] != 1:
            raise ShapeError(f"numpy.squeeze: cannot select axis {i} of shape {shape}: only "
                             f"an axis of size 1 can be squeezed")
    return F.reshape(a, *np.squeeze(np.empty(shape, np.bool_), axis).shape)


def _pad(array, pad_width, mode="constant", *, constant_values=0):
    return F.pad(array, pad_width, mode, constant_values=constant_values)


FUNCTIONS.update({
    np.concatenate: _concatenate,
    np.stack: lambda arrays, axis=0: F.stack(list(arrays), axis=axis),
    np.split: lambda ary, indices_or_sections, axis=0: F.split(
        ary, indices_or_sections=indices_or_sections, axis=axis),
    np.expand_dims: lambda a, axis: F.expand_dims(a, axis),
    np.squeeze: _squeeze,
    np.flip: lambda m, axis=None: F.flip(m, axis),
    np.repeat: lambda a, repeats, axis=None: F.repeat(a, repeats, axis),
    np.tile: lambda A, reps: F.tile(A, reps),
    np.pad: _pad,
})


# ---------------------------------------------------------------- arrays like another
# Only the shape and dtype are read: a constant of the trace, as NumPy gives it.

def _like(function: Callable) -> Callable:
    def numpy_spelling(a, dtype=None, *, shape=None):
        if shape is not None:
            raise UnsupportedError(f"numpy.{function.__name__} on a fusegrad Tensor: shape= is "
                                   f"not supported; use fg.full(shape, value)")
        return function(a, dtype=dtype)
    return numpy_spelling


FUNCTIONS.update({
    np.zeros_like: _like(C.zeros_like), np.ones_like: _like(C.ones_like),
    np.empty_like: _like(C.empty_like),
    np.full_like: lambda a, fill_value, dtype=None: C.full_like(a, fill_value, dtype=dtype),
})
