"""Eager tensors: PyTorch-style autograd recorded into the same IR."""
from __future__ import annotations

import numpy as np

from fusegrad.ir.graph import Value


class Size(tuple):
    """PyTorch's torch.Size: a tuple that prints as ``fusegrad.Size([5, 3])``."""

    def __repr__(self) -> str:
        return f"fusegrad.Size({list(self)})"


class EagerTensorMixin:
    _value: Value | None = None
    _data: np.ndarray | None = None

    def _init_traced(self, value: Value) -> None:
        self._value = value

    def _shape(self) -> tuple[int, ...]:
        return self._value.shape if self._value is not None else self._data.shape

    @property
    def dtype(self):
        return self._value.dtype if self._value is not None else self._data.dtype


def apply(build, args, params, grad_fn):
    raise NotImplementedError("eager mode is being written")
