"""The front-ends: Tensor, the op functions, compile_grad and the eager autograd API."""
from fusegrad.ir.errors import FusegradError
from fusegrad.tracer.source import user_line
from fusegrad.tracer.tensor import Tensor
from fusegrad.tracer.compile import compile_grad, CompiledGrad

# Every fusegrad error names the user's line (ir/errors.py).
FusegradError.locate = staticmethod(user_line)

__all__ = ["Tensor", "compile_grad", "CompiledGrad"]
