"""The kernel plan as text: which IR nodes went into which kernel, and why fusion
stopped where it did (the schedule, as Halide would call it)."""
from __future__ import annotations

from fusegrad.codegen.plan import FINAL, INNER, ROW, Kernel, LibraryCall, Plan
from fusegrad.codegen.source import SourceNames

_LEVEL_WORDS = {INNER: "per element", ROW: "per row", FINAL: "after the loop"}


def describe_plan(plan: Plan, names: SourceNames) -> str:
    kernels = sum(isinstance(s, Kernel) for s in plan.steps)
    mode = "fused" if plan.fused else "unfused (fuse=False)"
    lines = [f"# kernel plan: {kernels} kernel(s), "
             f"{len(plan.steps) - kernels} library call(s), {mode}"]
    for step in plan.steps:
        lines.extend(_describe_step(step, names))
    return "\n".join(lines)


def _describe_step(step, names: SourceNames) -> list[str]:
    ins = ", ".join(names.ir(v) for v in step.inputs) or "-"
    outs = ", ".join(names.ir(v) for v in step.outputs) or "-"
    if isinstance(step, LibraryCall):
        return [f"{step.name}: {names.ir(step.node.out)} = {step.node.primitive.name}"
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
