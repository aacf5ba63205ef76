"""The front-ends: Tensor, the op functions, compile_grad and the eager autograd API."""
from fusegrad.tracer.tensor import Tensor
from fusegrad.tracer.compile import compile_grad, CompiledGrad

__all__ = ["Tensor", "compile_grad", "CompiledGrad"]
