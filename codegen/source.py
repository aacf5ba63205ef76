"""Small helpers for writing readable generated source."""
from __future__ import annotations

import contextlib
import keyword
from typing import Iterator

from fusegrad.ir.graph import Graph, Value
from fusegrad.ir.printer import Names

# Names the generated code uses for itself; IR names that clash get a suffix.
RESERVED = {"np", "math", "numba", "njit", "prange", "cuda", "chunk", "nchunks", "start", "stop",
            "total", "range", "abs", "max", "min", "point", "lane", "step", "BLOCK", "base", "end"}
SUFFIXES = ("_out", "_acc", "_part", "_tree", "_row", "_red")


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
    """IR value names (as the dump prints them), made safe as Python identifiers."""

    def __init__(self, graph: Graph) -> None:
        self._ir = Names(graph)

    def ir(self, value: Value) -> str:
        return self._ir(value)

    def __call__(self, value: Value) -> str:
        name = self._ir(value)
        if (keyword.iskeyword(name) or name in RESERVED or name.endswith(SUFFIXES)
                or not name.isidentifier() or name[0] in "in" and name[1:].isdigit()):
            name += "_v"
        return name
