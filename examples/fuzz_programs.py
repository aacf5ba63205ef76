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
    return _namespace(
        fg, sigmoid=fg.sigmoid, relu=fg.relu, logsumexp=fg.logsumexp, softmax=fg.softmax,
        permute=lambda x, perm: fg.permute(x, *perm), clip=lambda x, lo, hi: x.clamp(lo, hi),
        eq=fg.eq, ne=fg.ne)


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
