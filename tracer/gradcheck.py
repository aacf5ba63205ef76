"""`gradcheck`: compiled gradients against central finite differences in float64."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fusegrad import ir
from fusegrad.ir.errors import FusegradError
from fusegrad.tracer import pytree
from fusegrad.tracer.compile import CompiledGrad, compile_grad


class GradcheckError(FusegradError, AssertionError):
    """A compiled gradient disagrees with finite differences."""


def gradcheck(fn: Callable | CompiledGrad, *args: Any, eps: float | None = None,
              atol: float | None = None, rtol: float | None = None) -> bool:
    """True if the gradients `compile_grad(fn)` computes at `args` match central
    finite differences of `fn` evaluated in float64; otherwise raise GradcheckError
    naming the argument, the worst element and both values."""
    compiled = fn if isinstance(fn, CompiledGrad) else compile_grad(fn)
    traced = compiled.trace(*args)
    leaves = compiled.leaves(*args)
    grads = traced.executable(leaves)[1:]   # flat, one per differentiated leaf
    # The forward graph, traced again in float64, is run by the NumPy interpreter:
    # thousands of perturbed evaluations and no compilation.
    wide_args = [pytree.substitute(a, _widen) for a in args]
    wide = compiled.trace(*wide_args)
    inputs = [np.array(a) for a in compiled.leaves(*wide_args)]   # written to below
    for leaf, grad in zip(traced.wrt_leaves, grads):
        numeric = _finite_differences(wide.forward, inputs, leaf, eps or 1e-6)
        single = leaves[leaf].dtype == np.float32
        _compare(traced.leaf_labels[leaf], grad, numeric,
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


def _compare(label: str, grad: np.ndarray, numeric: np.ndarray, atol: float,
             rtol: float) -> None:
    error = np.abs(grad - numeric) - (atol + rtol * np.abs(numeric))
    if error.size == 0 or not (np.nanmax(error) > 0 or np.isnan(error).any()):
        return
    worst = np.unravel_index(np.nanargmax(np.where(np.isnan(error), np.inf, error)), error.shape)
    raise GradcheckError(
        f"gradcheck: the gradient with respect to {label} differs from "
        f"central finite differences at element {tuple(int(i) for i in worst)}: compiled "
        f"{float(grad[worst]):.8g}, finite differences {float(numeric[worst]):.8g} "
        f"(atol={atol}, rtol={rtol})")


def _widen(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float64) if array.dtype.kind == "f" else array
