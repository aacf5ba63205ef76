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
from fusegrad.ir.einsum import einsum as ir_einsum
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

_MATMUL_GRAD_FN = {(2, 2): "MmBackward0", (2, 1): "MvBackward0", (1, 1): "DotBackward0"}


def matmul(a, b):
    ndims = _ndim(a), _ndim(b)
    if builtins.max(ndims) > 2:
        # PyTorch computes N-d matmul as bmm (or mm of the folded rows) and a view
        # of the result back to the batch shape: `_unsafe_view`.
        return apply(ops.matmul, a, b, grad_fn="UnsafeViewBackward0")
    return apply(ops.matmul, a, b, grad_fn=_MATMUL_GRAD_FN.get(ndims, "MmBackward0"))


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
    if builtins.any(_is_index_array(i) for i in items):
        return _advanced_getitem(x, items)   # integer arrays (issue 11, item 2)
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


def transpose(x, *dims, axes=None, dim0: int | None = None, dim1: int | None = None):
    """NumPy's and PyTorch's transpose, told apart by their arguments:

    - ``transpose(x)`` reverses the axes (NumPy);
    - ``transpose(x, (2, 0, 1))``, ``transpose(x, axes=...)`` and, with one int per
      axis, ``transpose(x, 2, 0, 1)`` permute them (NumPy's ``axes``);
    - two ints, ``transpose(x, 0, 1)`` or ``dim0=, dim1=``, swap two axes (PyTorch).
      On a matrix that is also NumPy's permutation; on more dimensions NumPy would
      refuse two ints, so the spelling is never ambiguous.
    """
    if dim0 is not None or dim1 is not None:
        if dims or axes is not None or dim0 is None or dim1 is None:
            raise TypeError("transpose: give dim0= and dim1= (PyTorch) together, and no axes")
        dims = (dim0, dim1)
    if axes is not None:
        if dims:
            raise TypeError("transpose: give the axes either positionally or as axes=, not both")
        dims = (axes,)
    axes = dims
    if axes in ((), (None,)):
        return apply(ops.transpose, x, perm=None, grad_fn="TransposeBackward0")
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        return permute(x, *axes[0])
    if len(axes) == 2:
        return swapaxes(x, *axes)
    if len(axes) == _ndim(x):
        return permute(x, *axes)
    raise ShapeError(f"transpose of a tensor of shape {_shape(x)}: give no axes (reverse them), "
                     f"two (swap them, as torch.transpose) or {_ndim(x)} (a permutation, as "
                     f"np.transpose), got {axes}")


def permute(x, *dims):
    """PyTorch's ``permute(2, 0, 1)`` (or a sequence, or NumPy's negative axes)."""
    return apply(ops.permute_axes, x, axes=_sizes(dims), grad_fn=P.transpose.grad_fn)


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
    return ops.div(squares, ops.size_const(count - correction if count > correction else 0,
                                           squares))


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


_AXIS_UNSET = object()   # concatenate's axis not given: 0; given as None: flattened


def concatenate(xs, axis=_AXIS_UNSET, *, dim=None):
    """``fg.concatenate(xs, axis=)`` (NumPy), ``fg.cat(tensors, dim=)`` (PyTorch).
    As NumPy's, ``axis=None`` concatenates the arrays flattened."""
    if axis is None and dim is None:
        return concatenate([reshape(x, -1) for x in xs], axis=0)
    axis = None if axis is _AXIS_UNSET else axis
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


# ---------------------------------------------------------------- batched matmul, axes (issue 11, item 1)

def bmm(a, b):
    """PyTorch's bmm: (B, n, k) @ (B, k, m), both 3-d with the same batch size (no
    broadcasting: `matmul` broadcasts)."""
    if _ndim(a) != 3 or _ndim(b) != 3:
        raise ShapeError(f"bmm: both operands must be 3-d, got shapes {_shape(a)} and "
                         f"{_shape(b)} (use fg.matmul or @ for other shapes)")
    if _shape(a)[0] != _shape(b)[0]:
        raise ShapeError(f"bmm: batch sizes differ: shapes {_shape(a)} and {_shape(b)} "
                         f"(use fg.matmul or @ to broadcast batch dimensions)")
    return apply(ops.matmul, a, b, grad_fn="BmmBackward0")


def swapaxes(x, axis1, axis2):
    """NumPy's swapaxes; PyTorch's swapaxes / swapdims / transpose(dim0, dim1)."""
    return apply(ops.swapaxes, x, axis1=int(axis1), axis2=int(axis2), grad_fn="TransposeBackward0")


swapdims = swapaxes


def moveaxis(x, source, destination):
    """NumPy's moveaxis, PyTorch's moveaxis / movedim: ints or sequences of ints."""
    return apply(ops.moveaxis, x, source=_axes_param(source),
                 destination=_axes_param(destination), grad_fn="PermuteBackward0")


movedim = moveaxis


def matrix_transpose(x):
    """The last two axes swapped: ``x.mT`` (PyTorch), ``np.matrix_transpose`` (NumPy 2)."""
    return apply(ops.matrix_transpose, x, grad_fn="TransposeBackward0")


def einsum(subscripts, *operands):
    """NumPy's einsum (and PyTorch's, which also takes the operands as one list):
    explicit or implicit output, ``...``, repeated labels (diagonals)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    # PyTorch's einsum returns the view of its last product (bmm, or sum): ViewBackward0.
    return apply(_einsum, *operands, subscripts=subscripts, grad_fn="ViewBackward0")


def _einsum(*operands, subscripts):
    return ir_einsum(subscripts, *operands)


def _axes_param(axes):
    """Operation parameters must be hashable: an int or a tuple of ints."""
    if isinstance(axes, (tuple, list)):
        return tuple(int(a) for a in axes)
    return int(axes)

# ---------------------------------------------------------------- gathers (issue 11, item 2)
# Index arrays (Tensors, ndarrays, lists) travel as arguments of the op, so that a traced
# index is an input of the graph and a constant one a captured constant; the rest of the
# index (integers, slices, None, ...) is a parameter, with a marker where each array was.

from fusegrad.tracer.state import TensorState  # noqa: E402 (this section's own import)

_ARRAY = ("array",)


def _is_index_array(item) -> bool:
    return isinstance(item, (TensorState, np.ndarray, list))


def _is_traced(item) -> bool:
    return isinstance(item, TensorState) and item._mode.traced


def _index_arguments(items: tuple) -> tuple[list, tuple]:
    """The index arrays of `items` and the index with markers in their place. A known
    boolean mask is NumPy's: the integer positions of its True elements (one array per
    axis it covers); a traced one has no known size and stays, for ops to refuse."""
    arrays, frozen = [], []
    for item in items:
        if not _is_index_array(item):
            frozen.append(item)
            continue
        if not _is_traced(item):
            data = item._eager_data() if hasattr(item, "_eager_data") else np.asarray(item)
            if data.dtype == np.bool_:
                positions = np.nonzero(data)
                arrays.extend(positions)
                frozen.extend([_ARRAY] * len(positions))
                continue
            item = data if isinstance(item, list) else item
        arrays.append(item)
        frozen.append(_ARRAY)
    return arrays, _freeze(tuple(frozen))


def _thaw(arrays, index: tuple) -> tuple:
    arrays = iter(arrays)
    return tuple(next(arrays) if i == _ARRAY else slice(*i[1:]) if isinstance(i, tuple) else i
                 for i in index)


def _advanced_getitem(x, items: tuple):
    arrays, index = _index_arguments(items)
    return apply(_gather_index, x, *arrays, index=index, grad_fn="IndexBackward0")


def _gather_index(x, *arrays, index):
    return ops.getitem(x, _thaw(arrays, index))


def take(x, indices, axis=None):
    """NumPy's take: ``x[..., indices, ...]`` along `axis`, or into the flattened x
    when axis is None (PyTorch's take). Negative indices count from the end."""
    if isinstance(indices, numbers.Integral):
        indices = np.asarray(indices)   # one index: a 0-d index array, as NumPy
    return apply(ops.take, x, indices, axis=axis, grad_fn="TakeBackward0")


def take_along_axis(x, indices, axis):
    """NumPy's take_along_axis (PyTorch's take_along_dim): the elements of x at
    `indices` along `axis`, the other axes broadcast against each other."""
    return apply(ops.take_along_axis, x, indices, axis=axis, grad_fn="TakeAlongDimBackward0")


take_along_dim = take_along_axis


def gather(x, dim, index):
    """PyTorch's gather: ``out[i][j] = x[i][index[i][j]]`` for dim=1."""
    return apply(ops.torch_gather, x, index, dim=int(dim), grad_fn="GatherBackward0")


def _gather_method(x, dim, index):
    return gather(x, dim, index)


def _take_method(x, indices, axis=None):
    return take(x, indices, axis)


# ---------------------------------------------------------------- functional updates (issue 11, item 3)

def index_update(x, index, value, mode: str = "set"):
    """x with ``x[index]`` set to (mode "set"), added to ("add") or multiplied by
    ("multiply") `value`, as a new tensor: JAX's ``x.at[index].set(value)``."""
    items = index if isinstance(index, tuple) else (index,)
    arrays, frozen = _index_arguments(items)
    return apply(_index_update, x, value, *arrays, index=frozen, mode=mode,
                 grad_fn="IndexPutBackward0" if arrays else "CopySlices")


def _index_update(x, value, *arrays, index, mode):
    return ops.index_update(x, value, _thaw(arrays, index), mode)


class IndexUpdates:
    """``x.at``: JAX's functional index updates, ``x.at[idx].set(v)`` and friends."""

    __slots__ = ("tensor",)

    def __init__(self, tensor) -> None:
        self.tensor = tensor

    def __getitem__(self, index) -> "IndexUpdate":
        return IndexUpdate(self.tensor, index)


class IndexUpdate:
    __slots__ = ("tensor", "index")

    def __init__(self, tensor, index) -> None:
        self.tensor, self.index = tensor, index

    def get(self):
        return getitem(self.tensor, self.index)

    def set(self, value):  # noqa: A003 (JAX's name)
        return index_update(self.tensor, self.index, value, "set")

    def add(self, value):
        return index_update(self.tensor, self.index, value, "add")

    def multiply(self, value):
        return index_update(self.tensor, self.index, value, "multiply")

# ---------------------------------------------------------------- reductions and matrix helpers
# (issue 11, item 7) NumPy's spellings (axis=, keepdims=, ddof=, ord=, k=) and PyTorch's
# (dim=, keepdim=, unbiased=/correction=, p=, diagonal=). fg.std and fg.var default to
# NumPy's ddof=0 unless given dim= (PyTorch's spelling: unbiased); the Tensor methods
# x.std() and x.var() are PyTorch's and default to the unbiased estimate.

def std(x, axis=None, keepdims=False, *, ddof=None, dim=None, keepdim=False,
        unbiased=None, correction=None):
    """Standard deviation: the square root of `var` (same defaults). Its gradient where
    all the elements are equal is NaN (0/0), as in PyTorch, NumPy-based autograd and JAX."""
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    correction = _correction(ddof, unbiased, correction, torch_default=dim is not None)
    return apply(_std, x, axes=axes, keepdims=keep, correction=correction,
                 grad_fn="StdBackward0")


def _std(x, *, axes, keepdims, correction):
    return ops.sqrt(_variance(ops._floating(x), axes=axes, keepdims=keepdims,
                              correction=correction))


def _correction(ddof, unbiased, correction, torch_default: bool) -> int:
    given = [c for c in (ddof, correction) if c is not None]
    if len(given) + (unbiased is not None) > 1:
        raise TypeError("give one of ddof= (NumPy), unbiased= or correction= (PyTorch)")
    if given:
        return given[0]
    if unbiased is not None:
        return int(bool(unbiased))
    return 1 if torch_default else 0


def _torch_moment(function):
    """``x.std()``, ``x.var()``: PyTorch's methods, unbiased unless told otherwise;
    ``x.std(1)`` is dim 1, ``x.std(False)`` the biased estimate (PyTorch's overloads),
    NumPy's axis=/keepdims=/ddof= as keywords (``axis=None`` too) keep NumPy's default."""
    def method(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=_AXIS_UNSET,
               keepdims=_AXIS_UNSET, ddof=None):
        if isinstance(dim, bool):   # x.std(False): the overload whose first argument is unbiased
            dim, unbiased = None, dim
        numpy_style = axis is not _AXIS_UNSET or keepdims is not _AXIS_UNSET or ddof is not None
        axis = None if axis is _AXIS_UNSET else axis
        keepdims = False if keepdims is _AXIS_UNSET else keepdims
        if correction is None and ddof is None and unbiased is None and not numpy_style:
            correction = 1
        return function(x, axis=axis, keepdims=keepdims, ddof=ddof, dim=dim, keepdim=keepdim,
                        unbiased=unbiased, correction=correction)
    method.__name__ = function.__name__
    method.__doc__ = function.__doc__
    return method


_std_method = _torch_moment(std)
_var_method = _torch_moment(var)


def _flat_axis(x, axis, dim):
    """One axis for a scan; NumPy's axis=None scans the flattened array."""
    axis = _one_axis(axis, dim, None)
    if axis is None:
        return reshape(x, -1) if _ndim(x) != 1 else x, 0
    return x, int(axis)


def cumsum(x, axis=None, *, dim=None):
    """Running sums along `axis` (NumPy: the flattened array when None) or `dim`."""
    x, axis = _flat_axis(x, axis, dim)
    return apply(ops.cumsum, x, axis=axis, grad_fn=P.cumsum.grad_fn)


def cumprod(x, axis=None, *, dim=None):
    """Running products; the gradient is exact where elements are zero."""
    x, axis = _flat_axis(x, axis, dim)
    return apply(ops.cumprod, x, axis=axis, grad_fn=P.cumprod.grad_fn)


def prod(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    return apply(ops.prod, x, axes=axes, keepdims=keep,
                 grad_fn="ProdBackward0" if axes is None else "ProdBackward1")


def norm(x, p="fro", dim=None, keepdim=False, *, ord=None, axis=None,  # noqa: A002
         keepdims=False):
    """PyTorch's ``torch.norm(x, p='fro', dim=None, keepdim=False)`` (top-level ``norm``
    is PyTorch's name: a numeric p is a vector norm over all of `dim` together, 'fro'
    the 2-norm), or, given ord= or axis=, NumPy's ``np.linalg.norm`` (also
    ``fg.linalg.norm``), whose ord=1 or inf of a matrix is a matrix norm. The gradient
    of a 2-norm at zero is 0, as PyTorch's (not NaN)."""
    if ord is not None or axis is not None:
        if p != "fro" or dim is not None:
            raise TypeError("norm: give PyTorch's p, dim or NumPy's ord=, axis=, not both")
        return _numpy_norm(x, ord, axis, keepdims or keepdim)
    return _torch_norm(x, p, dim, keepdim or keepdims)


def _numpy_norm(x, ord, axis, keepdims):
    ndim = _ndim(x)
    if isinstance(axis, (list, tuple)) and len(axis) == 1:
        axis = axis[0]
    if axis is None and ord is None:
        return apply(ops.vector_norm, x, ord=2, axes=None, keepdims=keepdims,
                     grad_fn="LinalgVectorNormBackward0")
    if axis is None:
        if ndim not in (1, 2):
            raise ShapeError(f"norm: an ord= needs a 1-d or 2-d array or axis=, got shape "
                             f"{_shape(x)}")
        axis = 0 if ndim == 1 else (0, 1)
    if isinstance(axis, numbers.Integral):
        return apply(ops.vector_norm, x, ord=2 if ord is None else ord, axes=int(axis),
                     keepdims=keepdims, grad_fn="LinalgVectorNormBackward0")
    if len(axis) != 2:
        raise ShapeError(f"norm: axis= must be an integer or a pair, got {axis!r}")
    return apply(ops.matrix_norm, x, ord=ord, axes=tuple(int(a) for a in axis),
                 keepdims=keepdims, grad_fn="LinalgVectorNormBackward0" if ord in (None, "fro")
                 else "LinalgMatrixNormBackward0")


def _torch_norm(x, p, dim, keepdim):
    if p == "nuc":
        raise UnsupportedError("norm: p='nuc' needs singular values, which fusegrad lacks")
    axes = tuple(dim) if isinstance(dim, (list, tuple)) else dim
    return apply(ops.vector_norm, x, ord=2 if p == "fro" else p, axes=axes, keepdims=keepdim,
                 grad_fn="LinalgVectorNormBackward0")


def diagonal(x, offset=0, axis1=0, axis2=1, *, dim1=None, dim2=None):
    """NumPy's ``diagonal(x, offset, axis1, axis2)``, PyTorch's ``dim1=``, ``dim2=``:
    the diagonal becomes the last axis."""
    axis1 = axis1 if dim1 is None else dim1
    axis2 = axis2 if dim2 is None else dim2
    return apply(ops.diagonal, x, offset=int(offset), axis1=int(axis1), axis2=int(axis2),
                 grad_fn="DiagonalBackward0")


def diag(x, k=0, *, diagonal=None):
    """NumPy's ``diag(v, k)``, PyTorch's ``diag(x, diagonal=)``: a vector becomes a
    square matrix with it on diagonal k; a matrix gives its k-th diagonal."""
    k = int(k if diagonal is None else diagonal)
    return apply(ops.diag, x, k=k, grad_fn="DiagEmbedBackward0" if _ndim(x) == 1
                 else "DiagonalBackward0")


def trace(x, offset=0, axis1=0, axis2=1):
    return apply(ops.trace, x, offset=int(offset), axis1=int(axis1), axis2=int(axis2),
                 grad_fn="TraceBackward0")


def _triangle(x, k, lower: bool, name: str):
    shape = _shape(x)
    if not shape:
        raise ShapeError(f"{name}: needs at least 1 dimension, got a 0-d array")
    # NumPy's np.tri over the last two axes (a 1-d x is broadcast over the rows of an
    # n x n mask, as np.tril does); a constant, so the select fuses with its neighbours.
    mask = np.tri(*shape[-2:], k=k, dtype=bool)
    if not lower:
        mask = ~np.tri(*shape[-2:], k=k - 1, dtype=bool)
    return apply(_keep, mask, x, grad_fn=f"{name.capitalize()}Backward0")


def _keep(mask, x):
    return ops.where(mask, x, 0)


def tril(x, k=0, *, diagonal=None):
    """The lower triangle: zeros above diagonal k (NumPy's k=, PyTorch's diagonal=)."""
    return _triangle(x, int(k if diagonal is None else diagonal), True, "tril")


def triu(x, k=0, *, diagonal=None):
    """The upper triangle: zeros below diagonal k."""
    return _triangle(x, int(k if diagonal is None else diagonal), False, "triu")


def outer(a, b):
    """NumPy's outer (both operands flattened); PyTorch's outer (alias ger)."""
    return apply(ops.outer, a, b, grad_fn=P.mul.grad_fn)


# Named any_ and all_ here: this module's other functions use the builtins any and all
# (fg.any and fg.all are these).
def any_(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    """Whether some element is nonzero, over `axis`/`dim`: a bool result, no gradient."""
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    return apply(ops.reduce_any, x, axes=axes, keepdims=keep)


def all_(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    """Whether every element is nonzero, over `axis`/`dim`: a bool result, no gradient."""
    axes, keep = _axes(axis, dim, keepdims, keepdim)
    return apply(ops.reduce_all, x, axes=axes, keepdims=keep)


any_.__name__, all_.__name__ = "any", "all"


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


# ---------------------------------------------------------------- fewer layers (issue 12, eager speed, round 2)
# The most used functions look their prepared op up themselves on eager CPU tensors
# (`executor.fast_unary` and friends): the same results, without the layers between
# the call and NumPy. Any other call goes to the function defined above.
from fusegrad.tracer import executor as _executor  # noqa: E402


def _pow_grad_fn(a, b) -> str:
    return "PowBackward0" if _is_number(b) else "PowBackward2" if _is_number(a) else "PowBackward1"


def _matmul_grad_fn(a, b) -> str:
    if a.ndim > 2 or b.ndim > 2:
        return "UnsafeViewBackward0"
    return _MATMUL_GRAD_FN.get((a.ndim, b.ndim), "MmBackward0")


# name -> (builder, grad_fn name or function of the two arguments)
FAST_BINARY = {"add": (ops.add, P.add.grad_fn), "sub": (ops.sub, P.sub.grad_fn),
               "mul": (ops.mul, P.mul.grad_fn), "div": (ops.div, P.div.grad_fn),
               "pow": (ops.power, _pow_grad_fn), "matmul": (ops.matmul, _matmul_grad_fn),
               "maximum": (ops.maximum, P.maximum.grad_fn),
               "minimum": (ops.minimum, P.minimum.grad_fn)}
FAST_UNARY = {"neg": (ops.neg, P.neg.grad_fn), "exp": (ops.exp, P.exp.grad_fn),
              "log": (ops.log, P.log.grad_fn), "sin": (ops.sin, P.sin.grad_fn),
              "cos": (ops.cos, P.cos.grad_fn), "tanh": (ops.tanh, P.tanh.grad_fn),
              "sqrt": (ops.sqrt, P.sqrt.grad_fn), "abs": (ops.abs, P.abs_.grad_fn),
              "sigmoid": (ops.sigmoid, P.sigmoid.grad_fn), "relu": (ops.relu, P.relu.grad_fn),
              "square": (ops.square, P.integer_pow.grad_fn)}
FAST_REDUCTION = {"sum": (ops.reduce_sum, "SumBackward0"), "mean": (ops.mean, "MeanBackward0")}

for _name, (_build, _grad_fn) in FAST_BINARY.items():
    globals()[_name] = _executor.fast_binary(_build, _grad_fn, globals()[_name])
for _name, (_build, _grad_fn) in FAST_UNARY.items():
    globals()[_name] = _executor.fast_unary(_build, _grad_fn, globals()[_name])
for _name, (_build, _grad_fn) in FAST_REDUCTION.items():
    globals()[_name] = _executor.fast_reduction(_build, _grad_fn, globals()[_name])
