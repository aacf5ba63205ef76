"""Small helpers for writing readable generated source."""
from __future__ import annotations

import builtins
import contextlib
import keyword
import re
from typing import Iterator

from fusegrad.ir.graph import Graph, Value
from fusegrad.ir.printer import Names

# The generated code's own vocabulary. An IR value's name in the source is never one
# of these (SourceNames escapes it), so no graph and no argument name can shadow a
# module, a helper or a loop variable of the kernel:
# - the modules and helpers the kernel headers import (IR letters would reach `np` at
#   about the 380th value of a graph);
# - the loop and bookkeeping variables the templates declare;
# - i<k> and n<k>, the index and the size of domain axis k;
# - <IR name>_<suffix>, a buffer or accumulator derived from a value's name;
# - every Python keyword and builtin (the templates call range, min, max, abs).
# tests/codegen/test_cpu.py::test_generated_names_are_the_vocabulary parses emitted
# kernels and checks that every name they use is a value's or one of these.
MODULES = {"np", "math", "numba", "njit", "prange", "cuda", "scalar_math"}
TEMPLATE = {"chunk", "nchunks", "start", "stop", "base", "count", "lane", "point", "step",
            "BLOCK", "far", "first", "last", "finish"}
SUFFIXES = ("out", "acc", "part", "tree", "row", "red", "total", "scalar")
_AXIS = re.compile(r"[in]\d+")
_DERIVED = re.compile(r".+_(" + "|".join(SUFFIXES) + ")")


def is_generated(name: str) -> bool:
    """Whether the generated code may use `name` for itself."""
    return (name in MODULES or name in TEMPLATE or keyword.iskeyword(name)
            or hasattr(builtins, name) or bool(_AXIS.fullmatch(name))
            or bool(_DERIVED.fullmatch(name)))


class Writer:
    """Lines of code with an indentation level."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = "", comment: str | None = None) -> None:
        text = "    " * self.depth + text if text else ""
        if comment:
            text = f"{text.ljust(40)}  # {comment}"
        self.lines.append(text)

    @contextlib.contextmanager
    def block(self, header: str, comment: str | None = None) -> Iterator[None]:
        self.line(header, comment)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class SourceNames:
    """IR value names (as the dump prints them) as Python identifiers of the source:
    unchanged where that is safe; else escaped to `<name>_v` (`_v2`, ... if taken).
    The result is never `is_generated` and never another value's, whatever the
    user's argument names (two arguments may share a name; any may be `np`)."""

    def __init__(self, graph: Graph) -> None:
        self._ir = Names(graph)
        self._source: dict[Value, str] = {}
        self._taken: set[str] = set()
        # In the order the dump names values, so that a graph's names do not depend
        # on the order kernels ask for them.
        for value in graph.all_inputs:
            self(value)
        for node in graph.nodes:
            if node.primitive.name != "const":
                for value in node.outputs:
                    self(value)

    def ir(self, value: Value) -> str:
        return self._ir(value)

    def __call__(self, value: Value) -> str:
        name = self._source.get(value)
        if name is None:
            name = self._source[value] = self._fresh(self._ir(value))
            self._taken.add(name)
        return name

    def _fresh(self, name: str) -> str:
        if name.isidentifier() and name not in self._taken and not is_generated(name):
            return name
        base = re.sub(r"\W", "_", name)
        base = base if base[:1].isalpha() or base[:1] == "_" else "v" + base
        candidates = (f"{base}_v{k if k > 1 else ''}" for k in range(1, len(self._taken) + 2))
        return next(c for c in candidates if c not in self._taken and not is_generated(c))


# ---------------------------------------------------------------- issue 12: compile time

class KernelNames:
    """Names local to one kernel, `v0, v1, ...` in the order the kernel reads and
    computes values, for the code and its comments alike. Kernels that do the same
    work on the same shapes (each step of an unrolled loop, each layer of a model, a
    graph compiled again) then have the same text, hence one file and one Numba
    compilation for all of them; the dump shows the graph's names (`SourceNames`)."""

    def __init__(self, kernel) -> None:
        self._names: dict[Value, str] = {}
        for value in kernel.inputs:
            self(value)
        for node in kernel.nodes:
            for value in node.outputs:
                self(value)

    def __call__(self, value: Value) -> str:
        name = self._names.get(value)
        if name is None:
            name = self._names[value] = f"v{len(self._names)}"
        return name

    def ir(self, value: Value) -> str:
        return self(value)
