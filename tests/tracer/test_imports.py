"""The tracer's modules form layers: no import cycle, not even one hidden in a
function-local import (which is how such cycles are usually held together)."""
from __future__ import annotations

import ast
import pathlib

import fusegrad.tracer

TRACER = pathlib.Path(fusegrad.tracer.__file__).parent
PACKAGE = "fusegrad.tracer"


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The tracer modules `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            names = [a.name for a in node.names] if node.module == PACKAGE else [node.module[len(PACKAGE) + 1:]]
            found.update(n for n in names if n in modules)
        elif isinstance(node, ast.Import):
            found.update(a.name[len(PACKAGE) + 1:] for a in node.names
                         if a.name[len(PACKAGE) + 1:] in modules)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, or None (depth-first search)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_tracer_modules_have_no_import_cycle():
    modules = {p.stem for p in TRACER.glob("*.py") if p.stem != "__init__"}
    graph = {m: _imports(TRACER / f"{m}.py", modules) - {m} for m in modules}
    assert graph["tensor"] and graph["executor"]   # the walk sees the imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
