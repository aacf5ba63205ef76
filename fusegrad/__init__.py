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

from fusegrad.ir.errors import DTypeError, FusegradError, ShapeError, TraceError, UnsupportedError
from fusegrad.tracer import CompiledGrad, Tensor, compile_grad
from fusegrad.tracer.gradcheck import GradcheckError, gradcheck
from fusegrad.tracer.functions import (abs, add, amax, amin, argmax, argmin, broadcast_to, cos,
                                       div, dot, eq, exp, ge, gt, le, log, logsumexp, lt, matmul,
                                       max, maximum, mean, min, minimum, mm, mul, mv, ne, neg,
                                       permute, pow, relu, reshape, sigmoid, sign, sin, softmax,
                                       sqrt, sub, sum, tanh, transpose, var, where)
# more elementwise math (issue 11, item 6)
from fusegrad.tracer.functions import (acos, arccos, arcsin, arctan, arctan2, asin, atan, atan2,
                                       ceil, clamp, clip, cosh, exp2, expm1, floor, hypot, log1p,
                                       log2, log10, round, rsqrt, sinh, softplus, square, tan)
# logical, bitwise, modular (issue 11, item 4)
from fusegrad.tracer.functions import (bitwise_and, bitwise_not, bitwise_or, bitwise_xor,
                                       floor_divide, invert, logical_and, logical_not,
                                       logical_or, logical_xor, mod, remainder)
# layout (issue 11, item 5)
from fusegrad.tracer.functions import (cat, chunk, concatenate, expand_dims, flip, pad, repeat,
                                       repeat_interleave, split, stack, tile)
# batched matmul and axis permutations (issue 11, item 1)
from fusegrad.tracer.functions import (bmm, einsum, matrix_transpose, moveaxis, movedim,
                                       swapaxes, swapdims)

# gathers and functional updates (issue 11, items 2 and 3)
from fusegrad.tracer.functions import gather, index_update, take, take_along_axis, take_along_dim
from fusegrad.ir.errors import BoundsError

# reductions and matrix helpers (issue 11, item 7); `any` and `all` shadow the builtins
# here, as torch's do
from fusegrad.tracer.functions import (cumprod, cumsum, diag, diagonal, norm, outer, prod, std,
                                       trace, tril, triu)
from fusegrad.tracer.functions import all_ as all, any_ as any  # noqa: A001
from fusegrad import linalg

# erf, gelu, log_softmax (issue 11, item 6, rest)
from fusegrad.tracer.functions import erf, erfc, gelu, log_softmax
# loops that do not unroll (issue 11, item 12)
from fusegrad.tracer.loops import fori_loop, scan

__version__ = "0.1.0"

# ---- the eager, PyTorch-style autograd API ----
# `float`, `int`, `bool` and `sum`-like names shadow builtins in this namespace on
# purpose, as in torch; nothing below this point may use those builtins.
from fusegrad import autograd, cuda
from fusegrad.tracer.creation import (BoolTensor, ByteTensor, DoubleTensor, FloatTensor,
                                      Generator, HalfTensor, IntTensor, LongTensor, arange,
                                      as_tensor, empty, empty_like, eye, from_numpy, full,
                                      full_like, get_default_dtype, initial_seed, is_tensor,
                                      linspace, manual_seed, numel, ones, ones_like, rand,
                                      rand_like, randint, randn, randn_like, tensor, zeros,
                                      zeros_like)
from fusegrad.tracer.dtypes import (Size, bool, device, double, dtype, float, float16, float32,
                                    float64, half, int, int8, int16, int32, int64, long, short,
                                    uint8)
from fusegrad.tracer.graph_nodes import enable_grad, is_grad_enabled, no_grad, set_grad_enabled


def t(x):
    """The transpose of a matrix (``x.t()``)."""
    return x.t()


def clone(x):
    return x.clone()


def squeeze(x, dim=None, *, axis=None):
    # layout (issue 11, item 5): NumPy's axis= as well (a tuple too); an axis whose size
    # is not 1 is left alone, as in PyTorch
    return x.squeeze(dim, axis=axis)


def unsqueeze(x, dim):
    return x.unsqueeze(dim)



# ---- function transforms (issue 11, item 11) ----
from fusegrad.tracer.transforms import grad, hessian, jvp, value_and_grad, vjp

# ---- data-parallel compile_grad on Dask (issue 14) ----
from fusegrad.tracer.distributed import dask_progress
