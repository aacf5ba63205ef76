"""The kernel plan as text: which IR nodes went into which kernel, and why fusion
stopped where it did (the schedule, as Halide would call it)."""
from __future__ import annotations

import re

from fusegrad.codegen.plan import FINAL, INNER, ROW, Kernel, LibraryCall, Plan
from fusegrad.codegen.source import SourceNames
from fusegrad.ir.printer import format_params

_LEVEL_WORDS = {INNER: "per element", ROW: "per row", FINAL: "after the loop"}


def describe_plan(plan: Plan, names: SourceNames) -> str:
    kernels = sum(isinstance(s, Kernel) for s in plan.steps)
    mode = "fused" if plan.fused else "unfused (fuse=False)"
    lines = [f"# kernel plan: {kernels} kernel(s), "
             f"{len(plan.steps) - kernels} library call(s), {mode}"]
    sized = {n.out: n for n in plan.graph.nodes if n.primitive.name == "const" and n.param("size")}
    for step in plan.steps:
        lines.extend(_describe_step(step, names))
        if isinstance(step, Kernel):
            lines.extend(_size_arguments(step, sized, names))
    return "\n".join(lines)


def _size_arguments(step: Kernel, sized: dict, names: SourceNames) -> list[str]:
    """The constants derived from shapes that the kernel reads as arguments (its
    source holds no size: a new batch size runs the same compiled kernel)."""
    found = [f"{names.ir(v)} = {sized[v].param('value')!r}" for v in step.inputs if v in sized]
    return [f"    size-derived arguments: {', '.join(found)}"] if found else []


def _describe_step(step, names: SourceNames) -> list[str]:
    ins = ", ".join(names.ir(v) for v in step.inputs) or "-"
    outs = ", ".join(names.ir(v) for v in step.outputs) or "-"
    if isinstance(step, LibraryCall):
        return [f"{step.name}: {outs} = {step.node.primitive.name}"
                f"({ins})  -- {step.reason}"]
    if step.domain:
        loops = (f"domain {'x'.join(map(str, step.domain))}, "
                 f"{step.outer_axes} outer axis(es) across threads")
    else:
        loops = "scalar, no loop"
    lines = [f"{step.name}: {loops}; reads {ins}; writes {outs}"]
    by_level: dict[str, list[str]] = {}
    for node in step.nodes:
        by_level.setdefault(step.levels[node.out], []).append(names.ir(node.out))
    for level in (INNER, ROW, FINAL):
        if level in by_level:
            lines.append(f"    {_LEVEL_WORDS[level]:>15}: {' '.join(by_level[level])}")
    for note in step.notes:
        lines.append(f"    fusion stopped: {note}")
    return lines


def split_source(source: str) -> tuple[str, dict[str, str]]:
    """A kernel file as (its header, {function name: its definition}). Definitions
    start at a top-level decorator, as the emitters write them."""
    chunks = re.split(r"^(?=@)", source, flags=re.MULTILINE)
    functions = {}
    for chunk in chunks[1:]:
        name = re.search(r"^def (\w+)\(", chunk, re.MULTILINE).group(1)
        functions[name] = chunk.rstrip("\n")
    return chunks[0].rstrip("\n"), functions


def annotate(definition: str, kernel: Kernel, names: SourceNames) -> str:
    """`definition` with each statement's IR comment as the IR dump spells the line:
    the primitive's parameters, and the user's source line after it, aligned."""
    nodes = {names.ir(n.out): n for n in kernel.nodes}
    rows = []
    for line in definition.splitlines():
        code, mark, comment = line.partition("  # ")
        pieces = [_ir_piece(piece, nodes) for piece in comment.split("; ")] if mark else []
        if not mark or None in pieces:
            rows.append((line, None))
            continue
        sources = list(dict.fromkeys(n.source for _, n in pieces if n.source))
        rows.append((f"{code}  # {'; '.join(text for text, _ in pieces)}", ", ".join(sources)))
    width = max((len(text) for text, source in rows if source), default=0)
    return "\n".join(f"{text.ljust(width)}  # {source}" if source else text
                     for text, source in rows)


def _ir_piece(comment: str, nodes: dict):
    """(the comment with the node's parameters, the node), or None where `comment`
    is not an IR line of this kernel."""
    name, eq, rest = comment.partition(" = ")
    node = nodes.get(name)
    primitive, _, operands = rest.partition(" ")
    if not eq or node is None or node.primitive.name != primitive:
        return None
    return f"{name} = {primitive}{format_params(node)} {operands}".rstrip(), node
