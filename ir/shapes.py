"""Shape and dtype rules shared by the primitive declarations."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fusegrad.ir.errors import DTypeError, ShapeError
from fusegrad.ir.graph import BOOL, Shape, Value, dtype_str


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting, with an error that shows every shape."""
    ndim = max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            shown = " and ".join(str(tuple(s)) for s in shapes)
            raise ShapeError(f"shapes {shown} cannot be broadcast together (axis {axis})")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def promote(*dtypes: np.dtype) -> np.dtype:
    """Floats win over integers without widening (PyTorch's and JAX's rule, not NumPy's)."""
    floats = [d for d in dtypes if d.kind == "f"]
    if floats:
        return max(floats, key=lambda d: d.itemsize)
    return np.result_type(*dtypes)


def describe(*values: Value) -> str:
    return ", ".join(v.type_str for v in values)


def elementwise(*inputs: Value) -> tuple[Shape, np.dtype]:
    return broadcast_shapes(*(v.shape for v in inputs)), promote(*(v.dtype for v in inputs))


def elementwise_numeric(*inputs: Value) -> tuple[Shape, np.dtype]:
    """Arithmetic that has no meaning on booleans (NumPy refuses `-True` too)."""
    shape, dtype = elementwise(*inputs)
    if dtype == BOOL:
        raise DTypeError(f"needs numeric inputs, got {describe(*inputs)}")
    return shape, dtype


def elementwise_floating(*inputs: Value) -> tuple[Shape, np.dtype]:
    shape, dtype = elementwise(*inputs)
    if dtype.kind != "f":
        raise DTypeError(f"needs floating-point inputs, got {describe(*inputs)}")
    return shape, dtype


def elementwise_integral(*inputs: Value) -> tuple[Shape, np.dtype]:
    """Bitwise ops: on bool masks (logical) and integers; NumPy refuses floats too."""
    shape, dtype = elementwise(*inputs)
    if dtype.kind not in "biu":
        raise DTypeError(f"needs bool or integer inputs, got {describe(*inputs)}")
    return shape, dtype


def comparison(a: Value, b: Value) -> tuple[Shape, np.dtype]:
    return broadcast_shapes(a.shape, b.shape), BOOL


def select(cond: Value, a: Value, b: Value) -> tuple[Shape, np.dtype]:
    if cond.dtype != BOOL:
        raise DTypeError(f"condition must be bool, got {dtype_str(cond.dtype)}")
    return broadcast_shapes(cond.shape, a.shape, b.shape), promote(a.dtype, b.dtype)


def normalize_axes(axes: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    result = []
    for axis in axes:
        if not -ndim <= axis < max(ndim, 1) or (ndim == 0 and axis not in (0, -1)):
            raise ShapeError(f"axis {axis} is out of range for an array of {ndim} dimensions")
        result.append(int(axis) % ndim if ndim else 0)
    if len(set(result)) != len(result):
        raise ShapeError(f"repeated axis in {tuple(axes)}")
    return tuple(sorted(result)) if ndim else ()


def reduced_shape(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def reduction(x: Value, *, axes: tuple[int, ...], keepdims: bool) -> tuple[Shape, np.dtype]:
    for axis in axes:
        if not 0 <= axis < max(x.ndim, 1):
            raise ShapeError(f"axis {axis} is out of range for {x.type_str}")
    return reduced_shape(x.shape, axes, keepdims), x.dtype


def nonempty_reduction(x: Value, *, axes: tuple[int, ...], keepdims: bool) -> tuple[Shape, np.dtype]:
    if any(x.shape[a] == 0 for a in axes):
        raise ShapeError(f"zero-size array {x.type_str} has no maximum or minimum over axes {axes}")
    return reduction(x, axes=axes, keepdims=keepdims)


def index_reduction(x: Value, *, axis: int, keepdims: bool) -> tuple[Shape, np.dtype]:
    shape, _ = nonempty_reduction(x, axes=(axis,), keepdims=keepdims)
    return shape, np.dtype(np.int64)


def infer_wildcard(shape: Shape, size: int) -> Shape:
    """Resolve one -1 in a reshape target from the number of elements."""
    if -1 not in shape:
        return shape
    known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
    if shape.count(-1) > 1 or known == 0 or size % known:
        raise ShapeError(f"cannot reshape {size} elements to {shape}")
    return tuple(size // known if d == -1 else d for d in shape)


def reshape(x: Value, *, shape: Shape) -> tuple[Shape, np.dtype]:
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise ShapeError(f"cannot reshape {x.type_str} ({x.size} elements) to {tuple(shape)}")
    return tuple(shape), x.dtype


def transpose(x: Value, *, perm: tuple[int, ...]) -> tuple[Shape, np.dtype]:
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"{perm} is not a permutation of the axes of {x.type_str}")
    return tuple(x.shape[p] for p in perm), x.dtype


def broadcast_to(x: Value, *, shape: Shape) -> tuple[Shape, np.dtype]:
    if broadcast_shapes(x.shape, shape) != tuple(shape) or x.ndim > len(shape):
        raise ShapeError(f"cannot broadcast {x.type_str} to {tuple(shape)}")
    return tuple(shape), x.dtype


def matmul(a: Value, b: Value) -> tuple[Shape, np.dtype]:
    """NumPy's matmul of stacks of matrices (2 or more dimensions each): the batch
    dimensions (all but the last two) broadcast, the matrices multiply."""
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"matmul primitive takes operands of 2 or more dimensions, got {describe(a, b)}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"inner dimensions differ: {describe(a, b)} ({a.shape[-1]} != {b.shape[-2]})")
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"batch dimensions {a.shape[:-2]} and {b.shape[:-2]} cannot be "
                         f"broadcast together: {describe(a, b)}") from None
    dtype = promote(a.dtype, b.dtype)
    if dtype.kind != "f":
        raise DTypeError(f"needs floating-point inputs, got {describe(a, b)}")
    return batch + (a.shape[-2], b.shape[-1]), dtype


def slice_shape(x: Value, *, index: tuple[tuple[int, int, int], ...]) -> tuple[Shape, np.dtype]:
    if len(index) != x.ndim:
        raise ShapeError(f"slice of {x.type_str} needs one (start, stop, step) per axis")
    return tuple(len(range(*triple)) for triple in index), x.dtype


def scatter_shape(g: Value, *, shape: Shape, index) -> tuple[Shape, np.dtype]:
    sliced = tuple(len(range(*triple)) for triple in index)
    if sliced != g.shape:
        raise ShapeError(f"cannot place {g.type_str} into the slice {index} of {tuple(shape)}")
    return tuple(shape), g.dtype


# ---------------------------------------------------------------- gathers (issue 11, item 2)

def _gather_indices(x: Value, indices: Sequence[Value], batch: int) -> Shape:
    """The common shape of the index arrays of a gather or its scatter-add, checked."""
    if not indices:
        raise ShapeError("needs at least one index array")
    if any(i.dtype.kind not in "iu" for i in indices):
        raise DTypeError(f"index arrays must be integers, got {describe(*indices)}")
    shape = indices[0].shape
    if any(i.shape != shape for i in indices):
        raise ShapeError(f"index arrays must have one shape, got {describe(*indices)}")
    if batch + len(indices) > x.ndim or tuple(shape[:batch]) != tuple(x.shape[:batch]):
        raise ShapeError(f"{len(indices)} index arrays {describe(*indices)} after {batch} "
                         f"batch axes do not fit {x.type_str}")
    return shape


def gather(x: Value, *indices: Value, batch: int) -> tuple[Shape, np.dtype]:
    """``x[arange, ..., i0, i1, ...]``: the index shape, then x's axes not indexed."""
    shape = _gather_indices(x, indices, batch)
    return tuple(shape) + x.shape[batch + len(indices):], x.dtype


def scatter_add(g: Value, *indices: Value, shape: Shape, batch: int) -> tuple[Shape, np.dtype]:
    """The transpose of `gather`: `g` (gather's result shape) added into zeros of `shape`."""
    target = Value(shape, g.dtype)
    expected, _ = gather(target, *indices, batch=batch)
    if g.shape != expected:
        raise ShapeError(f"values {g.type_str} do not fit the gather of {target.type_str} "
                         f"at {describe(*indices)} (expected {expected})")
    return tuple(shape), g.dtype


def scatter(x: Value, values: Value, *indices: Value, batch: int) -> tuple[Shape, np.dtype]:
    """``x`` with ``x[arange, ..., i0, i1, ...] = values`` (see `gather`)."""
    expected, _ = gather(x, *indices, batch=batch)
    if values.shape != expected or values.dtype != x.dtype:
        raise ShapeError(f"values {values.type_str} do not fit the gather of {x.type_str} "
                         f"at {describe(*indices)} (expected {dtype_str(x.dtype)}{list(expected)})")
    return x.shape, x.dtype
