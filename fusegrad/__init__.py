"""fusegrad: a tracing compiler for differentiable array code.

    import fusegrad as fg

    @fg.compile_grad
    def loss(x, w, b):
        return (fg.tanh(x @ w + b) ** 2).mean()

    value, (gx, gw, gb) = loss(x, w, b)
"""
from fusegrad.ir.errors import DTypeError, FusegradError, ShapeError, TraceError
from fusegrad.tracer import CompiledGrad, Tensor, compile_grad
from fusegrad.tracer.functions import (abs, add, amax, amin, argmax, argmin, broadcast_to, cos,
                                       div, dot, eq, exp, ge, gt, le, log, logsumexp, lt, matmul,
                                       max, maximum, mean, min, minimum, mm, mul, mv, ne, neg,
                                       permute, pow, relu, reshape, sigmoid, sign, sin, softmax,
                                       sqrt, sub, sum, tanh, transpose, var, where)

__version__ = "0.1.0"
