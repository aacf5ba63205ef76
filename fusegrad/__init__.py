"""fusegrad: a tracing compiler for differentiable array code.

    import fusegrad as fg

    @fg.compile_grad
    def loss(x, w, b):
        return (fg.tanh(x @ w + b) ** 2).mean()

    value, (gx, gw, gb) = loss(x, w, b)
"""
import os as _os

# Installed, setuptools maps ir/, codegen/, runtime/ and tracer/ under fusegrad.
# Run from a source checkout (``python -m pytest`` at the root), this directory is
# found first and knows nothing of that mapping, so the checkout's root joins the
# package path: ``fusegrad.ir`` is then ``<root>/ir``, exactly as installed.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(_os.path.join(_root, "ir")):
    __path__.append(_root)  # noqa: F821  (defined for packages)

from fusegrad.ir.errors import DTypeError, FusegradError, ShapeError, TraceError
from fusegrad.tracer import CompiledGrad, Tensor, compile_grad
from fusegrad.tracer.functions import (abs, add, amax, amin, argmax, argmin, broadcast_to, cos,
                                       div, dot, eq, exp, ge, gt, le, log, logsumexp, lt, matmul,
                                       max, maximum, mean, min, minimum, mm, mul, mv, ne, neg,
                                       permute, pow, relu, reshape, sigmoid, sign, sin, softmax,
                                       sqrt, sub, sum, tanh, transpose, var, where)

__version__ = "0.1.0"
