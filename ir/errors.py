"""The exceptions fusegrad raises for bad programs and bad input.

Each also subclasses the built-in exception the ecosystem catches for the same
problem (issue 11, item 14), so code written for NumPy, JAX or PyTorch that guards a
call with ``except ValueError`` / ``TypeError`` / ``RuntimeError`` still catches it.
"""
from __future__ import annotations

import re
from typing import Callable


class FusegradError(Exception):
    """Base class of every error fusegrad raises on purpose.

    A message that does not yet say where gets the user's line appended (the
    innermost frame outside fusegrad), so that every error names the line of the
    program it is about, wherever in fusegrad it was raised.
    """

    # The front-end sets this to its frame walker (tracer/source.py: user_line);
    # the IR layer does not know which files are the user's.
    locate: Callable[[], str | None] = staticmethod(lambda: None)

    def __init__(self, *args: object) -> None:
        # The message without the appended line, for an error that wraps this one.
        self.bare = str(args[0]) if len(args) == 1 else str(args)
        if len(args) == 1 and isinstance(args[0], str) and not _says_where(args[0]):
            line = FusegradError.locate()
            if line is not None and line not in args[0]:
                args = (f"{args[0]}\n  at {line}",)
        super().__init__(*args)


def bare(error: BaseException) -> str:
    """An error's message without the line fusegrad appended (for a wrapping error)."""
    return getattr(error, "bare", str(error))


def _says_where(message: str) -> bool:
    # "traced at f.py:3", "\n  at f.py:3", "loss (f.py:3) must return ...".
    return re.search(r"traced at |\n  at |\.py:\d+", message) is not None


class ShapeError(FusegradError, ValueError, RuntimeError):
    """Shapes that do not fit the operation (broadcasting, matmul, reshape, axes).

    A ValueError, as NumPy's and JAX's shape errors are, and a RuntimeError, as
    PyTorch's are (``x.mv(matrix)``, ``a + b`` that does not broadcast): programs
    written for either library catch it.
    """


class DTypeError(FusegradError, TypeError):
    """A dtype the operation does not accept (integers where floats are needed, ...)."""


class TraceError(FusegradError, TypeError):
    """The function cannot be traced into a static graph: Python control flow or a
    conversion (``if x > 0``, ``float(x)``, ``x.numpy()``) needs an array value that
    only exists when the compiled function runs.

    A TypeError, as JAX's ConcretizationTypeError and TracerBoolConversionError are
    for the same program under ``jax.jit`` / ``jax.grad``: `compile_grad` traces as
    they do, so that is what its users already catch.
    """


class UnsupportedError(FusegradError, NotImplementedError):
    """A spelling fusegrad accepts by name only to refuse it (``out=``, ``generator=``,
    assignment into a tensor that requires grad): a NotImplementedError, hence a
    RuntimeError, as PyTorch's errors for what it does not implement."""


def located(message: str, source: str | None) -> str:
    return f"{message}\n  traced at {source}" if source else message


class BoundsError(FusegradError, IndexError, RuntimeError):
    """An index array holds an index outside its axis, found when the compiled function
    runs (issue 11, item 2). An IndexError, as NumPy's (``x[idx]``, ``np.take``), and a
    RuntimeError, as PyTorch's (``gather``: "index out of bounds")."""
