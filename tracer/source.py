"""Finding the user's line of code that called into fusegrad."""
from __future__ import annotations

import functools
import os
import sys


@functools.cache
def _own_dirs() -> tuple[str, ...]:
    """The directories of fusegrad's packages (the layout maps several)."""
    import fusegrad
    from fusegrad import codegen, ir, runtime, tracer
    return tuple(os.path.dirname(os.path.abspath(module.__file__)) + os.sep
                 for module in (fusegrad, ir, codegen, runtime, tracer))


def user_line() -> str | None:
    """'file.py:LINE' of the innermost frame outside fusegrad, or None."""
    own = _own_dirs()
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(own) and not filename.startswith("<frozen"):
            return f"{os.path.basename(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def function_location(fn) -> str:
    """'name (file.py:LINE)' of a function, for messages; its repr if it has no code."""
    try:
        code = fn.__code__
        return f"{fn.__name__} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"
    except AttributeError:
        return repr(fn)
