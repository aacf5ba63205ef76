"""The array functions of the public API (``fg.tanh``, ``fg.matmul``, ...).

Each is one `ir.ops` builder applied through `dispatch.apply`, so the same call
traces inside `compile_grad` and runs eagerly outside. `grad_fn` names the node
PyTorch would show for the result: the primitive record's (`P.<op>.grad_fn`) where
the function is its primitive, spelled here only where PyTorch names overloads apart
(``sum()`` vs ``sum(dim)``, ``mv`` vs ``mm``, ``transpose`` vs ``permute``).
"""
from __future__ import annotations

import builtins
import numbers
from collections import namedtuple
from typing import Any

import numpy as np

from fusegrad.ir import ops
from fusegrad.ir import primitives as P
from fusegrad.ir.errors import ShapeError, UnsupportedError
from fusegrad.tracer.dispatch import apply


def add(a, b):
    return apply(ops.add, a, b, grad_fn=P.add.grad_fn)


def sub(a, b):
    return apply(ops.sub, a, b, grad_fn=P.sub.grad_fn)


def mul(a, b):
    return apply(ops.mul, a, b, grad_fn=P.mul.grad_fn)


def div(a, b):
    return apply(ops.div, a, b, grad_fn=P.div.grad_fn)


def pow(a, b):  # noqa: A001  (the public name is PyTorch's)
    # PyTorch names the three overloads: tensor ** number, tensor ** tensor, number ** tensor.
    grad_fn = "PowBackward0" if _is_number(b) else "PowBackward2" if _is_number(a) else "PowBackward1"
    return apply(ops.power, a, b, grad_fn=grad_fn)


def neg(x):
    return apply(ops.neg, x, grad_fn=P.neg.grad_fn)


def _unary(op, primitive):
    def function(x):
        return apply(op, x, grad_fn=primitive.grad_fn)
    function.__name__ = op.__name__
    function.__doc__ = f"Elementwise {op.__name__}."
    return function


exp = _unary(ops.exp, P.exp)
log = _unary(ops.log, P.log)
sin = _unary(ops.sin, P.sin)
cos = _unary(ops.cos, P.cos)
tanh = _unary(ops.tanh, P.tanh)
sqrt = _unary(ops.sqrt, P.sqrt)
abs = _unary(ops.abs, P.abs_)  # noqa: A001
sign = _unary(ops.sign, P.sign)
sigmoid = _unary(ops.sigmoid, P.sigmoid)
relu = _unary(ops.relu, P.relu)


def maximum(a, b):
    return apply(ops.maximum, a, b, grad_fn=P.maximum.grad_fn)


def minimum(a, b):
    return apply(ops.minimum, a, b, grad_fn=P.minimum.grad_fn)


def where(cond, a, b):
    return apply(ops.where, cond, a, b, grad_fn=P.where.grad_fn)


lt = lambda a, b: apply(ops.lt, a, b)  # noqa: E731
le = lambda a, b: apply(ops.le, a, b)  # noqa: E731
gt = lambda a, b: apply(ops.gt, a, b)  # noqa: E731
ge = lambda a, b: apply(ops.ge, a, b)  # noqa: E731
eq = lambda a, b: apply(ops.eq, a, b)  # noqa: E731
ne = lambda a, b: apply(ops.ne, a, b)  # noqa: E731


# ---------------------------------------------------------------- more elementwise math
# (issue 11, item 6.) NumPy's names, and PyTorch's where they differ.

log1p = _unary(ops.log1p, P.log1p)
expm1 = _unary(ops.expm1, P.expm1)
tan = _unary(ops.tan, P.tan)
arctan = atan = _unary(ops.arctan, P.arctan)
sinh = _unary(ops.sinh, P.sinh)
cosh = _unary(ops.cosh, P.cosh)
arcsin = asin = _unary(ops.arcsin, P.arcsin)
arccos = acos = _unary(ops.arccos, P.arccos)
log2 = _unary(ops.log2, P.log2)
log10 = _unary(ops.log10, P.log10)
exp2 = _unary(ops.exp2, P.exp2)
floor = _unary(ops.floor, P.floor)
ceil = _unary(ops.ceil, P.ceil)
round = _unary(ops.round, P.round_)  # noqa: A001


def square(x):
    return apply(ops.square, x, grad_fn=P.integer_pow.grad_fn)


def rsqrt(x):
    return apply(ops.rsqrt, x, grad_fn="RsqrtBackward0")


def softplus(x):
    return apply(ops.softplus, x, grad_fn="SoftplusBackward0")


def arctan2(a, b):
    return apply(ops.arctan2, a, b, grad_fn=P.arctan2.grad_fn)


atan2 = arctan2


def hypot(a, b):
    return apply(ops.hypot, a, b, grad_fn=P.hypot.grad_fn)


def clip(x, min=None, max=None):  # noqa: A002  (PyTorch's parameter names)
    """``clip(x, lo, hi)`` (NumPy) or ``clamp(x, min=, max=)`` (PyTorch); the bounds may
    be numbers or tensors. The gradient reaches x wherever lo <= x <= hi."""
    # PyTorch names the overloads: bounds that are numbers (or None), or tensors.
    numbers_only = all(b is None or _is_number(b) for b in (min, max))
    return apply(ops.clip, x, min, max, grad_fn="ClampBackward1" if numbers_only else "ClampBackward0")


clamp = clip


# ---------------------------------------------------------------- logical, bitwise, modular
# (issue 11, item 4) NumPy's and PyTorch's names; `&`, `|`, `^`, `~`, `//`, `%` on Tensor.

def _no_grad_binary(op):
    def function(a, b):
        return apply(op, a, b)
    function.__name__ = op.__name__
    function.__doc__ = f"Elementwise {op.__name__} (no gradient)."
    return function


logical_and = _no_grad_binary(ops.logical_and)
logical_or = _no_grad_binary(ops.logical_or)
logical_xor = _no_grad_binary(ops.logical_xor)
bitwise_and = _no_grad_binary(ops.bitwise_and)
bitwise_or = _no_grad_binary(ops.bitwise_or)
bitwise_xor = _no_grad_binary(ops.bitwise_xor)
floor_divide = _no_grad_binary(ops.floor_divide)


def logical_not(x):
    return apply(ops.logical_not, x)


def bitwise_not(x):
    return apply(ops.invert, x)


invert = bitwise_not


def remainder(a, b):
    """``a % b`` with the divisor's sign (NumPy's mod, PyTorch's remainder)."""
    # PyTorch names the overloads: tensor % number, and tensor % tensor.
    grad_fn = "RemainderBackward0" if _is_number(b) else "RemainderBackward1"
    return apply(ops.remainder, a, b, grad_fn=grad_fn)


mod = remainder


# ---------------------------------------------------------------- matmul

def matmul(a, b):
    grad_fn = {(2, 2): "MmBackward0", (2, 1): "MvBackward0", (1, 1): "DotBackward0"}
    return apply(ops.matmul, a, b, grad_fn=grad_fn.get((_ndim(a), _ndim(b)), "MmBackward0"))


def mm(a, b):
    if _ndim(a) != 2 or _ndim(b) != 2:
        raise ShapeError(f"mm: both operands must be 2-d, got shapes {_shape(a)} and {_shape(b)}")
    return matmul(a, b)


def mv(a, b):
    if _ndim(a) != 2 or _ndim(b) != 1:
        raise ShapeError(f"mv: expected a matrix and a vector, got shapes {_shape(a)} and {_shape(b)}")
    return matmul(a, b)


def dot(a, b):
    return matmul(a, b)


# ---------------------------------------------------------------- layout

def reshape(x, *shape):
    return apply(ops.reshape, x, shape=_sizes(shape), grad_fn=P.reshape.grad_fn)


def getitem(x, index):
    """``x[index]`` with NumPy's basic indexing (integers, slices, None, ...)."""
    items = index if isinstance(index, tuple) else (index,)
    return apply(_getitem, x, index=_freeze(items), grad_fn=_index_grad_fn(items))


def _index_grad_fn(items: tuple) -> str:
    """PyTorch applies an index item by item and names the last one that did something."""
    for item in reversed(items):
        if item is None:
            return "UnsqueezeBackward0"
        if isinstance(item, slice):
            if item != slice(None):
                return "SliceBackward0"
        elif item is not Ellipsis:
            return "SelectBackward0"
    return "AliasBackward0"


def _getitem(x, *, index):
    return ops.getitem(x, tuple(slice(*i[1:]) if isinstance(i, tuple) else i for i in index))


def _freeze(items: tuple) -> tuple:
    """Slices are not hashable (before Python 3.12); op parameters must be."""
    return tuple(("slice", i.start, i.stop, i.step) if isinstance(i, slice) else i for i in items)


def transpose(x, dim0: int | None = None, dim1: int | None = None):
    """``transpose(x)`` reverses the axes (NumPy); ``transpose(x, 0, 1)`` swaps two (PyTorch)."""
    perm = None
    if dim0 is not None:
        perm = list(range(_ndim(x)))
        perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
    return apply(ops.transpose, x, perm=perm, grad_fn="TransposeBackward0")


def permute(x, *dims):
    return apply(ops.transpose, x, perm=_sizes(dims), grad_fn=P.transpose.grad_fn)


def broadcast_to(x, shape):
    return apply(ops.broadcast_to, x, shape=tuple(shape), grad_fn=P.broadcast_to.grad_fn)


# ---------------------------------------------------------------- reductions

MinMax = namedtuple("MinMax", ["values", "indices"])


def _axes(axis, dim, keepdims, keepdim):
    """NumPy's axis=/keepdims= or PyTorch's dim=/keepdim= (not both)."""
    if dim is not None and axis is not None:
        raise TypeError("give either axis= (NumPy) or dim= (PyTorch), not both")
    return (axis if dim is None else dim), bool(keepdims or keepdim)


def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=False):  # noqa: A001
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    return apply(ops.reduce_sum, x, axes=axes, keepdims=keep, grad_fn="SumBackward0" if axes is None else P.reduce_sum.grad_fn)


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    return apply(ops.mean, x, axes=axes, keepdims=keep, grad_fn="MeanBackward0" if axes is None else "MeanBackward1")


def _chooser(op, arg_op, name, x, axis, keepdims, dim, keepdim):
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    if dim is None:
        return apply(op, x, axes=axes, keepdims=keep, grad_fn=f"{name}Backward1")
    values = apply(op, x, axes=dim, keepdims=keep, grad_fn=f"{name}Backward0")
    indices = apply(arg_op, x, axis=dim, keepdims=keep)
    return MinMax(values, indices)


def max(x, axis=None, keepdims=False, *, dim=None, keepdim=False):  # noqa: A001
    """With dim= returns (values, indices) as PyTorch does; with axis= the values, as NumPy."""
    return _chooser(ops.reduce_max, ops.argmax, "Max", x, axis, keepdims, dim, keepdim)


def min(x, axis=None, keepdims=False, *, dim=None, keepdim=False):  # noqa: A001
    return _chooser(ops.reduce_min, ops.argmin, "Min", x, axis, keepdims, dim, keepdim)


def amax(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    return apply(ops.reduce_max, x, axes=axes, keepdims=keep, grad_fn="AmaxBackward0")


def amin(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    return apply(ops.reduce_min, x, axes=axes, keepdims=keep, grad_fn="AminBackward0")


def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    if axes is None:
        return apply(ops.argmax, reshape(x, -1), axis=0, keepdims=False)
    return apply(ops.argmax, x, axis=axes, keepdims=keep)


def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    if axes is None:
        return apply(ops.argmin, reshape(x, -1), axis=0, keepdims=False)
    return apply(ops.argmin, x, axis=axes, keepdims=keep)


def logsumexp(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    return apply(ops.logsumexp, x, axes=axes, keepdims=keep, grad_fn="LogsumexpBackward0")


def softmax(x, axis=-1, *, dim=None):
    return apply(ops.softmax, x, axis=axis if dim is None else dim, grad_fn="SoftmaxBackward0")


def var(x, axis=None, keepdims=False, *, ddof=None, dim=None, keepdim=False,
        unbiased=None, correction=None):
    """Variance. NumPy's spelling (axis=) defaults to ddof=0; PyTorch's (dim=) to the
    unbiased estimate, as each library does."""
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    if correction is None:
        if ddof is not None:
            correction = ddof
        elif unbiased is not None:
            correction = int(unbiased)
        else:
            correction = 1 if dim is not None else 0
    return apply(_variance, x, axes=axes, keepdims=keep, correction=correction,
                 grad_fn="VarBackward0")


def _variance(x, *, axes, keepdims, correction):
    centred = ops.sub(x, ops.mean(x, axes, keepdims=True))
    squares = ops.reduce_sum(ops.mul(centred, centred), axes, keepdims)
    count = x.size // squares.size if squares.size else 0
    return ops.div(squares, count - correction if count > correction else 0)


# ---------------------------------------------------------------- helpers

def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Number)


def _ndim(x) -> int:
    return len(_shape(x))


def _shape(x) -> tuple:
    return tuple(getattr(x, "shape", ()))


def _sizes(shape) -> tuple[int, ...]:
    """Accept both ``f(2, 3)`` and ``f((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(d) for d in shape)


# ---------------------------------------------------------------- layout (issue 11, item 5)
# NumPy's spellings (axis=) and PyTorch's (dim=); where the two libraries give one name
# two meanings, the fg function is NumPy's and the Tensor method is PyTorch's:
# fg.repeat is np.repeat (x.repeat is torch's tile), fg.split(x, n) splits into n equal
# sections as np.split, and into pieces of n as torch.split when given dim=.
# (min, max and sum are this module's ops: the builtins are spelled builtins.min ...)

def _one_axis(axis, dim, default):
    if dim is not None and axis is not None:
        raise TypeError("give axis= (NumPy) or dim= (PyTorch), not both")
    return default if axis is None and dim is None else (dim if axis is None else axis)


def _concatenate(*xs, axis):
    return ops.concatenate(xs, axis)


def _stack(*xs, axis):
    return ops.stack(xs, axis)


def concatenate(xs, axis=None, *, dim=None):
    """``fg.concatenate(xs, axis=)`` (NumPy), ``fg.cat(tensors, dim=)`` (PyTorch)."""
    return apply(_concatenate, *xs, axis=_one_axis(axis, dim, 0), grad_fn="CatBackward0")


def cat(tensors, dim=None, *, axis=None):
    return concatenate(tensors, axis=_one_axis(axis, dim, 0))


def stack(xs, axis=None, *, dim=None):
    return apply(_stack, *xs, axis=_one_axis(axis, dim, 0), grad_fn="StackBackward0")


def expand_dims(x, axis):
    axis = axis if isinstance(axis, numbers.Integral) else tuple(axis)
    return apply(ops.expand_dims, x, axis=axis, grad_fn="UnsqueezeBackward0")


def flip(x, axis=None, *, dims=None):
    """``fg.flip(x, axis)`` (NumPy: all axes when None), ``fg.flip(x, dims)`` (PyTorch)."""
    axis = _one_axis(axis, dims, None)
    axis = axis if axis is None or isinstance(axis, numbers.Integral) else tuple(axis)
    return apply(ops.flip, x, axis=axis, grad_fn="FlipBackward0")


def repeat(x, repeats, axis=None):
    """NumPy's repeat: each element `repeats` times (PyTorch's repeat_interleave)."""
    return apply(ops.repeat, x, repeats=int(repeats), axis=axis, grad_fn="IndexSelectBackward0")


def repeat_interleave(x, repeats, dim=None):
    return repeat(x, repeats, dim)


def tile(x, reps):
    """NumPy's tile; PyTorch's ``x.repeat(*sizes)`` and ``torch.tile``."""
    reps = (int(reps),) if isinstance(reps, numbers.Integral) else _sizes(tuple(reps))
    return apply(ops.tile, x, reps=reps, grad_fn="RepeatBackward0")


def _repeat_method(x, *sizes):
    """``x.repeat(*sizes)``: PyTorch's, whole copies (NumPy's tile); at least x.ndim sizes."""
    sizes = _sizes(sizes)
    if len(sizes) < _ndim(x):
        raise ShapeError(f"repeat: number of repeat dims {len(sizes)} can not be smaller than "
                         f"the number of dimensions of the tensor {_shape(x)}")
    return tile(x, sizes)


def pad(x, pad_width, mode="constant", *, constant_values=0):
    """NumPy's pad, constant mode only."""
    if mode != "constant":
        raise UnsupportedError(f"pad: mode {mode!r} is not supported; fusegrad pads with "
                               f"mode='constant' (constant_values=) only")
    return apply(ops.pad, x, pad_width=_nested(pad_width), constant_values=constant_values,
                 grad_fn="ConstantPadNdBackward0")


def _nested(widths):
    """Op parameters must be hashable: lists (and arrays) of widths as tuples."""
    if isinstance(widths, numbers.Integral):
        return int(widths)
    return tuple(_nested(w) for w in widths)


def _split(x, *, bounds, axis):
    return ops.split(x, bounds, axis)


def split(x, size_or_sections=None, /, axis=None, *, indices_or_sections=None,
          split_size_or_sections=None, dim=None):
    """NumPy's ``split(x, indices_or_sections, axis)`` (a number of equal sections, or
    indices) or PyTorch's ``split(x, split_size_or_sections, dim=)`` (pieces of a size,
    or a list of sizes), told apart by `axis`/`indices_or_sections=` or
    `dim`/`split_size_or_sections=`. ``split(x, 2)`` alone means two different
    things, pieces of 2 or 2 pieces: it is refused rather than guessed."""
    numpy_style = axis is not None or indices_or_sections is not None
    torch_style = dim is not None or split_size_or_sections is not None
    if numpy_style == torch_style:
        raise TypeError(
            "split: say which split is meant: NumPy's fg.split(x, indices_or_sections, "
            "axis) (sections or indices) or PyTorch's fg.split(x, split_size_or_sections, "
            "dim=) (sizes); with neither axis nor dim, split(x, 2) could be either"
            if not numpy_style else
            "split: NumPy's axis/indices_or_sections and PyTorch's dim/split_size_or_sections "
            "cannot be mixed")
    if numpy_style:
        sections = indices_or_sections if indices_or_sections is not None else size_or_sections
        sections = int(sections) if isinstance(sections, numbers.Integral) else \
            tuple(int(i) for i in sections)
        return apply(_split, x, bounds=sections, axis=axis or 0, grad_fn="SplitWithSizesBackward0")
    size = split_size_or_sections if split_size_or_sections is not None else size_or_sections
    return _torch_split(x, size, dim or 0)


def _torch_split(x, size, dim):
    n = _shape(x)[dim] if _ndim(x) else 0
    if isinstance(size, numbers.Integral):
        if size <= 0:
            raise ValueError(f"split: split size must be positive, got {size}")
        sizes = [builtins.min(size, n - b) for b in range(0, n, size)] or [0]
        grad_fn = "SplitBackward0"
    else:
        sizes = [int(s) for s in size]
        if builtins.sum(sizes) != n:
            raise ShapeError(f"split: sizes {tuple(sizes)} must sum to {n}, the size of "
                             f"dim {dim} of a tensor of shape {_shape(x)}")
        grad_fn = "SplitWithSizesBackward0"
    bounds = tuple(int(b) for b in np.cumsum(sizes)[:-1])
    return apply(_split, x, bounds=bounds, axis=dim, grad_fn=grad_fn)


def _split_method(x, split_size_or_sections, dim=0):
    """``x.split(size_or_sizes, dim)``: PyTorch's."""
    return _torch_split(x, split_size_or_sections, dim)


def chunk(x, chunks, dim=0):
    """PyTorch's chunk: pieces of ceil(n / chunks) along `dim` (the last may be smaller)."""
    n = _shape(x)[dim]
    return _torch_split(x, builtins.max(1, -(-n // int(chunks))), dim)


# ---------------------------------------------------------------- erf, gelu, log_softmax
# (issue 11, item 6, rest)

erf = _unary(ops.erf, P.erf)
erfc = _unary(ops.erfc, P.erfc)


def gelu(x, approximate="none"):
    """PyTorch's ``torch.nn.functional.gelu``: x Phi(x), or its tanh approximation
    with ``approximate="tanh"``."""
    return apply(ops.gelu, x, approximate=approximate, grad_fn="GeluBackward0")


def log_softmax(x, axis=-1, *, dim=None):
    """log(softmax(x)) along ``axis`` (NumPy/JAX) or ``dim`` (PyTorch), computed
    stably as x - logsumexp(x)."""
    return apply(ops.log_softmax, x, axis=axis if dim is None else dim,
                 grad_fn="LogSoftmaxBackward0")
