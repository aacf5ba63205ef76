"""``fg.linalg``: NumPy's and PyTorch's linalg namespace (issue 11, item 7).

``fg.linalg.norm(x, ord=None, axis=None, keepdims=False)`` is ``np.linalg.norm``
(PyTorch's ``torch.linalg.norm`` has the same meaning, spelled ``dim=``/``keepdim=``);
``fg.linalg.vector_norm(x, ord=2, dim=None, keepdim=False)`` is PyTorch's: a vector
norm over all of `dim` together (all axes when None).
"""
from fusegrad.tracer.dispatch import apply as _apply
from fusegrad.tracer.functions import _numpy_norm
from fusegrad.ir import ops as _ops


def norm(x, ord=None, axis=None, keepdims=False, *, dim=None, keepdim=False):  # noqa: A002
    if dim is not None and axis is not None:
        raise TypeError("norm: give axis= (NumPy) or dim= (PyTorch), not both")
    return _numpy_norm(x, ord, axis if dim is None else dim, keepdims or keepdim)


def vector_norm(x, ord=2, dim=None, keepdim=False, *, axis=None, keepdims=False):  # noqa: A002
    axes = dim if axis is None else axis
    axes = tuple(axes) if isinstance(axes, list) else axes
    return _apply(_ops.vector_norm, x, ord=ord, axes=axes, keepdims=keepdim or keepdims,
                  grad_fn="LinalgVectorNormBackward0")
