"""Differential fuzzing of fusegrad over large random programs.

    FUSEGRAD_CACHE_DIR=/tmp/fgcache python examples/fuzz.py --time 600 --size 120

Each seed makes a random program of a few hundred IR values (`fuzz_programs.py`) and
checks fusegrad's answer against independent oracles:

- NumPy running the same program text (the value),
- HIPS autograd running it (value and gradients: an independent differentiation),
- fusegrad's NumPy interpreter on the joint graph before and after optimisation
  (which separates the VJP rules from the optimizer),
- the fused kernels, and (every `--unfused-every` graphs) the `fuse=False` kernels,
  against the interpreter of the same graph, called twice,
- the eager API (the same program on tensors that require grad, and backward()).

A failing program is minimized (loss terms first, then statements are cut into new
inputs holding the values they had) and written to `--out` as a runnable reproducer.
The summary table counts graphs, values per graph and findings by kind.
"""
from __future__ import annotations

import argparse
import functools
import re
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_generator as gen  # noqa: E402
import fuzz_programs as fp  # noqa: E402

# rtol = atol (relative to the largest expected magnitude) per comparison and dtype:
# oracles compute in another order (and float32 programs run hundreds of roundings
# deep); the fused kernels and the interpreter run the same graph.
TOLERANCE = {("oracle", "float32"): 2e-3, ("oracle", "float64"): 1e-8,
             ("graph", "float32"): 5e-4, ("graph", "float64"): 1e-9}


@dataclass
class Finding:
    kind: str       # which comparison failed, or "crash"
    detail: str

    @property
    def signature(self) -> str:
        """Findings with one signature are assumed to be one defect (and minimized once)."""
        if self.kind.startswith("crash"):
            first = self.detail.splitlines()[0]
            return f"{self.kind}: " + re.sub(r"\d+|'[^']*'|\([^)]*\)", "_", first)[:120]
        return self.kind


# ---------------------------------------------------------------- running the program

def inputs_of(program: fp.Program) -> list[np.ndarray]:
    return list(program.inputs.values())


def numpy_value(program: fp.Program) -> np.ndarray:
    with fp.quiet():
        return np.asarray(program.function()(fp.NP, program.weights, *inputs_of(program)))


def autograd_results(program: fp.Program) -> list[np.ndarray]:
    import autograd
    f, names = program.function(), list(program.inputs)
    floats = program.float_inputs

    def loss(xs):
        given = dict(zip(floats, xs))
        args = [given.get(n, program.inputs[n]) for n in names]
        return f(ANP, program.weights, *args)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        value, grads = autograd.value_and_grad(loss)([program.inputs[n] for n in floats])
    return [np.asarray(value), *map(np.asarray, grads)]


def eager_results(program: fp.Program) -> list[np.ndarray]:
    """[value, *grads] from the eager, PyTorch-style API: leaves that require grad, and
    backward() (the same program, run op by op)."""
    import fusegrad as fg
    leaves = {n: fg.tensor(a, requires_grad=a.dtype.kind == "f") for n, a in program.inputs.items()}
    loss = program.function()(FG, program.weights, *leaves.values())
    if loss.requires_grad:   # else backward() refuses, as in PyTorch: the gradients are 0
        loss.backward()
    grads = [leaves[n].grad for n in program.float_inputs]
    return [loss.detach().numpy(), *(np.zeros_like(program.inputs[n]) if g is None else g.numpy()
                                     for n, g in zip(program.float_inputs, grads))]


def compiled(program: fp.Program, fuse: bool):
    import fusegrad as fg
    from fusegrad.runtime import executable
    # Read when the kernels are chosen, at the trace.
    executable.PARALLEL_MIN_SIZE = 0 if program.threaded else DEFAULT_PARALLEL_MIN_SIZE
    # A partial keeps the argument names (x0, i1, ...) for the dump and errors.
    return fg.compile_grad(functools.partial(program.function(), FG, program.weights), fuse=fuse)


def flatten(result) -> list[np.ndarray]:
    value, grads = result
    return [np.asarray(value), *map(np.asarray, grads)]


def interpreted(f, program: fp.Program) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """[value, *grads] from the interpreter, after and before optimisation."""
    from fusegrad import ir
    args = inputs_of(program)
    traced = f.trace(*args)
    arrays = f.leaves(*args)
    raw = ir.vjp_graph(traced.forward, list(traced.wrt_leaves))
    return ir.evaluate(traced.joint, arrays), ir.evaluate(raw, arrays)


# ---------------------------------------------------------------- comparing

def error(actual: np.ndarray, expected: np.ndarray, tol: float) -> tuple[float, str]:
    """max |a - e| / (tol * (|e| + scale)), with scale the largest finite |e| (at least 1),
    so a result above 1 is a mismatch; and the worst element, for the report."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return np.inf, f"shape {actual.shape} != {expected.shape}"
    if not actual.size:
        return 0.0, ""
    finite = expected[np.isfinite(expected)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    with np.errstate(all="ignore"):
        ratio = np.abs(actual - expected) / (tol * (np.abs(expected) + scale))
    ratio = np.where(np.isnan(actual) & np.isnan(expected), 0.0, ratio)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    return float(ratio[worst]), (f"at {tuple(int(i) for i in worst)}: {actual[worst]!r} "
                                 f"expected {expected[worst]!r}")


def compare(kind: str, actual, expected, program, level: str, stats) -> list[Finding]:
    """Element by element, [value, *grads] against [value, *grads]."""
    dtypes = {str(a.dtype) for a in inputs_of(program)} | {s.dtype for s in program.stmts}
    dtype = "float32" if "float32" in dtypes else "float64"
    tol = TOLERANCE[(level, dtype)]
    labels = ["value"] + [f"d/d{n}" for n in program.float_inputs]
    findings = []
    for label, a, e in zip(labels, actual, expected):
        ratio, where = error(a, e, tol)
        if ratio > 1:
            findings.append(Finding(kind, f"{label} {where} (error {ratio:.3g} x tolerance {tol:g})"))
        elif stats is not None:
            stats[f"{kind} worst passing error / tolerance"] = max(
                stats.get(f"{kind} worst passing error / tolerance", 0.0), ratio)
    if len(actual) < len(expected):
        findings.append(Finding(kind, f"{len(actual)} results, expected {len(expected)}"))
    return findings


def crash(stage: str, error: BaseException) -> Finding:
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    return Finding(f"crash ({stage})", text)


def check(program: fp.Program, stages: frozenset, stats: dict | None = None) -> list[Finding]:
    """Run the stages named in `stages` ("ir", "fused", "unfused") against the oracles."""
    if stats is not None:
        stats["values"] = stats["joint values"] = 0
    expected_value = numpy_value(program)
    try:
        expected = autograd_results(program)
    except Exception:  # noqa: BLE001  (autograd cannot differentiate reductions of empty arrays)
        expected = [expected_value]   # the value alone: gradients are checked graph to graph
        if stats is not None:
            stats["graphs autograd could not differentiate"] = stats.get(
                "graphs autograd could not differentiate", 0) + 1
    if not all(np.isfinite(e).all() for e in expected):
        return [Finding("skipped: the oracle is not finite", "")]
    findings = compare("autograd-vs-numpy (oracles)", expected[:1], [expected_value], program,
                       "oracle", None)
    try:
        f = compiled(program, fuse=True)
        optimized, raw = interpreted(f, program)
    except Exception as e:  # noqa: BLE001  (any exception is a finding)
        return findings + [crash("trace", e)]
    if stats is not None:
        stats["values"] = len(f.trace(*inputs_of(program)).forward.nodes)
        stats["joint values"] = len(f.trace(*inputs_of(program)).joint.nodes)
    wrong = compare("interpreter-vs-oracle (tracer, VJP rules)", raw, expected, program,
                    "oracle", stats)
    findings += wrong
    if not wrong:
        findings += compare("optimized-vs-unoptimized (optimizer)", optimized, raw, program,
                            "graph", stats)
    if "eager" in stages:
        try:
            findings += compare("eager-vs-oracle (eager API)", eager_results(program), expected,
                                program, "oracle", stats)
        except Exception as e:  # noqa: BLE001
            findings.append(crash("eager", e))
    for stage, fuse in (("fused", True), ("unfused", False)):
        if stage in stages:
            findings += run_kernels(stage, f if fuse else compiled(program, fuse=False),
                                    program, optimized, expected_value, stats)
    return findings


def run_kernels(stage: str, f, program: fp.Program, optimized, expected_value,
                stats) -> list[Finding]:
    """Two calls: the second runs cached kernels on pooled buffers, and must neither
    differ nor change what the first returned."""
    try:
        first = flatten(f(*inputs_of(program)))
        kept = [a.copy() for a in first]
        second = flatten(f(*inputs_of(program)))
    except Exception as e:  # noqa: BLE001
        return [crash(stage, e)]
    findings = compare(f"{stage}-vs-interpreter (codegen)", first, optimized, program,
                       "graph", stats)
    findings += check_types(stage, first, expected_value, program)
    if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(kept, first)):
        findings.append(Finding(f"{stage}: a second call changed the first call's results", ""))
    if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(kept, second)):
        findings.append(Finding(f"{stage}: a second call gave other results", ""))
    return findings


def check_types(stage: str, results, expected_value, program) -> list[Finding]:
    want = [expected_value.dtype] + [program.inputs[n].dtype for n in program.float_inputs]
    got = [r.dtype for r in results]
    if got != want:
        return [Finding(f"dtype ({stage})", f"results {got}, expected {want}")]
    return []


# ---------------------------------------------------------------- minimizing

def minimize(program: fp.Program, finding: Finding, stages: frozenset, budget: float) -> fp.Program:
    """A smaller program with a finding of the same signature (greedy, within `budget` s)."""
    deadline = time.monotonic() + budget
    # Compile only what shows the finding: interpreter findings need no kernels at all.
    stages = frozenset(s for s in stages if s in finding.kind)

    def fails(candidate: fp.Program) -> bool:
        if time.monotonic() > deadline:
            return False
        try:
            return any(f.signature == finding.signature for f in check(candidate, stages))
        except Exception:  # noqa: BLE001  (an oracle failing is not the same finding)
            return False

    program = program.dead_code_eliminated()
    order = sorted(range(len(program.terms)),
                   key=lambda k: len(_alone(program, k).stmts))
    for k in order[:40]:
        if fails(candidate := _alone(program, k)):
            program = candidate
            break
    chunks = 2
    while program.stmts and time.monotonic() < deadline:
        outs = [s.out for s in program.stmts]
        size = max(1, len(outs) // chunks)
        for start in range(0, len(outs), size):
            candidate = cut(program, set(outs[start:start + size]))
            if len(candidate.stmts) < len(program.stmts) and fails(candidate):
                program = candidate
                break
        else:
            if size == 1:
                break
            chunks *= 2
    return program


def _alone(program: fp.Program, k: int) -> fp.Program:
    return replace(program, terms=[program.terms[k]],
                   weights=[program.weights[k]]).dead_code_eliminated()


def cut(program: fp.Program, names: set[str]) -> fp.Program:
    """Statements `names` replaced by inputs holding the values they computed."""
    env = fp.evaluate(program)
    inputs = dict(program.inputs)
    inputs.update({n: env[n] for n in names})
    stmts = [s for s in program.stmts if s.out not in names]
    return replace(program, inputs=inputs, stmts=stmts).dead_code_eliminated()


# ---------------------------------------------------------------- reproducers

REPRODUCER = '''\
"""fusegrad fuzz reproducer: {kind}
seed {seed}; {detail}
"""
import types

import numpy as np

import fusegrad as fg
import fusegrad.runtime.executable

xp = types.SimpleNamespace(**{{n: getattr(fg, n) for n in dir(fg) if not n.startswith("_")}})
xp.permute = lambda x, perm: fg.permute(x, *perm)
xp.clip = lambda x, lo, hi: x.clamp(lo, hi)

{text}
W = {weights}
args = {inputs}

fg.runtime.executable.PARALLEL_MIN_SIZE = {parallel}   # threaded kernels: 0
print("numpy/autograd:", {expected})
print("fused:  ", fg.compile_grad(lambda *a: program(xp, W, *a))(*args))
print("unfused:", fg.compile_grad(lambda *a: program(xp, W, *a), fuse=False)(*args))
'''


def literal(array: np.ndarray) -> str:
    return f"np.array({array.tolist()!r}, dtype=np.{array.dtype})"


def write_reproducer(directory: Path, program: fp.Program, finding: Finding, index: int) -> Path:
    try:
        expected = [a.tolist() for a in autograd_results(program)]
    except Exception as e:  # noqa: BLE001
        expected = f"autograd failed: {e}"
    slug = re.sub(r"[^a-z]+", "-", finding.kind.lower()).strip("-")
    path = directory / f"{index:03d}-{slug}-seed{program.seed}.py"
    path.write_text(REPRODUCER.format(
        kind=finding.kind, seed=program.seed, detail=finding.detail.replace('"""', "'''"),
        text=program.text(), weights="[" + ", ".join(map(literal, program.weights)) + "]",
        inputs="[" + ", ".join(map(literal, program.inputs.values())) + "]",
        expected=repr(expected), parallel=0 if program.threaded else DEFAULT_PARALLEL_MIN_SIZE))
    return path


# ---------------------------------------------------------------- the command line

FG = ANP = None
# issue 11's ops, with some ordinary arithmetic between them
ISSUE11 = (*gen.ISSUE11_FAMILIES, "unary", "binary", "reduce", "select")
MINIMIZE_EACH = 4   # findings of one signature minimized (told apart afterwards)
DEFAULT_PARALLEL_MIN_SIZE = 1 << 15


def setup(dodge_known: bool) -> None:
    global FG, ANP, DEFAULT_PARALLEL_MIN_SIZE
    from fusegrad.runtime import executable
    FG, ANP = fp.fusegrad_namespace(), fp.autograd_namespace()
    DEFAULT_PARALLEL_MIN_SIZE = executable.PARALLEL_MIN_SIZE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=float, default=300, help="seconds to run (default 300)")
    parser.add_argument("--graphs", type=int, default=10**9, help="stop after this many")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--size", type=int, default=120, help="statements per program")
    parser.add_argument("--fused-every", type=int, default=1,
                        help="compile and run the fused kernels every N graphs (0: never; "
                        "the others are checked in the interpreter only, which is fast)")
    parser.add_argument("--eager-every", type=int, default=3,
                        help="run the eager API every N graphs (0: never; it compiles "
                        "kernels for large graphs)")
    parser.add_argument("--unfused-every", type=int, default=4,
                        help="every N graphs, a small one also compiled fuse=False (0: never)")
    parser.add_argument("--unfused-size", type=int, default=25,
                        help="statements of those (one kernel per primitive compiles slowly)")
    parser.add_argument("--families", default=None,
                        help="comma-separated statement families to draw from (default: all; "
                        "'issue11': those of issue 11's ops, with unary and binary)")
    parser.add_argument("--include-known", action="store_true",
                        help="also write the spellings of known open defects (issue 9)")
    parser.add_argument("--minimize", type=float, default=120,
                        help="seconds to spend minimizing each new kind of finding")
    parser.add_argument("--out", type=Path, default=Path("fuzz-failures"))
    args = parser.parse_args(argv)
    families = None if args.families is None else tuple(
        f for name in args.families.split(",")
        for f in (ISSUE11 if name == "issue11" else (name,)))
    setup(dodge_known=not args.include_known)
    args.out.mkdir(parents=True, exist_ok=True)
    began, seed = time.monotonic(), args.seed
    counts, seen, sizes, ops, attempts = Counter(), {}, [], Counter(), Counter()
    stats: dict = {}
    while seed < args.seed + args.graphs and time.monotonic() - began < args.time:
        unfused = args.unfused_every and seed % args.unfused_every == 0
        try:
            program = gen.generate(seed, args.unfused_size if unfused else args.size,
                                  args.include_known, families)
        except AssertionError as e:   # a defect of the generator, not of fusegrad
            print(f"seed {seed}: {e}", flush=True)
            counts["generator failed (not a finding)"] += 1
            seed += 1
            continue
        ops.update(s.op for s in program.stmts)
        fused = args.fused_every and seed % args.fused_every == 0
        eager = args.eager_every and seed % args.eager_every == 0
        stages = frozenset(name for name, on in
                           (("fused", fused), ("unfused", unfused), ("eager", eager)) if on)
        try:
            findings = check(program, stages, stats)
        except Exception as e:  # noqa: BLE001  (the oracles themselves failed)
            findings = [crash("oracle", e)]
        sizes.append((len(program.stmts), stats.get("values", 0), stats.get("joint values", 0)))
        _report(seed, program, findings, time.monotonic() - began)
        for finding in {f.signature: f for f in findings}.values():
            counts[finding.kind] += 1
            record(program, finding, stages, seen, attempts, args)
        seed += 1
    _summary(seed - args.seed, sizes, counts, seen, stats, ops)
    return 1 if counts else 0


def record(program: fp.Program, finding: Finding, stages, seen: dict, attempts: Counter,
           args) -> None:
    """Minimize the first few findings of each signature, and write a reproducer for
    each distinct minimized program (told apart by its statement kinds)."""
    if attempts[finding.signature] >= (1 if finding.kind.startswith("crash") else MINIMIZE_EACH):
        return
    attempts[finding.signature] += 1
    small = minimize(program, finding, stages, args.minimize)
    distinct = f"{finding.signature} [{', '.join(sorted({s.op for s in small.stmts}))}]"
    if distinct in seen:
        print(f"    minimized to {len(small.stmts)} statements, as {seen[distinct]}", flush=True)
        return
    again = [f for f in _check_quietly(small, stages) if f.signature == finding.signature]
    seen[distinct] = write_reproducer(args.out, small, again[0] if again else finding, len(seen))
    print(f"    minimized to {len(small.stmts)} statements: {seen[distinct]}", flush=True)


def _check_quietly(program: fp.Program, stages) -> list[Finding]:
    try:
        return check(program, frozenset(stages))
    except Exception:  # noqa: BLE001
        return []


def _report(seed: int, program: fp.Program, findings: list[Finding], elapsed: float) -> None:
    status = "ok" if not findings else "; ".join(sorted({f.kind for f in findings}))
    print(f"[{elapsed:6.0f}s] seed {seed}: {len(program.stmts)} statements, {status}", flush=True)
    for finding in findings[:3]:
        print(f"    {finding.kind}: {finding.detail.splitlines()[-1][:200]}", flush=True)


def _summary(graphs, sizes, counts, seen, stats, ops) -> None:
    array = np.array(sizes or [(0, 0, 0)])
    print(f"\n{graphs} graphs; per graph (min / median / max): "
          f"statements {array[:, 0].min()}/{int(np.median(array[:, 0]))}/{array[:, 0].max()}, "
          f"forward IR values {array[:, 1].min()}/{int(np.median(array[:, 1]))}/{array[:, 1].max()}, "
          f"joint IR values {array[:, 2].min()}/{int(np.median(array[:, 2]))}/{array[:, 2].max()}")
    print(f"statement kinds: {len(ops)} ({', '.join(f'{k} {v}' for k, v in ops.most_common())})")
    print(f"\n{'graphs with a finding, by kind':<60} {'graphs':>6}")
    for kind, count in counts.most_common():
        print(f"{kind:<60} {count:>6}")
    if not counts:
        print(f"{'(none)':<60} {0:>6}")
    print("\nreproducers (one per distinct finding):")
    for signature, path in seen.items():
        print(f"  {path}  <- {signature}")
    for key, value in sorted(stats.items()):
        if "error" in key or "autograd" in key:
            print(f"{key}: {value:.3g}")


if __name__ == "__main__":
    sys.exit(main())
