"""Graph-building functions over `Value`s: the vocabulary of VJP rules and the tracer.

Each function binds primitives into the current builder. Python numbers become
`const` nodes typed like the other operand (weak typing, as in JAX and PyTorch),
and operands are cast to one dtype first, so every elementwise node computes in
exactly the dtype the IR says.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from fusegrad.ir import primitives as P
from fusegrad.ir import shapes as S
from fusegrad.ir.builder import current_source
from fusegrad.ir.errors import DTypeError, ShapeError, UnsupportedError, located
from fusegrad.ir.graph import Shape, Value

DEFAULT_FLOAT = np.dtype(np.float32)
Operand = Value | numbers.Number


def const(value: numbers.Number, dtype) -> Value:
    dtype = np.dtype(dtype)
    return P.const.bind(value=_python_number(value, dtype), dtype=dtype)


def _python_number(value, dtype: np.dtype):
    """The constant as the Python number of its dtype (so it prints and hashes stably)."""
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind in "iu":
        # NumPy 2 refuses too (NEP 50): a kernel would silently wrap 300 to 44 for uint8.
        info = np.iinfo(dtype)
        if not info.min <= int(value) <= info.max:
            raise DTypeError(located(f"Python integer {int(value)} out of bounds for "
                                     f"{dtype.name}", current_source()))
        return int(value)
    return float(value)


def _lift(x: Operand, like: Value) -> Value:
    if isinstance(x, Value):
        return x
    if not isinstance(x, numbers.Number):
        raise TypeError(f"expected an array value or a Python number, got {type(x).__name__}")
    dtype = like.dtype
    if isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral) and dtype.kind != "f":
        dtype = DEFAULT_FLOAT
    elif dtype.kind == "b" and not isinstance(x, (bool, np.bool_)):
        # A number is weak only within its own kind: `mask * 2` is 2 where the mask is
        # set (int64, as in NumPy 2 and PyTorch), not a bool constant True.
        dtype = np.dtype(np.int64)
    return const(x, dtype)


def _operands(*xs: Operand) -> list[Value]:
    anchor = next((x for x in xs if isinstance(x, Value)), None)
    if anchor is None:
        raise TypeError("at least one operand must be an array value")
    values = [_lift(x, anchor) for x in xs]
    dtype = S.promote(*(v.dtype for v in values))
    return [cast(v, dtype) for v in values]


def cast(x: Value, dtype) -> Value:
    dtype = np.dtype(dtype)
    return x if x.dtype == dtype else P.cast.bind(x, dtype=dtype)


def _floating(x: Value) -> Value:
    return x if x.dtype.kind == "f" else cast(x, DEFAULT_FLOAT)


# ---------------------------------------------------------------- elementwise

def add(a: Operand, b: Operand) -> Value:
    return P.add.bind(*_operands(a, b))


def sub(a: Operand, b: Operand) -> Value:
    return P.sub.bind(*_operands(a, b))


def mul(a: Operand, b: Operand) -> Value:
    return P.mul.bind(*_operands(a, b))


def div(a: Operand, b: Operand) -> Value:
    a, b = _operands(a, b)
    return P.div.bind(_floating(a), _floating(b))


def neg(x: Value) -> Value:
    return P.neg.bind(x)


def power(a: Operand, b: Operand) -> Value:
    """``a ** b``: an integer exponent becomes integer_pow (x*x, not powf)."""
    if isinstance(a, Value) and isinstance(b, numbers.Integral) and not isinstance(b, bool):
        return integer_pow(a, int(b))
    # A whole float exponent (2.0, np.float32(2)) is the same integer power of a
    # floating base. (Not `abs(b)`: this module's `abs` is the traced op.)
    if (isinstance(a, Value) and isinstance(b, numbers.Real) and float(b).is_integer()
            and -64 <= float(b) <= 64):
        return integer_pow(_floating(a), int(b))
    a, b = _operands(a, b)
    return P.pow_.bind(_floating(a), _floating(b))


def integer_pow(x: Value, n: int) -> Value:
    if n < 0 and x.dtype.kind in "iub":
        raise DTypeError(located(f"integer_pow: integers to negative integer powers are not "
                                 f"allowed ({x.type_str} ** {n}), as in NumPy",
                                 current_source()))
    if n == 1:
        return x
    return P.integer_pow.bind(x, n=int(n))


def maximum(a: Operand, b: Operand) -> Value:
    return P.maximum.bind(*_operands(a, b))


def minimum(a: Operand, b: Operand) -> Value:
    return P.minimum.bind(*_operands(a, b))


def where(cond: Value, a: Operand, b: Operand) -> Value:
    if isinstance(a, Value) or isinstance(b, Value):
        a, b = _operands(a, b)
    else:
        raise TypeError("where needs at least one array branch")
    return P.where.bind(cond, a, b)


def _unary(prim):
    def apply(x: Value) -> Value:
        return prim.bind(_floating(x) if prim.infer is S.elementwise_floating else x)
    apply.__name__ = prim.name
    return apply


exp, log, sin, cos, tanh, sqrt = map(_unary, (P.exp, P.log, P.sin, P.cos, P.tanh, P.sqrt))
sigmoid, abs, sign, relu = map(_unary, (P.sigmoid, P.abs_, P.sign, P.relu))


def _compare(prim):
    def apply(a: Operand, b: Operand) -> Value:
        return prim.bind(*_operands(a, b))
    apply.__name__ = prim.name
    return apply


lt, le, gt, ge, eq, ne = map(_compare, (P.lt, P.le, P.gt, P.ge, P.eq, P.ne))


# ---------------------------------------------------------------- more elementwise math
# (issue 11, item 6.)

log1p, expm1, tan, arctan, sinh, cosh = map(_unary, (P.log1p, P.expm1, P.tan, P.arctan, P.sinh,
                                                     P.cosh))
arcsin, arccos, log2, log10, exp2 = map(_unary, (P.arcsin, P.arccos, P.log2, P.log10, P.exp2))
floor, ceil, round = map(_unary, (P.floor, P.ceil, P.round_))  # noqa: A001 (NumPy's name)


def square(x: Value) -> Value:
    return integer_pow(x, 2)


def rsqrt(x: Value) -> Value:
    return div(1, sqrt(x))


def softplus(x: Value) -> Value:
    """log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)) so that exp cannot
    overflow. Its gradient is sigmoid(x): maximum gives half at x = 0, where the
    second term's (through sign) is 0."""
    x = _floating(x)
    return add(maximum(x, 0), log1p(exp(neg(abs(x)))))


def arctan2(a: Operand, b: Operand) -> Value:
    a, b = _operands(a, b)
    return P.arctan2.bind(_floating(a), _floating(b))


def hypot(a: Operand, b: Operand) -> Value:
    a, b = _operands(a, b)
    return P.hypot.bind(_floating(a), _floating(b))


def clip(x: Value, low: Operand | None = None, high: Operand | None = None) -> Value:
    """x limited to [low, high] (either may be None). Selects, not maximum/minimum:
    those split the gradient of a tie in two, and PyTorch's clamp passes it whole to
    x at its bounds (NaN stays NaN)."""
    if low is not None:
        x = where(lt(x, low), low, x)
    if high is not None:
        x = where(gt(x, high), high, x)
    return x


# ---------------------------------------------------------------- logical, bitwise, modular
# (issue 11, item 4)

def _binary(prim):
    def apply(a: Operand, b: Operand) -> Value:
        return prim.bind(*_operands(a, b))
    apply.__name__ = prim.name
    return apply


bitwise_and, bitwise_or, bitwise_xor = map(_binary, (P.bitwise_and, P.bitwise_or, P.bitwise_xor))
floor_divide, remainder = map(_binary, (P.floor_divide, P.remainder))


def invert(x: Value) -> Value:
    """``~x``: logical not of a mask, bitwise not of integers."""
    return P.invert.bind(x)


def _truth(x: Operand) -> Operand:
    """``x != 0`` as a mask (NumPy's truth of a number), a mask as it is."""
    if isinstance(x, Value):
        return x if x.dtype.kind == "b" else ne(x, 0)
    return bool(x)


def logical_and(a: Operand, b: Operand) -> Value:
    return bitwise_and(_truth(a), _truth(b))


def logical_or(a: Operand, b: Operand) -> Value:
    return bitwise_or(_truth(a), _truth(b))


def logical_xor(a: Operand, b: Operand) -> Value:
    return bitwise_xor(_truth(a), _truth(b))


def logical_not(x: Value) -> Value:
    return invert(_truth(x))


# ---------------------------------------------------------------- layout

def broadcast_to(x: Value, shape: Shape) -> Value:
    shape = tuple(shape)
    return x if x.shape == shape else P.broadcast_to.bind(x, shape=shape)


def reshape(x: Value, shape: Shape) -> Value:
    """Reshape; one size may be -1, meaning whatever the others leave (NumPy, PyTorch)."""
    shape = S.infer_wildcard(tuple(int(d) for d in shape), x.size)
    return x if x.shape == shape else P.reshape.bind(x, shape=shape)


def transpose(x: Value, perm: Sequence[int] | None = None) -> Value:
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(int(p) for p in perm)
    return x if perm == tuple(range(x.ndim)) else P.transpose.bind(x, perm=perm)


def slice_array(x: Value, index) -> Value:
    if all(triple == (0, d, 1) for triple, d in zip(index, x.shape)):
        return x
    return P.slice_.bind(x, index=tuple(index))


def scatter_slice(g: Value, shape: Shape, index) -> Value:
    return P.scatter_slice.bind(g, shape=tuple(shape), index=tuple(index))


def getitem(x: Value, index) -> Value:
    """NumPy basic indexing: integers, slices, None and Ellipsis (static, no arrays)."""
    index = index if isinstance(index, tuple) else (index,)
    if any(not isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis))) or
           isinstance(i, bool) for i in index):
        raise TypeError(located(
            f"indexing {x.type_str} with {index!r}: only integers, slices, None and ... are "
            "supported (indices must be known when tracing; use fg.where for masks)",
            current_source()))
    explicit = sum(i is not None and i is not Ellipsis for i in index)
    if explicit > x.ndim or sum(i is Ellipsis for i in index) > 1:
        raise ShapeError(located(f"too many indices {index!r} for {x.type_str}", current_source()))
    if Ellipsis not in index:
        index = index + (Ellipsis,)
    at = index.index(Ellipsis)
    index = index[:at] + (slice(None),) * (x.ndim - explicit) + index[at + 1:]
    triples, shape, axis = [], [], 0
    for item in index:
        if item is None:
            shape.append(1)
            continue
        size = x.shape[axis]
        if isinstance(item, slice):
            triple = item.indices(size)
            triples.append(triple)
            shape.append(len(range(*triple)))
        else:
            if not -size <= item < size:
                raise ShapeError(located(f"index {item} is out of bounds for axis {axis} of "
                                         f"{x.type_str}", current_source()))
            start = int(item) % size
            triples.append((start, start + 1, 1))
        axis += 1
    return reshape(slice_array(x, tuple(triples)), tuple(shape))


def sum_to(x: Value, shape: Shape) -> Value:
    """Sum a broadcast result back to `shape` (the VJP of broadcasting)."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
    return reshape(reduce_sum(x, axes, keepdims=True), shape)


def expand_reduced(g: Value, shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Value:
    """Broadcast a reduction's result (or cotangent) back over the reduced axes."""
    if not keepdims:
        g = reshape(g, S.reduced_shape(shape, axes, keepdims=True))
    return broadcast_to(g, shape)


# ---------------------------------------------------------------- reductions

def _axes(op: str, x: Value, axes) -> tuple[int, ...]:
    """`axes` normalised for `x`; a bad axis is an error that names the op, the array's
    type and the user's line, like the errors of the primitives' shape rules."""
    try:
        return S.normalize_axes(axes, x.ndim)
    except ShapeError as error:
        raise ShapeError(located(f"{op}: {error} ({x.type_str})", current_source())) from None

def reduce_sum(x: Value, axes=None, keepdims: bool = False) -> Value:
    # A sum of booleans counts them, as in NumPy and PyTorch (int64); summed in
    # bool it would be `any`. Narrower integers are summed in int64 too, as in
    # PyTorch (NumPy: int64, or uint64 for unsigned; the same numbers): a sum of 40
    # int8 fives is 200, not -56.
    if x.dtype.kind in "biu" and x.dtype.itemsize < 8:
        x = cast(x, np.int64)
    axes = _axes("reduce_sum", x, axes)
    if not axes:
        return x
    return P.reduce_sum.bind(x, axes=axes, keepdims=bool(keepdims))


def reduce_max(x: Value, axes=None, keepdims: bool = False) -> Value:
    axes = _axes("reduce_max", x, axes)
    return P.reduce_max.bind(x, axes=axes, keepdims=bool(keepdims)) if axes else x


def reduce_min(x: Value, axes=None, keepdims: bool = False) -> Value:
    axes = _axes("reduce_min", x, axes)
    return P.reduce_min.bind(x, axes=axes, keepdims=bool(keepdims)) if axes else x


def mean(x: Value, axes=None, keepdims: bool = False) -> Value:
    x = _floating(x)
    axes = _axes("mean", x, axes)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    return div(reduce_sum(x, axes, keepdims), count)


def argmax(x: Value, axis: int, keepdims: bool = False) -> Value:
    (axis,) = _axes("argmax", x, axis)
    return P.argmax.bind(x, axis=axis, keepdims=bool(keepdims))


def argmin(x: Value, axis: int, keepdims: bool = False) -> Value:
    (axis,) = _axes("argmin", x, axis)
    return P.argmin.bind(x, axis=axis, keepdims=bool(keepdims))


def stop_gradient(x: Value) -> Value:
    return P.stop_gradient.bind(x)


def logsumexp(x: Value, axes=None, keepdims: bool = False) -> Value:
    """log(sum(exp(x))), shifted by the maximum so that exp cannot overflow."""
    x = _floating(x)
    axes = _axes("logsumexp", x, axes)
    # Any shift gives the same value, so the shift's gradient is exactly zero:
    # stop_gradient says so instead of differentiating reduce_max for nothing.
    shift = stop_gradient(reduce_max(x, axes, keepdims=True))
    total = reduce_sum(exp(sub(x, broadcast_to(shift, x.shape))), axes, keepdims=True)
    result = add(log(total), shift)
    return result if keepdims else reshape(result, S.reduced_shape(x.shape, axes, False))


def softmax(x: Value, axis: int = -1) -> Value:
    x = _floating(x)
    shift = stop_gradient(reduce_max(x, axis, keepdims=True))
    e = exp(sub(x, broadcast_to(shift, x.shape)))
    return div(e, broadcast_to(reduce_sum(e, axis, keepdims=True), x.shape))


# ---------------------------------------------------------------- matmul

def matmul(a: Value, b: Value) -> Value:
    """NumPy's matmul for 1-d and 2-d operands, built on the 2-d primitive."""
    if not (1 <= a.ndim <= 2 and 1 <= b.ndim <= 2):
        raise ShapeError(located(f"matmul: operands must be 1-d or 2-d, got {S.describe(a, b)}",
                                 current_source()))
    if a.shape[-1] != b.shape[0]:
        raise ShapeError(located(
            f"matmul: inner dimensions differ: {S.describe(a, b)} ({a.shape[-1]} != {b.shape[0]})",
            current_source()))
    a, b = _operands(a, b)
    a2 = reshape(a, (1, a.shape[0])) if a.ndim == 1 else a
    b2 = reshape(b, (b.shape[0], 1)) if b.ndim == 1 else b
    out = P.matmul.bind(a2, b2)
    return reshape(out, tuple(a.shape[:-1]) + tuple(b.shape[1:]))


# Operators on values, so that VJP rules read like the maths: ``g * (1 - y * y)``.
# Values keep identity equality (they are dictionary keys); use eq/ne for comparisons.
Value.__add__ = add
Value.__radd__ = lambda x, y: add(y, x)
Value.__sub__ = sub
Value.__rsub__ = lambda x, y: sub(y, x)
Value.__mul__ = mul
Value.__rmul__ = lambda x, y: mul(y, x)
Value.__truediv__ = div
Value.__rtruediv__ = lambda x, y: div(y, x)
Value.__pow__ = power
Value.__rpow__ = lambda x, y: power(y, x)
Value.__neg__ = neg
Value.__matmul__ = matmul


# ---------------------------------------------------------------- layout (issue 11, item 5)
# concatenate, stack, split, expand_dims, squeeze, flip, repeat, tile, pad: compositions of
# reshape, broadcast_to, slice and scatter_slice, so each has its gradient (and its fused
# and interpreted code) through those primitives, and no new primitive is needed.

def _layout_error(op: str, message: str) -> ShapeError:
    return ShapeError(located(f"{op}: {message}", current_source()))


def _axis(op: str, axis, ndim: int, types: str) -> int:
    try:
        (axis,) = S.normalize_axes(int(axis), ndim)
    except ShapeError as error:
        raise _layout_error(op, f"{error} ({types})") from None
    return axis


def concatenate(xs: Sequence[Value], axis: int = 0) -> Value:
    """NumPy's concatenate: each piece placed into zeros at its offset, and the pieces
    summed (the VJP of each placement is the slice that takes its cotangent back out)."""
    xs = list(xs)
    if not xs:
        raise _layout_error("concatenate", "needs at least one array")
    types = ", ".join(x.type_str for x in xs)
    if any(x.ndim != xs[0].ndim for x in xs) or xs[0].ndim == 0:
        raise _layout_error("concatenate", f"arrays must have the same number (>= 1) of "
                                           f"dimensions, got {types}")
    axis = _axis("concatenate", axis, xs[0].ndim, types)
    rest = [x.shape[:axis] + x.shape[axis + 1:] for x in xs]
    if any(r != rest[0] for r in rest):
        raise _layout_error("concatenate", f"sizes must match except along axis {axis}, "
                                           f"got {types}")
    dtype = np.result_type(*(x.dtype for x in xs))
    xs = [cast(x, dtype) for x in xs]
    if len(xs) == 1:
        return xs[0]
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    total, offset = None, 0
    for x in xs:
        index = [(0, d, 1) for d in shape]
        index[axis] = (offset, offset + x.shape[axis], 1)
        offset += x.shape[axis]
        placed = scatter_slice(x, shape, index)
        total = placed if total is None else add(total, placed)
    return total


def expand_dims(x: Value, axis) -> Value:
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    ndim = x.ndim + len(axes)
    try:
        axes = S.normalize_axes(axes, ndim)
    except ShapeError as error:
        raise _layout_error("expand_dims", f"{error} ({x.type_str})") from None
    shape, dims = [], iter(x.shape)
    for i in range(ndim):
        shape.append(1 if i in axes else next(dims))
    return reshape(x, tuple(shape))


def squeeze(x: Value, axis=None) -> Value:
    """NumPy's squeeze: an axis named must have size 1."""
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        try:
            axes = S.normalize_axes(axes, x.ndim)
        except ShapeError as error:
            raise _layout_error("squeeze", f"{error} ({x.type_str})") from None
        if any(x.shape[a] != 1 for a in axes):
            raise _layout_error("squeeze", f"cannot select an axis to squeeze out which has "
                                           f"size not equal to one (axis {axis}, {x.type_str})")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def stack(xs: Sequence[Value], axis: int = 0) -> Value:
    xs = list(xs)
    if not xs:
        raise _layout_error("stack", "needs at least one array")
    if any(x.shape != xs[0].shape for x in xs):
        raise _layout_error("stack", "all input arrays must have the same shape, got "
                                     + ", ".join(x.type_str for x in xs))
    axis = _axis("stack", axis, xs[0].ndim + 1, xs[0].type_str)
    return concatenate([expand_dims(x, axis) for x in xs], axis)


def split(x: Value, indices_or_sections, axis: int = 0) -> tuple[Value, ...]:
    """NumPy's split: a number of equal sections, or the indices where pieces begin."""
    if x.ndim == 0:
        raise _layout_error("split", f"cannot split a 0-d array ({x.type_str})")
    axis = _axis("split", axis, x.ndim, x.type_str)
    n = x.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = int(indices_or_sections)
        if sections <= 0 or n % sections:
            raise _layout_error("split", f"array split does not result in an equal division: "
                                         f"{sections} sections of axis {axis} of {x.type_str}")
        bounds = [i * (n // sections) for i in range(sections + 1)]
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [n]
    return tuple(_take_range(x, axis, max(0, min(b, n)), max(0, min(e, n)))
                 for b, e in zip(bounds[:-1], bounds[1:]))


def _take_range(x: Value, axis: int, begin: int, end: int) -> Value:
    index = [(0, d, 1) for d in x.shape]
    index[axis] = (begin, max(begin, end), 1)
    return slice_array(x, tuple(index))


def flip(x: Value, axis=None) -> Value:
    """Reverse the order along `axis` (all axes when None): a slice with step -1."""
    try:
        axes = S.normalize_axes(axis, x.ndim)
    except ShapeError as error:
        raise _layout_error("flip", f"{error} ({x.type_str})") from None
    index = tuple(slice(None, None, -1).indices(d) if i in axes else (0, d, 1)
                  for i, d in enumerate(x.shape))
    return slice_array(x, index)


def repeat(x: Value, repeats: int, axis: int | None = None) -> Value:
    """NumPy's repeat (PyTorch's repeat_interleave) with one count for every element:
    each element followed by its copies, a broadcast along a new axis after `axis`."""
    if not isinstance(repeats, (int, np.integer)) or repeats < 0:
        raise _layout_error("repeat", f"repeats must be one non-negative integer (the same "
                                      f"for every element), got {repeats!r}")
    if axis is None:
        x, axis = reshape(x, (x.size,)), 0
    axis = _axis("repeat", axis, x.ndim, x.type_str)
    shape = x.shape
    spread = broadcast_to(reshape(x, shape[:axis + 1] + (1,) + shape[axis + 1:]),
                          shape[:axis + 1] + (int(repeats),) + shape[axis + 1:])
    return reshape(spread, shape[:axis] + (shape[axis] * int(repeats),) + shape[axis + 1:])


def tile(x: Value, reps) -> Value:
    """NumPy's tile (PyTorch's Tensor.repeat): copies of the whole array along each axis,
    a broadcast along a new axis before each axis."""
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(int(r) for r in reps)
    if any(r < 0 for r in reps):
        raise _layout_error("tile", f"repetitions must be non-negative, got {reps} "
                                    f"({x.type_str})")
    ndim = max(x.ndim, len(reps))
    shape = (1,) * (ndim - x.ndim) + x.shape
    reps = (1,) * (ndim - len(reps)) + reps
    interleaved = tuple(d for pair in zip((1,) * ndim, shape) for d in pair)
    target = tuple(d for pair in zip(reps, shape) for d in pair)
    spread = broadcast_to(reshape(x, interleaved), target)
    return reshape(spread, tuple(r * d for r, d in zip(reps, shape)))


def pad(x: Value, pad_width, constant_values: numbers.Number = 0) -> Value:
    """NumPy's pad in "constant" mode: `x` placed into an array of `constant_values`."""
    try:
        widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    except (ValueError, TypeError):
        raise _layout_error("pad", f"pad_width {pad_width!r} does not fit {x.type_str}: give "
                                   f"one (before, after) pair, or one per axis") from None
    if (widths < 0).any():
        raise _layout_error("pad", f"pad widths must be non-negative, got {pad_width!r}")
    shape = tuple(int(d + b + a) for d, (b, a) in zip(x.shape, widths))
    index = tuple((int(b), int(b) + d, 1) for d, (b, _) in zip(x.shape, widths))
    if shape == x.shape:
        return x
    placed = scatter_slice(x, shape, index)
    if constant_values == 0:
        return placed
    inside = scatter_slice(broadcast_to(const(True, np.bool_), x.shape), shape, index)
    return where(inside, placed, constant_values)


# ---------------------------------------------------------------- erf, gelu, log_softmax
# (issue 11, item 6, rest)

erf, erfc = map(_unary, (P.erf, P.erfc))
_SQRT_HALF = math.sqrt(0.5)
_SQRT_TWO_OVER_PI = math.sqrt(2 / math.pi)


def gelu(x: Value, approximate: str = "none") -> Value:
    """x Phi(x), PyTorch's formulas operation for operation: 0.5 x (1 + erf(x / sqrt 2))
    (`x * 0.5 * (1 + erf(x * M_SQRT1_2))`), or with approximate="tanh"
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Elementwise, so it fuses."""
    if approximate not in ("none", "tanh"):
        raise UnsupportedError(located(
            f"gelu: approximate={approximate!r} is not a GELU fusegrad knows; write "
            f"approximate='none' (the erf form) or approximate='tanh'", current_source()))
    x = _floating(x)
    if approximate == "tanh":
        inner = mul(_SQRT_TWO_OVER_PI, add(x, mul(0.044715, mul(mul(x, x), x))))
        return mul(mul(0.5, x), add(1, tanh(inner)))
    return mul(mul(x, 0.5), add(1, erf(mul(x, _SQRT_HALF))))


def log_softmax(x: Value, axis=-1) -> Value:
    """x - logsumexp(x) along `axis`, with logsumexp's stop_gradient shift: (x - m) -
    log(sum(exp(x - m))), which neither overflows nor loses the small values that
    log(softmax(x)) would round to log(0)."""
    x = _floating(x)
    axes = _axes("log_softmax", x, axis)  # an int, a tuple, or None for all (as JAX)
    if x.size == 0:  # an empty result, as in PyTorch (an empty axis has no maximum)
        return mul(x, 0)
    shift = stop_gradient(reduce_max(x, axes, keepdims=True))
    shifted = sub(x, broadcast_to(shift, x.shape))
    total = reduce_sum(exp(shifted), axes, keepdims=True)
    return sub(shifted, broadcast_to(log(total), x.shape))
