"""``fusegrad.autograd``: PyTorch's ``torch.autograd`` names for the eager API."""
from __future__ import annotations

from typing import Any

from fusegrad.tracer.autograd import backward, grad
from fusegrad.tracer.graph_nodes import enable_grad, is_grad_enabled, no_grad, set_grad_enabled

__all__ = ["Variable", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled"]


class _VariableMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        from fusegrad.tracer.tensor import Tensor
        return isinstance(obj, Tensor)


class Variable(metaclass=_VariableMeta):
    """Legacy ``Variable(t, requires_grad=False)``: returns a Tensor (as PyTorch >= 0.4).

    The result shares ``t``'s storage and is a new leaf; ``Variable()`` is an empty tensor.
    """

    def __new__(cls, data: Any = None, requires_grad: bool = False, volatile: bool = False):
        from fusegrad.tracer.executor import wrap
        from fusegrad.tracer.tensor import Tensor
        import numpy as np
        if data is None:
            return wrap(np.empty((0,), np.float32))
        if not isinstance(data, Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got {type(data).__name__}")
        tensor = data.detach()
        if requires_grad:
            tensor.requires_grad_(True)
        return tensor
