"""`gradcheck`: compiled gradients against central finite differences in float64."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fusegrad import ir
from fusegrad.ir.errors import FusegradError
from fusegrad.tracer.compile import CompiledGrad, compile_grad


class GradcheckError(FusegradError, AssertionError):
    """A compiled gradient disagrees with finite differences."""


def gradcheck(fn: Callable | CompiledGrad, *args: Any, eps: float | None = None,
              atol: float | None = None, rtol: float | None = None) -> bool:
    """True if the gradients `compile_grad(fn)` computes at `args` match central
    finite differences of `fn` evaluated in float64; otherwise raise GradcheckError
    naming the argument, the worst element and both values."""
    compiled = fn if isinstance(fn, CompiledGrad) else compile_grad(fn)
    _, grads = compiled(*args)
    grads = (grads,) if isinstance(grads, np.ndarray) else grads
    wrt = compiled.wrt_positions(*args)
    # The forward graph, traced again in float64, is run by the NumPy interpreter:
    # thousands of perturbed evaluations and no compilation.
    wide = [a.astype(np.float64) if _floating_array(a) else a for a in map(_array_or_self, args)]
    traced = compiled.trace(*wide)
    inputs = [np.array(wide[i], dtype=np.float64 if _floating_array(wide[i]) else None)
              for i in traced.array_positions]
    for position, grad in zip(wrt, grads):
        slot = traced.array_positions.index(position)
        numeric = _finite_differences(traced.forward, inputs, slot, eps or 1e-6)
        single = np.asarray(args[position]).dtype == np.float32
        _compare(compiled, position, grad, numeric,
                 atol if atol is not None else (1e-3 if single else 1e-5),
                 rtol if rtol is not None else (1e-2 if single else 1e-3))
    return True


def _finite_differences(graph: ir.Graph, inputs: list[np.ndarray], slot: int,
                        eps: float) -> np.ndarray:
    x = inputs[slot]
    result = np.empty(x.shape)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        above = float(ir.evaluate(graph, inputs)[0])
        x[index] = saved - eps
        below = float(ir.evaluate(graph, inputs)[0])
        x[index] = saved
        result[index] = (above - below) / (2 * eps)
    return result


def _compare(compiled: CompiledGrad, position: int, grad: np.ndarray, numeric: np.ndarray,
             atol: float, rtol: float) -> None:
    error = np.abs(grad - numeric) - (atol + rtol * np.abs(numeric))
    if error.size == 0 or not (np.nanmax(error) > 0 or np.isnan(error).any()):
        return
    worst = np.unravel_index(np.nanargmax(np.where(np.isnan(error), np.inf, error)), error.shape)
    name = compiled.argument_name(position)
    raise GradcheckError(
        f"gradcheck: the gradient with respect to argument {position} ({name}) differs from "
        f"central finite differences at element {tuple(int(i) for i in worst)}: compiled "
        f"{float(grad[worst]):.8g}, finite differences {float(numeric[worst]):.8g} "
        f"(atol={atol}, rtol={rtol})")


def _array_or_self(arg: Any) -> Any:
    if isinstance(arg, (list, tuple)):
        return np.asarray(arg)
    return arg


def _floating_array(arg: Any) -> bool:
    return isinstance(arg, np.ndarray) and arg.dtype.kind == "f"
