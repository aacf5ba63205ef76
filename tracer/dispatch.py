"""Routing an operation on Tensors to the tracer or to the eager engine.

Every op of the public API is a graph-building function of `fusegrad.ir.ops`
applied through `apply`. Inside `compile_grad` the arguments are traced tensors and
the op appends IR to the trace; outside, the eager engine records the same IR and
computes the values.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fusegrad.ir import building, current_source, source_line
from fusegrad.ir.builder import Builder, current_builder
from fusegrad.ir.graph import Value
from fusegrad.tracer import executor, pytree
from fusegrad.tracer.source import user_line
from fusegrad.tracer.state import TensorState

class Tracing:
    """The context of one trace: ops on traced tensors append to `builder`."""

    def __init__(self) -> None:
        self.builder = Builder()

    def __enter__(self) -> Builder:
        self._building = building(self.builder)
        self._building.__enter__()
        return self.builder

    def __exit__(self, *exc) -> None:
        self._building.__exit__(*exc)


def apply(build: Callable[..., Any], *args: Any, grad_fn: str | None = None, **params: Any):
    """Apply `build` (an ir.ops function) to tensors, numbers and arrays."""
    result = executor.apply_fast(build, args, params, grad_fn)   # most eager calls
    if result is not executor.MISS:
        return result
    if any(isinstance(a, TensorState) and a._mode.traced for a in args):
        return _apply_traced(build, args, params)
    return executor.apply(build, args, params, grad_fn)


def _apply_traced(build, args, params):
    builder = current_builder()
    # Keep an enclosing caller's line (a composite like logsumexp traces many ops);
    # otherwise name the user's own line.
    with source_line(current_source() or user_line()):
        values = [_traced_operand(a, builder) for a in args]
        result = build(*values, **params)
    if isinstance(result, tuple):
        return tuple(TensorState._traced(v) for v in result)
    return TensorState._traced(result)


def _traced_operand(arg: Any, builder: Builder) -> Any:
    if isinstance(arg, TensorState):
        if arg._mode.traced:
            return arg._mode.value
        return builder.capture(arg.detach().numpy())
    if isinstance(arg, np.ndarray):
        return builder.capture(_constant(arg))
    if isinstance(arg, (list, tuple)) and arg and not isinstance(arg[0], (TensorState, Value)):
        return builder.capture(_constant(np.asarray(arg)))
    return arg


def _constant(array: np.ndarray) -> np.ndarray:
    """A closed-over array as a constant of the trace: the same object, so that a later
    change to it in place is seen; in a byte order kernels read (rarely, a copy)."""
    pytree.check_dtype(array)
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))

