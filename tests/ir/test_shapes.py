"""ir/shapes.py: shape and dtype rules, and the errors they give for bad programs.

Errors must name the op, the shapes (or dtypes) and the user's source line.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir import primitives as P
from fusegrad.ir import shapes as S
from fusegrad.ir.graph import Value

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
I32, I64 = np.dtype(np.int32), np.dtype(np.int64)


def values(*shapes, dtype=F32):
    return [Value(shape, dtype, f"v{i}") for i, shape in enumerate(shapes)]


# ---------------------------------------------------------------- broadcasting

@given(st.lists(st.lists(st.integers(0, 3), max_size=3).map(tuple), min_size=1, max_size=3))
@settings(max_examples=100, deadline=None)
def test_broadcast_shapes_agrees_with_numpy(shapes):
    try:
        expected = np.broadcast_shapes(*shapes)
    except ValueError:
        with pytest.raises(ir.ShapeError, match="cannot be broadcast together") as error:
            S.broadcast_shapes(*shapes)
        assert all(str(shape) in str(error.value) for shape in shapes), str(error.value)
    else:
        assert S.broadcast_shapes(*shapes) == expected


def test_non_broadcastable_shapes_name_both_shapes_and_the_line():
    a, b = values((3, 4), (5,))
    with ir.building(), ir.source_line("model.py:12"):
        with pytest.raises(ir.ShapeError) as error:
            ops.add(a, b)
    message = str(error.value)
    assert "add" in message and "(3, 4)" in message and "(5,)" in message
    assert "model.py:12" in message


def test_non_broadcastable_where_names_every_shape():
    a, b = values((2, 3), (4, 3))
    with ir.building(), ir.source_line("loss.py:3"):
        with pytest.raises(ir.ShapeError, match=r"where.*\(2, 3\).*\(4, 3\)(.|\n)*loss.py:3"):
            ops.where(ops.gt(a, 0.0), a, b)


@pytest.mark.parametrize("shape, target", [((3,), (4,)), ((2, 3), (3,)), ((3, 1), (3, 4, 2))])
def test_broadcast_to_rejects_what_numpy_rejects(shape, target):
    (x,) = values(shape)
    with pytest.raises(ValueError):
        np.broadcast_to(np.zeros(shape), target)
    with ir.building(), pytest.raises(ir.ShapeError) as error:
        ops.broadcast_to(x, target)
    message = str(error.value)
    assert "broadcast_to" in message and str(target) in message
    assert str(shape) in message or x.type_str in message


# ---------------------------------------------------------------- matmul

@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (5, 2)), ((4,), (5,)), ((3, 4), (3,)),
                                              ((2,), (3, 2))])
def test_matmul_inner_dimension_mismatch_names_both_shapes(a_shape, b_shape):
    a, b = values(a_shape, b_shape)
    with ir.building(), ir.source_line("model.py:20"):
        with pytest.raises(ir.ShapeError) as error:
            ops.matmul(a, b)
    message = str(error.value)
    assert "matmul" in message and "model.py:20" in message
    assert a.type_str in message and b.type_str in message


def test_matmul_primitive_mismatch_names_both_shapes():
    a, b = values((3, 4), (5, 2))
    with ir.building(), ir.source_line("model.py:21"):
        with pytest.raises(ir.ShapeError, match=r"f32\[3,4\], f32\[5,2\](.|\n)*model.py:21"):
            P.matmul.bind(a, b)


def test_matmul_batch_dimensions_that_do_not_broadcast_name_both_shapes():
    a, b = values((2, 3, 4), (3, 4, 5))
    with ir.building(), pytest.raises(ir.ShapeError, match=r"batch.*f32\[2,3,4\], f32\[3,4,5\]"):
        ops.matmul(a, b)


@pytest.mark.parametrize("a_shape, b_shape, expected", [
    ((3, 4), (4, 5), (3, 5)), ((3, 4), (4,), (3,)), ((4,), (4,), ()), ((4,), (4, 5), (5,)),
    ((2, 3, 4), (4, 5), (2, 3, 5)), ((2, 1, 3, 4), (5, 4, 2), (2, 5, 3, 2)),
    ((4,), (2, 4, 5), (2, 5)), ((2, 3, 4), (4,), (2, 3))])
def test_matmul_result_shapes_follow_numpy(a_shape, b_shape, expected):
    a, b = values(a_shape, b_shape)
    with ir.building():
        assert ops.matmul(a, b).shape == expected == np.matmul(np.zeros(a_shape),
                                                              np.zeros(b_shape)).shape


# ---------------------------------------------------------------- dtypes

@pytest.mark.parametrize("a, b, expected", [
    (F32, F64, F64), (I32, F32, F32), (I64, F32, F32), (I32, I64, I64),
    (np.dtype(bool), I32, I32)])
def test_promote_lets_floats_win_without_widening(a, b, expected):
    assert S.promote(a, b) == expected


@pytest.mark.parametrize("dtype, operand, expected", [
    (F32, 2.5, F32), (F32, 2, F32), (F64, 2.5, F64), (I32, 2, I32), (I32, 2.5, F32)])
def test_python_numbers_are_weakly_typed(dtype, operand, expected):
    (x,) = values((3,), dtype=dtype)
    with ir.building():
        assert (x * operand).dtype == expected
        assert (operand - x).dtype == expected


def test_mixed_precision_operands_are_cast_explicitly():
    a, b = Value((3,), F32), Value((3,), F64)
    with ir.building() as builder:
        c = a + b
    assert c.dtype == F64
    assert [n.primitive.name for n in builder.nodes] == ["cast", "add"]
    assert all(v.dtype == F64 for v in builder.nodes[-1].inputs)


def test_floating_only_primitive_rejects_integers_with_the_line():
    (n,) = values((3,), dtype=I32)
    with ir.building(), ir.source_line("model.py:30"):
        with pytest.raises(ir.DTypeError, match=r"log: needs floating-point inputs, got i32\[3\]"
                                                r"(.|\n)*model.py:30"):
            P.log.bind(n)
        # The op function casts integers to the default float instead.
        assert ops.log(n).dtype == F32


def test_where_needs_a_bool_condition():
    a, b = values((3,), (3,))
    with ir.building(), pytest.raises(ir.DTypeError, match="condition must be bool, got f32"):
        P.where.bind(a, a, b)


# ---------------------------------------------------------------- axes and layout

@pytest.mark.parametrize("axes, ndim, expected", [
    (None, 3, (0, 1, 2)), (1, 3, (1,)), (-1, 3, (2,)), ((2, 0), 3, (0, 2)), ((-3, -1), 3, (0, 2)),
    (None, 0, ()), (0, 0, ()), ((), 2, ())])
def test_normalize_axes(axes, ndim, expected):
    assert S.normalize_axes(axes, ndim) == expected


@pytest.mark.parametrize("axes, ndim, message", [
    (3, 3, "out of range"), (-4, 3, "out of range"), ((0, -3), 3, "repeated"),
    (1, 0, "out of range")])
def test_normalize_axes_rejects_bad_axes(axes, ndim, message):
    with pytest.raises(ir.ShapeError, match=message):
        S.normalize_axes(axes, ndim)


def test_reduction_axis_out_of_range():
    (x,) = values((3, 4))
    with ir.building(), pytest.raises(ir.ShapeError, match="axis 2 is out of range"):
        ops.reduce_sum(x, 2)


def test_max_of_an_empty_axis_is_an_error():
    (x,) = values((0, 4))
    with ir.building(), pytest.raises(ir.ShapeError, match="zero-size"):
        ops.reduce_max(x, 0)
    with ir.building():
        assert ops.reduce_max(x, 1).shape == (0,)


@pytest.mark.parametrize("shape, axes, keepdims, expected", [
    ((2, 3, 4), (0, 2), False, (3,)), ((2, 3, 4), (0, 2), True, (1, 3, 1)),
    ((5,), (0,), False, ())])
def test_reduced_shape(shape, axes, keepdims, expected):
    assert S.reduced_shape(shape, axes, keepdims) == expected
    assert np.sum(np.zeros(shape), axis=axes, keepdims=keepdims).shape == expected


def test_reshape_must_keep_the_size():
    (x,) = values((3, 4))
    with ir.building(), ir.source_line("model.py:40"):
        with pytest.raises(ir.ShapeError, match=r"cannot reshape f32\[3,4\] \(12 elements\) to "
                                                r"\(5, 2\)(.|\n)*model.py:40"):
            ops.reshape(x, (5, 2))


@pytest.mark.parametrize("perm", [(0,), (0, 0), (1, 2)])
def test_transpose_needs_a_permutation(perm):
    (x,) = values((3, 4))
    with ir.building(), pytest.raises(ir.ShapeError, match="not a permutation"):
        P.transpose.bind(x, perm=perm)


def test_ops_skip_nodes_that_would_do_nothing():
    (x,) = values((3, 4))
    with ir.building() as builder:
        same = (ops.reshape(x, (3, 4)), ops.broadcast_to(x, (3, 4)), ops.transpose(x, (0, 1)),
                ops.reduce_sum(x, ()), ops.integer_pow(x, 1))
    assert all(v is x for v in same) and builder.nodes == []
