"""What codegen hands the runtime (codegen/kernel_source.py): entry points that the
source defines, and buffers whose arguments are the ones the source declares.
Emission only: nothing here is compiled."""
from __future__ import annotations

import re

import numpy as np
import pytest

from fusegrad import ir
from fusegrad.codegen import SourceNames, compile_kernel, kernel_parameters, plan_kernels
from fusegrad.codegen.cpu import CHUNK_PARAMETERS
from fusegrad.ir import ops
from fusegrad.ir.graph import Value

F32 = np.dtype(np.float32)


def full_and_column_reductions():
    """One kernel with a full sum (one cell per chunk), a column max (a row of columns
    per chunk) and an elementwise output."""
    x = Value((300, 5), F32, "x")
    with ir.building() as builder:
        e = ops.exp(x)
        total = ops.reduce_sum(e)
        columns = ops.reduce_max(e, 0)
    return builder.finish((x,), (total, columns, e))


@pytest.fixture(scope="module")
def compiled():
    graph = full_and_column_reductions()
    plan = plan_kernels(graph)
    (kernel,) = plan.steps
    names = SourceNames(graph)
    return {device: compile_kernel(kernel, names, plan, device) for device in ("cpu", "cuda")}, \
        kernel_parameters(kernel, names)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_entry_points_are_defined_with_the_arguments_described(compiled, device):
    sources, parameters = compiled
    source = sources[device]
    entries = [source.entry, source.epilogue]
    assert source.runs_chunks == (device == "cpu")
    assert (source.epilogue is not None) == (device == "cuda")
    # The CPU's one function also takes the chunks it runs (codegen.cpu).
    expected = parameters + list(CHUNK_PARAMETERS if source.runs_chunks else ())
    for entry in filter(None, entries):
        signature = re.search(rf"^def {entry}\((.*)\):", source.text, re.MULTILINE).group(1)
        assert signature.split(", ") == expected
    # *inputs, *buffers, nchunks, *domain
    assert len(parameters) == len(source.inputs) + len(source.buffers) + 1 + len(source.domain)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_buffers_have_the_shapes_dtypes_and_fills_of_the_plan(compiled, device):
    source = compiled[0][device]
    outputs, partials = source.buffers[:3], source.buffers[3:]
    assert [b.shape for b in outputs] == [(300, 5), (1,), (5,)]   # a 0-d output as (1,)
    assert not any(b.chunked or b.fill is not None for b in outputs)
    total, columns = partials
    # Sums accumulate in float64; a column partial is updated in place from the identity.
    assert (total.shape, total.dtype, total.chunked) == ((), np.float64, True)
    assert (columns.shape, columns.dtype, columns.fill) == ((5,), F32, -np.inf)
    # A full partial's cell is written by its CUDA block before it is read; the CPU
    # fills it (a kernel without a domain combines partials it never wrote).
    assert total.fill == (0 if device == "cpu" else None)
    assert source.outer_points == (300 if device == "cuda" else 0)
