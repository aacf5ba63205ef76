"""Print a graph like a program (a jaxpr): stable names, one line per node."""
from __future__ import annotations

import itertools
import string
from typing import Any, Iterator

import numpy as np

from fusegrad.ir.graph import Graph, Node, Value, dtype_str
from fusegrad.ir.loops import Body


def _letters() -> Iterator[str]:
    for length in itertools.count(1):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            yield "".join(letters)


class Names:
    """Arguments keep the user's names; other values get letters in order of first use."""

    def __init__(self, graph: Graph) -> None:
        self._names: dict[Value, str] = {}
        taken = {v.name for v in graph.all_inputs if v.name}
        self._fresh = (name for name in _letters() if name not in taken)
        for value in graph.all_inputs:
            self._names[value] = value.name or next(self._fresh)
        # Named in program order up front, so that the dump and the generated kernels,
        # which visit values in different orders, agree on every name.
        for node in graph.nodes:
            if node.primitive.name != "const":
                for value in node.outputs:
                    self._names[value] = next(self._fresh)

    def __call__(self, value: Value) -> str:
        name = self._names.get(value)
        if name is None:
            name = self._names[value] = next(self._fresh)
        return name


def format_param(value: Any) -> str:
    if isinstance(value, np.dtype):
        return dtype_str(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(map(format_param, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def format_params(node: Node) -> str:
    # A loop's body is printed as a program of its own, under the node.
    shown = [f"{k}={format_param(v)}" for k, v in node.params if not isinstance(v, Body)]
    return f"[{', '.join(shown)}]" if shown else ""


def const_text(node: Node) -> str:
    value = node.param("value")
    return f"{value!r}:{dtype_str(node.param('dtype'))}"


def pretty(graph: Graph, title: str | None = None, mark_from: int | None = None) -> str:
    """The graph as a program. `mark_from`: index of the first backward node, where a
    `# backward` comment goes."""
    names = Names(graph)
    producers = graph.producers()

    def operand(value: Value) -> str:
        node = producers.get(value)
        if node is not None and node.primitive.name == "const":
            return const_text(node)
        return names(value)

    def typed(value: Value) -> str:
        return f"{names(value)}:{value.type_str}"

    rows = []
    for index, node in enumerate(graph.nodes):
        if mark_from is not None and index >= mark_from:
            rows.append(("", "# backward", None))
            mark_from = None
        if node.primitive.name == "const" and not set(node.outputs) & set(graph.outputs):
            continue  # constants print inline where they are used
        lhs = " ".join(typed(v) for v in node.outputs)
        if node.primitive.name == "const":  # an output that is a constant
            rhs = f"const {const_text(node)}"
        else:
            args = " ".join(operand(v) for v in node.inputs)
            rhs = f"{node.primitive.name}{format_params(node)} {args}".rstrip()
        rows.append((lhs, rhs, node.source))
        rows.extend(_body_rows(node))
    return _layout(graph, rows, typed, names, title)


def _body_rows(node: Node) -> list[tuple[str, str, None]]:
    """A scan's body graph, indented under the node (as comment rows)."""
    rows = []
    for key, value in node.params:
        if isinstance(value, Body):
            rows.extend(("", "    " + line, None) for line in pretty(value.graph).splitlines())
    return rows


LONG_LHS, LONG_ROW = 40, 90


def _layout(graph, rows, typed, names, title) -> str:
    head = " ".join(typed(v) for v in graph.all_inputs)
    nodes = [row for row in rows if row[0]]
    # A scan's many outputs make a long left side: it overflows rather than pushing
    # every other row of the program to the right.
    nodes = [row for row in nodes if len(row[0]) <= LONG_LHS] or nodes
    lhs_width = max((len(lhs) for lhs, _, _ in nodes), default=0)
    widths = [len(lhs_width * " " + " = " + rhs) for _, rhs, _ in nodes]
    body_width = max([w for w in widths if w <= LONG_ROW] or widths, default=0)
    lines = [f"{{ lambda {head} ."]
    keyword = "let "  # on the first node row, which a comment row may precede
    for lhs, rhs, source in rows:
        if not lhs:  # a comment row
            lines.append(f"      {rhs}")
            continue
        text = f"{keyword}{lhs.ljust(lhs_width)} = {rhs}"
        keyword = "    "
        if source:
            text = text.ljust(body_width + 4) + f"  # {source}"
        lines.append("  " + text.rstrip())
    lines.append(f"  in ({', '.join(names(v) for v in graph.outputs)}) }}")
    if title:
        lines.insert(0, f"# {title}")
    return "\n".join(lines)
