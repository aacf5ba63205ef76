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
from fusegrad.ir.errors import DTypeError, ShapeError, TraceError, UnsupportedError, bare, located
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


def _full_index(x: Value, index: tuple, *, arrays: bool) -> tuple:
    """`index` checked, with its `...` (or the axes it leaves out) spelled as slices."""
    allowed = (int, np.integer, slice, type(None), type(Ellipsis)) + ((Value,) if arrays else ())
    if any(isinstance(i, bool) or not isinstance(i, allowed) for i in index):
        what = ("integers, slices, None, ... and integer index arrays" if arrays else
                "integers, slices, None and ...")
        raise TypeError(located(
            f"indexing {x.type_str} with {index!r}: only {what} are supported (indices must "
            "be known when tracing; use fg.where for masks)", current_source()))
    explicit = sum(i is not None and i is not Ellipsis for i in index)
    if explicit > x.ndim or sum(i is Ellipsis for i in index) > 1:
        raise ShapeError(located(f"too many indices for {x.type_str}: {explicit} given",
                                 current_source()))
    at = index.index(Ellipsis) if Ellipsis in index else len(index)
    return index[:at] + (slice(None),) * (x.ndim - explicit) + index[at + 1:]


def getitem(x: Value, index) -> Value:
    """NumPy basic indexing: integers, slices, None and Ellipsis (static, no arrays);
    with integer index arrays (`Value`s) among them, NumPy's advanced indexing."""
    index = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, Value) for i in index):
        return gather_index(x, index)
    index = _full_index(x, index, arrays=False)
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
        raise ShapeError(located(f"{op}: {bare(error)} ({x.type_str})", current_source())) from None

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
    total = reduce_sum(x, axes, keepdims)
    return div(total, size_const(count, total))


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
    """NumPy's matmul: 1-d operands are promoted to matrices (and the added axis
    dropped again), the batch dimensions of N-d operands broadcast (issue 11, item 1)."""
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(located(f"matmul: operands must have at least 1 dimension, got "
                                 f"{S.describe(a, b)} (use * to multiply by a scalar)",
                                 current_source()))
    inner = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    if a.shape[-1] != inner:
        raise ShapeError(located(
            f"matmul: inner dimensions differ: {S.describe(a, b)} ({a.shape[-1]} != {inner})",
            current_source()))
    a_batch, b_batch = a.shape[:-2], b.shape[:-2]
    try:
        batch = S.broadcast_shapes(a_batch, b_batch)
    except ShapeError:
        raise ShapeError(located(
            f"matmul: batch dimensions {a_batch} and {b_batch} cannot be broadcast together: "
            f"{S.describe(a, b)}", current_source())) from None
    a, b = _operands(a, b)
    a2 = reshape(a, (1, a.shape[0])) if a.ndim == 1 else a
    b2 = reshape(b, (b.shape[0], 1)) if b.ndim == 1 else b
    if b2.ndim == 2 and a2.ndim > 2:
        # A stack of matrices times one matrix, x(B,T,D) @ W(D,E), is one matrix product
        # of the rows: one BLAS call instead of B, and W's cotangent needs no batch sum.
        rows = int(np.prod(a2.shape[:-1], dtype=np.int64))
        out = reshape(P.matmul.bind(reshape(a2, (rows, a2.shape[-1])), b2),
                      a2.shape[:-1] + (b2.shape[-1],))
    else:
        out = P.matmul.bind(a2, b2)
    shape = batch + a.shape[-2:-1] + b.shape[-1:] if b.ndim >= 2 else batch + a.shape[-2:-1]
    return reshape(out, shape)


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
        raise _layout_error(op, f"{bare(error)} ({types})") from None
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
        raise _layout_error("expand_dims", f"{bare(error)} ({x.type_str})") from None
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
            raise _layout_error("squeeze", f"{bare(error)} ({x.type_str})") from None
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
        raise _layout_error("flip", f"{bare(error)} ({x.type_str})") from None
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


# ---------------------------------------------------------------- axis permutations (issue 11, item 1)
# NumPy's spellings of a transpose (negative axes, sequences); all are the one
# `transpose` primitive, so each has its gradient (the inverse permutation).


def _layout_axes(op: str, x: Value, axes, what: str = "axis") -> tuple[int, ...]:
    """`axes` (ints, negative allowed) as non-negative axes of `x`, or a ShapeError."""
    result = []
    for axis in axes:
        if not -x.ndim <= int(axis) < x.ndim:
            raise _layout_error(op, f"{what} {axis} is out of bounds for {x.type_str} "
                                    f"({x.ndim} dimensions)")
        result.append(int(axis) % x.ndim)
    return tuple(result)


def permute_axes(x: Value, axes: Sequence[int]) -> Value:
    """np.transpose(x, axes): output axis k is x's axis axes[k]."""
    perm = _layout_axes("transpose", x, axes)
    if sorted(perm) != list(range(x.ndim)):
        raise _layout_error("transpose", f"axes {tuple(axes)} are not a permutation of the "
                                         f"{x.ndim} axes of {x.type_str}")
    return transpose(x, perm)


def swapaxes(x: Value, axis1: int, axis2: int) -> Value:
    a, b = _layout_axes("swapaxes", x, (axis1, axis2))
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def matrix_transpose(x: Value) -> Value:
    """The last two axes swapped (x.mT): the transpose of each matrix of a stack."""
    if x.ndim < 2:
        raise _layout_error("matrix_transpose", f"needs at least 2 dimensions, got {x.type_str}")
    return swapaxes(x, -1, -2)


def moveaxis(x: Value, source, destination) -> Value:
    """np.moveaxis: the axes `source` moved to the positions `destination`, the
    others kept in their order."""
    source = (source,) if isinstance(source, (int, np.integer)) else tuple(source)
    destination = (destination,) if isinstance(destination, (int, np.integer)) else tuple(destination)
    if len(source) != len(destination):
        raise _layout_error("moveaxis", f"source {source} and destination {destination} must "
                                        "have the same number of elements")
    src = _layout_axes("moveaxis", x, source, "source axis")
    dst = _layout_axes("moveaxis", x, destination, "destination axis")
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise _layout_error("moveaxis", f"repeated axis in source {source} or destination "
                                        f"{destination}")
    order = [axis for axis in range(x.ndim) if axis not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, order)

# ---------------------------------------------------------------- gathers (issue 11, item 2)
# Integer-array indexing in NumPy's rules, built on the gather primitive (and its
# transpose scatter_add) with slices and transposes around it: basic slices first,
# then the advanced axes (index arrays, and integers beside them, which NumPy counts
# as 0-d index arrays) gathered together. The gathered axes replace the indexed ones
# where these are consecutive, and lead the result otherwise, as in NumPy.

def mask_index_error(mask_type: str) -> TraceError:
    return TraceError(located(
        f"indexing with a boolean mask ({mask_type}) selects as many elements as the mask has "
        "True values, known only from the data, and compile_grad builds a graph of static "
        "shapes: write fg.where(mask, x, 0) to keep the shape (and reduce with the mask, "
        "e.g. fg.where(mask, x, 0).sum() / mask.sum()), or index with integer positions; "
        "to update (x[mask] *= 2), write x = fg.where(mask, x * 2, x)",
        current_source()))


def _index_arrays(op: str, indices: Sequence[Value]) -> list[Value]:
    for i in indices:
        if i.dtype.kind == "b":
            raise mask_index_error(i.type_str)
        if i.dtype.kind not in "iu":
            raise DTypeError(located(f"{op}: index arrays must be integers, got {i.type_str}",
                                     current_source()))
    return list(indices)


def _broadcast_indices(op: str, indices: Sequence[Value], x: Value) -> list[Value]:
    indices = _index_arrays(op, indices)
    try:
        shape = S.broadcast_shapes(*(i.shape for i in indices))
    except ShapeError as error:
        raise ShapeError(located(f"{op}: index arrays of {x.type_str}: {error}",
                                 current_source())) from None
    return [broadcast_to(i, shape) for i in indices]


def gather(x: Value, indices: Sequence[Value], batch: int = 0) -> Value:
    """The primitive: ``x[a0, ..., i0, i1, ...]`` over `batch` leading axes (see P.gather)."""
    return P.gather.bind(x, *_broadcast_indices("gather", indices, x), batch=int(batch))


def scatter_add(g: Value, indices: Sequence[Value], shape: Shape, batch: int = 0) -> Value:
    return P.scatter_add.bind(g, *_broadcast_indices("scatter_add", indices, g),
                              shape=tuple(shape), batch=int(batch))


class IndexPlan:
    """`x[index]` as basic slices (`triples`, giving `sliced`) followed, when there are
    index arrays, by a gather of the `axes` of the sliced array at `indices`."""

    def __init__(self, x: Value, index: tuple) -> None:
        self.x_shape, self.dtype = x.shape, x.dtype
        arrays = [i for i in index if isinstance(i, Value)]
        _index_arrays("indexing", arrays)
        index = _full_index(x, index, arrays=True)
        if arrays and any(i is None for i in index):
            raise UnsupportedError(located(
                f"indexing {x.type_str}: None (np.newaxis) together with index arrays is not "
                "supported; index first, then add the axis with fg.expand_dims or reshape",
                current_source()))
        self.triples, self.shape, self.axes, advanced = [], [], [], []
        axis = 0
        for item in index:
            if item is None:
                self.shape.append(1)
                continue
            size = x.shape[axis]
            if isinstance(item, slice):
                triple = item.indices(size)
                self.shape.append(len(range(*triple)))
            elif isinstance(item, Value):
                triple = (0, size, 1)
                self.axes.append(axis)
                advanced.append(item)
            else:
                if not -size <= item < size:
                    raise ShapeError(located(f"index {item} is out of bounds for axis {axis} "
                                             f"of {x.type_str}", current_source()))
                start = int(item) % size
                triple = (start, start + 1, 1)
                if arrays:   # beside index arrays an integer is a 0-d index array (NumPy)
                    self.axes.append(axis)
                    advanced.append(const(0, np.int64))
            self.triples.append(triple)
            axis += 1
        self.triples = tuple(self.triples)
        self.sliced = tuple(len(range(*t)) for t in self.triples)
        self.indices = _broadcast_indices("indexing", advanced, x) if advanced else []
        if self.indices:
            self._arrange()

    def _arrange(self) -> None:
        """The transposes around the gather: the advanced axes first, and the gathered
        axes back where the indexed ones were, when those were consecutive."""
        axes = self.axes
        rest = [a for a in range(len(self.sliced)) if a not in axes]
        self.perm = tuple(axes) + tuple(rest)
        k, ndim = self.indices[0].ndim, len(rest)
        consecutive = axes == list(range(axes[0], axes[0] + len(axes)))
        lead = axes[0] if consecutive else 0
        self.out_perm = (tuple(range(k, k + lead)) + tuple(range(k))
                         + tuple(range(k + lead, k + ndim)))
        gathered = self.indices[0].shape + tuple(self.sliced[a] for a in rest)
        self.shape = [gathered[p] for p in self.out_perm]

    def read(self, x: Value) -> Value:
        sliced = slice_array(x, self.triples)
        if not self.indices:
            return reshape(sliced, tuple(self.shape))
        # Integer items were sliced to one element: index 0 of that axis remains.
        out = P.gather.bind(transpose(sliced, self.perm), *self.indices, batch=0)
        return transpose(out, self.out_perm)

    def place(self, v: Value, dtype=None) -> Value:
        """The transpose of `read`: `v` (cast to x's dtype, or `dtype`, and broadcast to the
        indexed shape) added into zeros of x's shape; where index arrays repeat a place,
        their values accumulate."""
        v = broadcast_to(cast(v, dtype or self.dtype), tuple(self.shape))
        if self.indices:
            moved = transpose(v, tuple(np.argsort(self.out_perm)))
            shape = tuple(self.sliced[p] for p in self.perm)
            v = transpose(P.scatter_add.bind(moved, *self.indices, shape=shape, batch=0),
                          tuple(np.argsort(self.perm)))
        else:
            v = reshape(v, self.sliced)
        if self.sliced == self.x_shape and all(t[0] == 0 and t[2] == 1 for t in self.triples):
            return v
        return scatter_slice(v, self.x_shape, self.triples)


    def write(self, x: Value, v: Value) -> Value:
        """x with its indexed region set to `v` (broadcast to the indexed shape); where
        index arrays repeat a place, one write is kept, as in NumPy."""
        if not self.indices:
            inside = self.place(const(True, np.bool_), np.bool_)
            return where(inside, self.place(v), x)
        v = broadcast_to(cast(v, self.dtype), tuple(self.shape))
        moved = transpose(v, tuple(np.argsort(self.out_perm)))
        region = transpose(slice_array(x, self.triples), self.perm)
        written = transpose(P.scatter.bind(region, moved, *self.indices, batch=0),
                            tuple(np.argsort(self.perm)))
        if self.sliced == self.x_shape and all(t[0] == 0 and t[2] == 1 for t in self.triples):
            return written
        inside = scatter_slice(broadcast_to(const(True, np.bool_), self.sliced), self.x_shape,
                               self.triples)
        return where(inside, scatter_slice(written, self.x_shape, self.triples), x)


def gather_index(x: Value, index: tuple) -> Value:
    """``x[index]`` with NumPy's basic and integer-array indexing."""
    return IndexPlan(x, index).read(x)


def _moved_last(x: Value, axis: int) -> Value:
    return transpose(x, tuple(a for a in range(x.ndim) if a != axis) + (axis,))


def take(x: Value, indices: Value, axis: int | None = None) -> Value:
    """NumPy's take (PyTorch's take when axis is None: indices into the flattened x)."""
    if axis is None:
        return gather(reshape(x, (x.size,)), [indices])
    axis = _axis("take", axis, x.ndim, x.type_str)
    return gather_index(x, (slice(None),) * axis + (indices,))


def take_along_axis(x: Value, indices: Value, axis: int | None) -> Value:
    """NumPy's take_along_axis: ``out[..., j, ...] = x[..., indices[..., j, ...], ...]``,
    the other axes of x and indices broadcast against each other."""
    _index_arrays("take_along_axis", [indices])
    if axis is None:
        x, axis = reshape(x, (x.size,)), 0
    if indices.ndim != x.ndim:
        raise ShapeError(located(f"take_along_axis: indices and the array must have the same "
                                 f"number of dimensions, got {S.describe(indices, x)}",
                                 current_source()))
    axis = _axis("take_along_axis", axis, x.ndim, S.describe(x, indices))
    xt, it = _moved_last(x, axis), _moved_last(indices, axis)
    try:
        batch = S.broadcast_shapes(xt.shape[:-1], it.shape[:-1])
    except ShapeError as error:
        raise ShapeError(located(f"take_along_axis: {error} (apart from axis {axis}; "
                                 f"{S.describe(x, indices)})", current_source())) from None
    xt = broadcast_to(xt, batch + xt.shape[-1:])
    it = broadcast_to(it, batch + it.shape[-1:])
    out = P.gather.bind(xt, it, batch=x.ndim - 1)
    perm = tuple(a for a in range(x.ndim) if a != axis) + (axis,)
    return transpose(out, tuple(np.argsort(perm)))


def torch_gather(x: Value, indices: Value, dim: int) -> Value:
    """PyTorch's gather: take_along_axis without broadcasting, where `indices` may be
    smaller than x along the other dimensions (x is read from its start there)."""
    _index_arrays("gather", [indices])
    if indices.ndim != x.ndim:
        raise ShapeError(located(f"gather: index tensor must have the same number of dimensions "
                                 f"as input tensor, got {S.describe(x, indices)}",
                                 current_source()))
    dim = _axis("gather", dim, x.ndim, S.describe(x, indices))
    for d in range(x.ndim):
        if d != dim and indices.shape[d] > x.shape[d]:
            raise ShapeError(located(
                f"gather: size does not match at dimension {d}: expected index "
                f"{list(indices.shape)} to be no larger than self {list(x.shape)} apart from "
                f"dimension {dim}", current_source()))
    x = slice_array(x, tuple((0, x.shape[d] if d == dim else indices.shape[d], 1)
                             for d in range(x.ndim)))
    return take_along_axis(x, indices, dim)


# ---------------------------------------------------------------- functional updates (issue 11, item 3)
# ``x[index] = v``, ``x[index] += v`` and JAX's ``x.at[index].set/add/multiply(v)`` as new
# values: the indexed region of x replaced, added to or scaled. Every gradient comes from
# the primitives used: x's is zero where overwritten (where), v's is the cotangent read
# back at the region and summed over broadcasting (scatter_slice / scatter_add).

def index_update(x: Value, v, index: tuple, mode: str) -> Value:
    """x with ``x[index]`` set to, added to or multiplied by `v` (mode "set", "add",
    "multiply"). At index arrays, "add" accumulates repeated indices (JAX's .at[].add)
    and "set" keeps one write (NumPy's ``x[idx] = v``); "multiply" is refused there."""
    index = index if isinstance(index, tuple) else (index,)
    masked = _masked_update(x, v, index, mode)
    if masked is not None:
        return masked
    plan = IndexPlan(x, index)
    if plan.indices and mode == "multiply":
        raise UnsupportedError(located(
            f"multiply at integer index arrays ({x.type_str}) is not supported; multiply "
            "by a factor built with x.at[idx].set or fg.where instead", current_source()))
    if not isinstance(v, Value):
        v = const(v, x.dtype)   # NumPy's assignment casts to the array's dtype
    if mode == "add":
        return add(x, plan.place(v))
    if mode == "set":
        return plan.write(x, v)
    if mode == "multiply":
        inside = plan.place(const(True, np.bool_), np.bool_)
        return where(inside, mul(x, plan.place(v)), x)
    raise ValueError(f"index_update: unknown mode {mode!r}")


def scatter(x: Value, values: Value, indices: Sequence[Value], batch: int = 0) -> Value:
    """The primitive: x with ``x[a0, ..., i0, i1, ...] = values`` (see P.scatter)."""
    return P.scatter.bind(x, cast(values, x.dtype), *_broadcast_indices("scatter", indices, x),
                          batch=int(batch))


def iota(shape: Shape) -> Value:
    return P.iota.bind(shape=tuple(shape))


def _masked_update(x: Value, v, index: tuple, mode: str) -> Value | None:
    """``x[mask] = number`` (or +=, *=) with a traced mask over x's leading axes: a select,
    whose shape is static (unlike ``x[mask]``, which has one element per True)."""
    if len(index) != 1 or not isinstance(index[0], Value) or index[0].dtype.kind != "b":
        return None
    mask = index[0]
    if mask.shape != x.shape[:mask.ndim] or (isinstance(v, Value) and v.ndim):
        raise TraceError(located(
            f"assignment through a boolean mask {mask.type_str} into {x.type_str}: only a mask "
            "over x's leading axes and a single number (x[mask] = 0) are static; otherwise "
            "write fg.where(mask, values, x)", current_source()))
    mask = broadcast_to(reshape(mask, mask.shape + (1,) * (x.ndim - mask.ndim)), x.shape)
    v = v if isinstance(v, Value) else const(v, x.dtype)
    v = cast(v, x.dtype)
    changed = {"set": v, "add": lambda: add(x, v), "multiply": lambda: mul(x, v)}[mode]
    return where(mask, changed if mode == "set" else changed(), x)


# ---------------------------------------------------------------- reductions and matrix helpers
# (issue 11, item 7) cumsum and cumprod are primitives; prod, norms, diagonal, diag,
# trace, outer, reduce_any and reduce_all are compositions of primitives, each exact (tril and triu
# are `where` with a constant mask, built in tracer/functions.py).

def _scan_operand(op: str, x: Value, axis: int) -> tuple[Value, int]:
    # Sums and products of bools and narrow integers in int64, as NumPy and PyTorch.
    if x.dtype.kind in "biu" and x.dtype.itemsize < 8:
        x = cast(x, np.int64)
    (axis,) = _axes(op, x, int(axis)) or (0,)
    return x, axis


def cumsum(x: Value, axis: int) -> Value:
    x, axis = _scan_operand("cumsum", x, axis)
    return P.cumsum.bind(x, axis=axis) if x.ndim else x


def cumprod(x: Value, axis: int) -> Value:
    x, axis = _scan_operand("cumprod", x, axis)
    return P.cumprod.bind(x, axis=axis) if x.ndim else x


def prod(x: Value, axes=None, keepdims: bool = False) -> Value:
    """The product over `axes`: the last element of a cumprod over the reduced axes laid
    end to end. cumprod's VJP makes the gradient exact where elements are zero (one
    zero: the product of the others there, 0 elsewhere; two zeros: 0), as PyTorch's
    prod_backward."""
    if x.dtype.kind in "biu" and x.dtype.itemsize < 8:
        x = cast(x, np.int64)
    axes = _axes("prod", x, axes)
    if not axes:
        return x
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    shape = S.reduced_shape(x.shape, axes, keepdims)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    if count == 0:
        return broadcast_to(const(1, x.dtype), shape)   # the empty product
    lines = reshape(transpose(x, kept + axes), tuple(x.shape[a] for a in kept) + (count,))
    scanned = cumprod(lines, len(kept))
    return reshape(_take_range(scanned, len(kept), count - 1, count), shape)


def _norm_root(squares: Value) -> Value:
    """sqrt, with gradient 0 (not 0 * inf = NaN) where the sum of squares is 0, as
    PyTorch's norm backward: the inner select keeps sqrt's own VJP finite."""
    empty = eq(squares, 0)
    return where(empty, 0, sqrt(where(empty, 1, squares)))


def vector_norm(x: Value, ord=2, axes=None, keepdims: bool = False) -> Value:
    """The `ord`-norm of `x` over `axes` taken as one vector: 2, 1, inf, -inf or 0."""
    x = _floating(x)
    axes = _axes("norm", x, axes)
    if ord == 2:
        return _norm_root(reduce_sum(mul(x, x), axes, keepdims))
    if ord == 1:
        return reduce_sum(abs(x), axes, keepdims)
    if ord == float("inf"):
        return reduce_max(abs(x), axes, keepdims)
    if ord == float("-inf"):
        return reduce_min(abs(x), axes, keepdims)
    if ord == 0:   # the number of nonzero elements (no gradient)
        return cast(reduce_sum(ne(x, 0), axes, keepdims), x.dtype)
    raise UnsupportedError(located(f"norm: vector ord {ord!r} is not supported; fusegrad has "
                             f"ord = 2, 1, inf, -inf and 0 ({x.type_str})", current_source()))


def matrix_norm(x: Value, ord="fro", axes=(-2, -1), keepdims: bool = False) -> Value:
    """NumPy's matrix norms over the two `axes` (rows, columns): 'fro', and the
    largest (or smallest) absolute column sum (ord 1, -1) or row sum (inf, -inf)."""
    x = _floating(x)
    rows, cols = (_axis("norm", a, x.ndim, x.type_str) for a in axes)
    if rows == cols:
        raise _layout_error("norm", f"duplicate axes given: {tuple(axes)} ({x.type_str})")
    if ord in ("fro", None):
        return vector_norm(x, 2, (rows, cols), keepdims)
    sums = {1: rows, -1: rows, float("inf"): cols, float("-inf"): cols}
    if ord not in sums:
        raise UnsupportedError(located(
            f"norm: matrix ord {ord!r} is not supported; fusegrad has 'fro', 1, -1, inf "
            f"and -inf (ord 2, -2 and 'nuc' need singular values) ({x.type_str})",
            current_source()))
    lines = reduce_sum(abs(x), sums[ord], keepdims=True)
    pick = reduce_max if ord in (1, float("inf")) else reduce_min
    result = pick(lines, (rows, cols), keepdims=True)
    return result if keepdims else reshape(result, S.reduced_shape(x.shape, (rows, cols), False))


def diagonal(x: Value, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Value:
    """NumPy's diagonal: the elements x[..., i, i + offset] of the `axis1`, `axis2`
    planes, as a last axis. The plane is laid flat, so the diagonal is a strided slice."""
    if x.ndim < 2:
        raise _layout_error("diagonal", f"needs at least 2 dimensions, got {x.type_str}")
    a1, a2 = (_axis("diagonal", a, x.ndim, x.type_str) for a in (axis1, axis2))
    if a1 == a2:
        raise _layout_error("diagonal", f"axis1 and axis2 cannot be the same ({x.type_str})")
    rest = tuple(a for a in range(x.ndim) if a not in (a1, a2))
    rows, cols = x.shape[a1], x.shape[a2]
    plane = reshape(transpose(x, rest + (a1, a2)), tuple(x.shape[a] for a in rest) + (rows * cols,))
    offset = int(offset)
    count = max(0, min(rows, cols - offset) if offset >= 0 else min(rows + offset, cols))
    start = offset if offset >= 0 else -offset * cols
    index = [(0, d, 1) for d in plane.shape]
    index[-1] = (start, start + (count - 1) * (cols + 1) + 1, cols + 1) if count else (0, 0, 1)
    return slice_array(plane, tuple(index))


def diag(x: Value, k: int = 0) -> Value:
    """NumPy's diag: a vector onto the k-th diagonal of a square matrix of zeros, or the
    k-th diagonal of a matrix. Placing each element before m zeros and cutting the flat
    result into rows of m puts element i at column i (layout only, no mask)."""
    k = int(k)
    if x.ndim == 2:
        return diagonal(x, k)
    if x.ndim != 1:
        raise _layout_error("diag", f"input must be 1-d or 2-d, got {x.type_str}")
    m = x.shape[0]
    spaced = reshape(scatter_slice(reshape(x, (m, 1)), (m, m + 1), ((0, m, 1), (0, 1, 1))),
                     (m * (m + 1),))
    square = reshape(slice_array(spaced, ((0, m * m, 1),)), (m, m))
    if k == 0:
        return square
    n = m + (k if k > 0 else -k)
    at = ((0, m, 1), (k, n, 1)) if k > 0 else ((-k, n, 1), (0, m, 1))
    return scatter_slice(square, (n, n), at)


def trace(x: Value, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Value:
    return reduce_sum(diagonal(x, offset, axis1, axis2), -1)


def outer(a: Value, b: Value) -> Value:
    """NumPy's outer: both operands flattened, a[i] * b[j]."""
    return mul(reshape(a, (a.size, 1)), reshape(b, (1, b.size)))


def reduce_any(x: Value, axes=None, keepdims: bool = False) -> Value:
    """Whether some element is nonzero (NaN is): a count of them, compared with 0."""
    return ne(reduce_sum(_truth(x), axes, keepdims), 0)


def reduce_all(x: Value, axes=None, keepdims: bool = False) -> Value:
    """Whether every element is nonzero: no zero counted."""
    return eq(reduce_sum(invert(_truth(x)), axes, keepdims), 0)


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


# ---------------------------------------------------------------- loops (issue 11, item 12)

def scan(body, consts: Sequence[Value], init: Sequence[Value], xs: Sequence[Value], *,
         length: int, reverse: bool = False) -> list[Value]:
    """A scan node (see `ir.loops`): its outputs, final carries then stacked ys then
    the stacked carries each step started from."""
    from fusegrad.ir.builder import current_builder, make_node
    from fusegrad.ir.loops import hoist_invariants
    body, consts = hoist_invariants(body, list(consts), len(consts))
    inputs = tuple(consts) + tuple(init) + tuple(xs)
    params = dict(body=body, num_consts=len(consts), num_carry=len(init), length=int(length),
                  reverse=bool(reverse))
    try:
        types = P.scan.infer(*inputs, **params)
    except (ShapeError, DTypeError) as error:
        raise type(error)(located(f"scan: {error}", current_source())) from None
    node = make_node(P.scan, inputs, params, types)
    current_builder().add(node)
    return list(node.outputs)


# ---------------------------------------------------------------- issue 12 (shapes): size-derived constants

def size_const(value: numbers.Number, like: Value) -> Value:
    """A number derived from shapes (a mean's count), typed as `like`'s operand (as a
    Python number beside it would be). Marked `size=True`: kernels take it as an
    argument rather than a literal, so a new batch size runs the kernels compiled for
    the last one (the numbers are the same: the argument holds the value the literal
    would have, and the optimizer keeps the mark on what it folds from it)."""
    # A count is an integer: beside a float it takes the float's dtype (as `_lift`).
    dtype = like.dtype if like.dtype.kind == "f" else DEFAULT_FLOAT
    return P.const.bind(value=_python_number(value, dtype), dtype=dtype, size=True)


def is_size_const(node) -> bool:
    """Whether `node` is a constant derived from shapes (see `size_const`)."""
    return node.primitive is P.const and bool(node.param("size"))
