"""Random array programs for the differential fuzzer (`examples/fuzz.py`).

A program is a list of statements over named values, seeded and reproducible. It
renders as the text of one Python function of a namespace `xp`, and the same text
runs with fusegrad (`FG`), NumPy (`NP`) and HIPS autograd.numpy (`ANP`): the three
namespaces below spell the few functions NumPy lacks (sigmoid, relu, logsumexp,
softmax, permute) and PyTorch spells differently (clip, eq, ne).

`fuzz_generator.py` writes the programs.
"""
from __future__ import annotations

import contextlib
import types
import warnings
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

FLOATS = ("float32", "float64")


# ---------------------------------------------------------------- the three namespaces

def _namespace(module, **extra) -> types.SimpleNamespace:
    names = ("tanh", "exp", "log", "sin", "cos", "sqrt", "abs", "sign", "maximum", "minimum",
             "where", "broadcast_to", "argmax", "argmin")
    return types.SimpleNamespace(**{n: getattr(module, n) for n in names}, **extra)


def _numpy_namespace(xp) -> types.SimpleNamespace:
    def logsumexp(x, axis=None, keepdims=False):
        shift = xp.max(x, axis=axis, keepdims=True)
        total = xp.log(xp.sum(xp.exp(x - shift), axis=axis, keepdims=True)) + shift
        return total if keepdims else xp.squeeze(total, axis=axis)

    def softmax(x, axis=-1):
        e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
        return e / xp.sum(e, axis=axis, keepdims=True)

    return _namespace(
        # exp(-log(1 + exp(-x))): no overflow, and no underflow to 0 far below 1e-38.
        xp, sigmoid=lambda x: xp.exp(-xp.logaddexp(0, -x)), relu=lambda x: xp.where(x > 0, x, 0),
        logsumexp=logsumexp, softmax=softmax, permute=lambda x, perm: xp.transpose(x, perm),
        clip=xp.clip, eq=xp.equal, ne=xp.not_equal)


def fusegrad_namespace() -> types.SimpleNamespace:
    import fusegrad as fg
    namespace = _namespace(
        fg, sigmoid=fg.sigmoid, relu=fg.relu, logsumexp=fg.logsumexp, softmax=fg.softmax,
        permute=lambda x, perm: fg.permute(x, *perm), clip=lambda x, lo, hi: x.clamp(lo, hi),
        eq=fg.eq, ne=fg.ne)
    _issue11_fusegrad(namespace)
    return namespace


NP = _numpy_namespace(np)


def autograd_namespace() -> types.SimpleNamespace:
    import autograd.numpy as anp
    _dense_indexing_gradients()

    def broadcast_to(x, shape):
        # autograd's own gradient of broadcast_to cannot add leading axes.
        return anp.broadcast_to(anp.reshape(x, (1,) * (len(shape) - anp.ndim(x)) + anp.shape(x)),
                                shape)

    def where(cond, a, b):
        # Nor can its gradient of where sum a branch over axes only the condition has.
        shape = np.broadcast_shapes(anp.shape(cond), anp.shape(a), anp.shape(b))
        a, b = (x if isinstance(x, (int, float)) else broadcast_to(x, shape) for x in (a, b))
        return anp.where(cond, a, b)

    def clip(x, low, high):
        # PyTorch's clamp (and fusegrad's) passes the gradient at the bounds; autograd's
        # clip does not. The bounds are reached exactly when a clipped value is clipped.
        return anp.where((x >= low) & (x <= high), x, anp.clip(x, low, high))

    namespace = _numpy_namespace(anp)
    namespace.broadcast_to, namespace.where, namespace.clip = broadcast_to, where, clip
    _issue11_autograd(namespace)
    return namespace


def _dense_indexing_gradients() -> None:
    """autograd adds the gradient of `x[index]` sparsely, with np.add.at, which fails
    ("first operand must be array") when the other term is a NumPy scalar, as the
    gradient of a 0-d value can be. The same sum, into a fresh dense array, is the same
    gradient (for any index, repeated elements included)."""
    from autograd.extend import defvjp, primitive
    from autograd.numpy.numpy_boxes import ArrayBox
    from autograd.util import func

    @primitive
    def scatter(g, index, shape, dtype):
        out = np.zeros(shape, dtype)
        np.add.at(out, index, g)
        return out

    defvjp(scatter, lambda ans, g, index, shape, dtype: lambda h: h[index])
    defvjp(func(ArrayBox.__getitem__),
           lambda ans, x, index: lambda g: scatter(g, index, np.shape(x), np.result_type(x)))


# ---------------------------------------------------------------- programs

@dataclass(frozen=True)
class Stmt:
    out: str
    expr: str                 # the right-hand side, operands already named
    args: tuple[str, ...]     # the values it reads
    op: str                   # a label for statistics ("tanh", "sum", "matmul", ...)
    dtype: str                # of the value, as NumPy computes it


@dataclass
class Program:
    seed: int
    inputs: dict[str, np.ndarray]            # name -> array, in argument order
    stmts: list[Stmt]
    terms: list[str]                         # values summed into the loss, each weighted
    weights: list[np.ndarray]
    float_dtype: str
    threaded: bool = False                   # kernels run their threaded variant

    def text(self) -> str:
        lines = [f"def program(xp, W, {', '.join(self.inputs)}):"]
        lines += [f"    {s.out} = {s.expr}" for s in self.stmts]
        loss = " + ".join(f"({self._term(name)} * W[{k}]).sum()"
                          for k, name in enumerate(self.terms))
        lines.append(f"    return {loss or '0.0'}")
        return "\n".join(lines) + "\n"

    def _term(self, name: str) -> str:
        dtype = self.dtype_of(name)
        return name if dtype in FLOATS else f"{name}.astype('{self.float_dtype}')"

    def dtype_of(self, name: str) -> str:
        if name in self.inputs:
            return str(self.inputs[name].dtype)
        return next(s.dtype for s in self.stmts if s.out == name)

    def function(self) -> Callable:
        """program(xp, W, *inputs), compiled from the text (so tracebacks show it)."""
        namespace: dict = {}
        exec(compile(self.text(), f"<fuzz program {self.seed}>", "exec"), namespace)
        return namespace["program"]

    @property
    def float_inputs(self) -> list[str]:
        return [n for n, a in self.inputs.items() if a.dtype.kind == "f"]

    def dead_code_eliminated(self) -> "Program":
        live = set(self.terms)
        kept = []
        for stmt in reversed(self.stmts):
            if stmt.out in live:
                kept.append(stmt)
                live.update(stmt.args)
        inputs = {n: a for n, a in self.inputs.items() if n in live}
        return replace(self, stmts=kept[::-1], inputs=inputs)


@contextlib.contextmanager
def quiet():
    """NumPy's warnings off (overflow in a value the generator then drops, means of
    empty slices): they are expected here, and checked for by value."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def evaluate(program: Program, xp=NP) -> dict[str, np.ndarray]:
    """Every value of `program` (inputs and statements), computed with `xp`."""
    env = dict(program.inputs)
    with quiet():
        for stmt in program.stmts:
            env[stmt.out] = np.asarray(eval(stmt.expr, {"xp": xp}, env))
    return env


# ---------------------------------------------------------------- issue 11's ops in the namespaces
# NumPy spellings where NumPy has the op; where it has none (at[].set/add, gelu, erf,
# log_softmax) a NumPy formula. autograd lacks some VJPs (flip, cumprod,
# take_along_axis) or has a different one (prod divides by x: NaN at 0; diag of a
# non-square matrix): those are written here with ops whose VJPs it has.

def _erf_numpy(x):
    import math
    return np.vectorize(math.erf, otypes=[np.result_type(x, np.float32)])(x)


def _at_numpy(x, index, value, mode):
    out = np.array(x, dtype=np.result_type(x, value), copy=True)
    if mode == "set":
        out[index] = value
    else:
        np.add.at(out, index, value)
    return out


def _issue11_common(ns, xp) -> None:
    """The spellings the NumPy and autograd namespaces share."""
    ns.log1p, ns.expm1, ns.swapaxes, ns.moveaxis = xp.log1p, xp.expm1, xp.swapaxes, xp.moveaxis
    ns.einsum, ns.cumsum, ns.std, ns.tril, ns.triu = xp.einsum, xp.cumsum, xp.std, xp.tril, xp.triu
    ns.outer, ns.concatenate, ns.stack, ns.repeat = xp.outer, xp.concatenate, xp.stack, xp.repeat
    ns.tile, ns.arange, ns.any, ns.all = xp.tile, np.arange, xp.any, xp.all
    ns.matmul, ns.floor_divide = xp.matmul, xp.floor_divide
    ns.norm = lambda x, axis=None: xp.linalg.norm(x, axis=axis)
    ns.gelu = lambda x: 0.5 * x * (1 + ns.erf(x * np.sqrt(0.5)))
    ns.gelu_tanh = lambda x: 0.5 * x * (1 + xp.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    def log_softmax(x, axis=-1):
        shifted = x - xp.max(x, axis=axis, keepdims=True)
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
    ns.log_softmax = log_softmax


def _issue11_numpy(ns) -> None:
    _issue11_common(ns, np)
    ns.erf, ns.flip, ns.cumprod, ns.prod = _erf_numpy, np.flip, np.cumprod, np.prod
    ns.take_along_axis, ns.diag, ns.trace, ns.split = np.take_along_axis, np.diag, np.trace, np.split
    ns.pad = np.pad
    ns.at_set = lambda x, index, value: _at_numpy(x, index, value, "set")
    ns.at_add = lambda x, index, value: _at_numpy(x, index, value, "add")


_issue11_numpy(NP)


def _issue11_fusegrad(ns) -> None:
    import fusegrad as fg
    for name in ("log1p", "expm1", "swapaxes", "moveaxis", "einsum", "cumsum", "cumprod", "prod",
                 "std", "tril", "triu", "outer", "concatenate", "stack", "repeat", "tile",
                 "arange", "any", "all", "erf", "flip", "take_along_axis", "diag", "trace",
                 "split", "pad", "log_softmax", "matmul", "floor_divide"):
        setattr(ns, name, getattr(fg, name))
    ns.norm = lambda x, axis=None: fg.linalg.norm(x, axis=axis)
    ns.gelu = fg.gelu
    ns.gelu_tanh = lambda x: fg.gelu(x, approximate="tanh")
    ns.at_set = lambda x, index, value: x.at[index].set(value)
    ns.at_add = lambda x, index, value: x.at[index].add(value)


def _issue11_autograd(ns) -> None:
    import math

    import autograd.numpy as anp
    from autograd.extend import defvjp, primitive
    from autograd.tracer import getval
    _issue11_common(ns, anp)

    @primitive
    def erf(x):
        return _erf_numpy(x)
    defvjp(erf, lambda y, x: lambda g: g * 2 / math.sqrt(math.pi) * anp.exp(-x * x))

    @primitive
    def scatter_add(g, index, shape, dtype):   # zeros with g added at index (np.add.at)
        out = np.zeros(shape, dtype)
        np.add.at(out, index, g)
        return out
    defvjp(scatter_add, lambda ans, g, index, shape, dtype: lambda h: h[index])

    def flip(x, axis=None):
        axes = range(anp.ndim(x)) if axis is None else [axis % anp.ndim(x)]
        return x[tuple(slice(None, None, -1) if d in axes else slice(None)
                       for d in range(anp.ndim(x)))]

    def along(x, axis):   # the slices of x along axis (an int, or None: flattened)
        x = anp.reshape(x, (-1,)) if axis is None else anp.moveaxis(x, axis, 0)
        return x, [x[k] for k in range(anp.shape(x)[0])]

    def cumprod(x, axis=None):
        moved, parts = along(x, axis)
        running = [parts[0]] if parts else []
        for part in parts[1:]:
            running.append(running[-1] * part)
        out = anp.stack(running, 0) if running else moved
        return out if axis is None else anp.moveaxis(out, 0, axis)

    def prod(x, axis=None):
        moved, parts = along(x, axis)
        out = anp.ones(anp.shape(moved)[1:], anp.result_type(x)) if not parts else parts[0]
        for part in parts[1:]:
            out = out * part
        return out

    def take_along_axis(x, indices, axis):
        # x and indices broadcast against each other except along axis, as NumPy's.
        ndim, axis = anp.ndim(x), axis % anp.ndim(x)
        shape = [np.shape(indices)[d] if d == axis else max(anp.shape(x)[d], np.shape(indices)[d])
                 for d in range(ndim)]
        index = [np.broadcast_to(indices, shape) if d == axis else np.broadcast_to(
            (np.arange(shape[d]) if anp.shape(x)[d] > 1 else np.zeros(shape[d], int)).reshape(
                [-1 if e == d else 1 for e in range(ndim)]), shape) for d in range(ndim)]
        return x[tuple(index)]

    def diag(x, k=0):
        if anp.ndim(x) == 1:
            return anp.diag(x, k)
        rows = np.arange(max(0, -k), min(anp.shape(x)[0], anp.shape(x)[1] - k))
        return x[rows, rows + k]

    def split(x, sections, axis):
        n = anp.shape(x)[axis]
        bounds = list(range(0, n, n // sections))[1:] if isinstance(sections, int) else sections
        edges = [0, *bounds, n]
        return [x[(slice(None),) * (axis % anp.ndim(x)) + (slice(a, max(a, b)),)]
                for a, b in zip(edges, edges[1:])]

    def at(x, index, value, mode):
        shape, dtype = anp.shape(x), np.result_type(x, value)
        target = np.shape(np.zeros(shape)[index])
        placed = scatter_add(ns.broadcast_to(value, target) if anp.ndim(value) else
                             value * anp.ones(target, dtype), index, shape, dtype)
        if mode == "add":
            return x + placed
        mask = scatter_add(np.ones(target), index, shape, np.float64) > 0
        return anp.where(mask, placed, x)

    ns.erf, ns.flip, ns.cumprod, ns.prod, ns.take_along_axis = erf, flip, cumprod, prod, take_along_axis
    ns.diag, ns.split = diag, split

    def tile(x, reps):
        # autograd's gradient of tile is wrong when reps and x differ in length.
        reps = (1,) * (anp.ndim(x) - len(reps)) + tuple(reps)
        return anp.tile(anp.reshape(x, (1,) * (len(reps) - anp.ndim(x)) + anp.shape(x)), reps)

    def concatenate(xs, axis=0):   # autograd's has no axis=None (flattened)
        if axis is None:
            return anp.concatenate([anp.reshape(x, (-1,)) for x in xs], 0)
        return anp.concatenate(xs, axis)
    ns.tile, ns.concatenate = tile, concatenate
    # autograd's gradient of repeat is wrong for a negative axis.
    ns.repeat = lambda x, repeats, axis=None: anp.repeat(
        x, repeats, axis if axis is None else axis % anp.ndim(x))

    def matmul(a, b):
        # autograd's gradient of matmul "can't handle extra leading dims" (broadcast batch
        # dimensions): broadcast them first; vectors as matrices, squeezed after.
        a2 = anp.reshape(a, (1,) + anp.shape(a)) if anp.ndim(a) == 1 else a
        b2 = anp.reshape(b, anp.shape(b) + (1,)) if anp.ndim(b) == 1 else b
        batch = np.broadcast_shapes(anp.shape(a2)[:-2], anp.shape(b2)[:-2])
        out = anp.matmul(ns.broadcast_to(a2, batch + anp.shape(a2)[-2:]),
                         ns.broadcast_to(b2, batch + anp.shape(b2)[-2:]))
        if anp.ndim(b) == 1:
            out = out[..., 0]
        return out[..., 0, :] if anp.ndim(a) == 1 else out
    ns.matmul = matmul
    # The quotient's gradient is 0: computed by NumPy, out of autograd's sight.
    ns.floor_divide = lambda a, b: np.floor_divide(getval(a), getval(b))
    ns.trace = lambda x: anp.sum(diag(x))
    ns.pad = lambda x, width: anp.pad(x, width, "constant")
    ns.at_set = lambda x, index, value: at(x, index, value, "set")
    ns.at_add = lambda x, index, value: at(x, index, value, "add")
