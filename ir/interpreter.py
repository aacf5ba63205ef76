"""A NumPy interpreter of the IR: the reference semantics, and the oracle for codegen."""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from fusegrad.ir.errors import BoundsError, bare, located
from fusegrad.ir.graph import Graph, Node, Value


def run_node(node: Node, args: Sequence[np.ndarray]) -> np.ndarray:
    try:
        with np.errstate(all="ignore"):
            result = node.primitive.impl(*args, **node.attrs)
    except BoundsError as error:   # found at run time: say where the user indexed
        raise BoundsError(located(bare(error), node.source)) from None
    out = node.out
    # NumPy's own promotion rules and 0-d results differ from the IR's; the IR wins.
    return np.asarray(result).astype(out.dtype, copy=False).reshape(out.shape)


def run_node_outputs(node: Node, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """All outputs of `node`: one for most primitives, several for a scan."""
    if not node.primitive.multiple_results:
        return [run_node(node, args)]
    with np.errstate(all="ignore"):
        results = node.primitive.impl(*args, **node.attrs)
    return [np.asarray(r).astype(v.dtype, copy=False).reshape(v.shape)
            for r, v in zip(results, node.outputs)]


def evaluate(graph: Graph, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(args) != len(graph.inputs):
        raise TypeError(f"graph takes {len(graph.inputs)} inputs, got {len(args)}")
    env: dict[Value, np.ndarray] = {}
    for value, array in zip(graph.inputs, args):
        env[value] = np.asarray(array)
    for value, array in graph.constants:
        env[value] = array
    # Each intermediate is dropped after the last node that reads it: a deep graph
    # over large arrays (thousands of nodes, 200k elements each) would otherwise
    # hold all of them at once, gigabytes, and run slower for the page faults.
    last_use = {v: i for i, node in enumerate(graph.nodes) for v in node.inputs}
    keep = set(graph.outputs)
    for index, node in enumerate(graph.nodes):
        env.update(zip(node.outputs, run_node_outputs(node, [env[v] for v in node.inputs])))
        for value in node.inputs:
            if last_use[value] == index and value not in keep:
                env.pop(value, None)
    return [env[v] for v in graph.outputs]


# ---------------------------------------------------------------- prepared evaluation (issue 12, eager speed)
# `evaluate` works out per call what a graph run again and again (an eager backward
# plan, an eager op) could work out once: where each value lives, each node's
# params as keywords, when each intermediate is dropped. `evaluator` does that once
# and returns the run: values in a list, one error-state switch for the whole graph
# instead of one per node, and no cast or reshape of a result that NumPy already
# gave in the IR's dtype and shape. It computes what `evaluate` computes.

try:   # NumPy >= 2 keeps the error state in a context variable: switching it is cheap
    from numpy._core._multiarray_umath import _make_extobj
    from numpy._core._ufunc_config import _extobj_contextvar

    quiet = functools.partial(_extobj_contextvar.set, _make_extobj(all="ignore"))
    quiet.__doc__ = "np.errstate(all='ignore') entered: returns what `loud` takes to leave it."
    loud = _extobj_contextvar.reset
except (ImportError, AttributeError, TypeError):
    def quiet():
        """np.errstate(all='ignore') entered: returns what `loud` takes to leave it."""
        state = np.errstate(all="ignore")
        state.__enter__()
        return state

    def loud(state) -> None:
        state.__exit__(None, None, None)


def conformed(result, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """`result` in the IR's dtype and shape, as `run_node` makes it (NumPy's promotion
    and 0-d results differ from the IR's); the same array where it is so already."""
    if result.__class__ is not np.ndarray:
        result = np.asarray(result)   # a NumPy scalar: a new 0-d array
    if result.dtype is not dtype and result.dtype != dtype:
        result = result.astype(dtype)
    if result.shape != shape:
        result = result.reshape(shape)
    return result


def call_impl(node: Node, impl, values: Sequence, attrs: dict):
    """`node`'s NumPy meaning on `values`, under an error state the caller holds."""
    try:
        return impl(*values, **attrs)
    except BoundsError as error:   # found at run time: say where the user indexed
        raise BoundsError(located(bare(error), node.source)) from None


def evaluator(graph: Graph, impls: Callable[[Node], Callable | None] | None = None):
    """`lambda args: evaluate(graph, args)`, prepared once (see the section comment).
    `impls(node)`: a function of the same meaning as the node's `impl` that computes it
    instead (the runtime's threaded matrix product, say), or None for the `impl`."""
    slot: dict[Value, int] = {}
    for value in graph.inputs:
        slot[value] = len(slot)
    constants = []
    for value, array in graph.constants:
        constants.append((len(slot), array))
        slot[value] = len(slot)
    last_use = {v: i for i, node in enumerate(graph.nodes) for v in node.inputs}
    keep = set(graph.outputs)
    steps = []
    for index, node in enumerate(graph.nodes):
        if node.primitive.name == "const":
            # The same number every run: made once, read-only, as every constant here
            # is (it may be an output: whoever keeps it must copy it).
            array = run_node(node, [])
            array.flags.writeable = False
            constants.append((len(slot), array))
            slot[node.out] = len(slot)
            continue
        reads = tuple(slot[v] for v in node.inputs)
        for value in node.outputs:
            slot[value] = len(slot)
        writes = tuple((slot[v], v.dtype, v.shape) for v in node.outputs)
        drops = tuple(dict.fromkeys(slot[v] for v in node.inputs
                                    if last_use[v] == index and v not in keep))
        steps.append((node, prepared_impl(node, impls), node.attrs, reads, writes, drops,
                      node.primitive.multiple_results))
    count, size, results = len(graph.inputs), len(slot), [slot[v] for v in graph.outputs]
    ndarray = np.ndarray

    def run(args: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(args) != count:
            raise TypeError(f"graph takes {count} inputs, got {len(args)}")
        env = [np.asarray(a) for a in args]
        env.extend([None] * (size - count))
        for place, array in constants:
            env[place] = array
        token = quiet()
        try:
            for node, impl, attrs, reads, writes, drops, multiple in steps:
                try:
                    result = impl(*[env[i] for i in reads], **attrs)
                except BoundsError as error:   # as run_node: say where the user indexed
                    raise BoundsError(located(bare(error), node.source)) from None
                if multiple:
                    for (place, dtype, shape), part in zip(writes, result):
                        env[place] = np.asarray(part).astype(dtype, copy=False).reshape(shape)
                else:
                    place, dtype, shape = writes[0]
                    if result.__class__ is not ndarray or result.dtype is not dtype or \
                            result.shape != shape:
                        result = conformed(result, dtype, shape)
                    env[place] = result
                for place in drops:
                    env[place] = None
        finally:
            loud(token)
        return [env[i] for i in results]
    return run


# ---------------------------------------------------------------- generated evaluation (issue 12, eager speed, round 2)
# `evaluator`'s loop still pays per node for unpacking its step, building the
# argument list and the keyword dictionary, and the drops. `generated_evaluator`
# writes the graph out as one straight-line Python function instead (each node one
# call of its NumPy meaning on local variables, its result checked against the IR's
# dtype and shape, intermediates released after their last use) and compiles it once
# per graph: the interpreter's work, without the interpreter. A node that raises a
# BoundsError is found from the line the error passed through, so the happy path
# carries no bookkeeping. Large graphs keep `evaluator` (compiling a function of
# thousands of lines costs more than it gains for a graph run a few times).

GENERATED_MAX_NODES = 400


def generated_evaluator(graph: Graph, impls: Callable[[Node], Callable | None] | None = None):
    """`evaluator(graph, impls)`, as one generated function (see the section comment)."""
    if len(graph.nodes) > GENERATED_MAX_NODES:
        return evaluator(graph, impls)
    names: dict[Value, str] = {}
    namespace: dict[str, object] = {"ndarray": np.ndarray, "asarray": np.asarray,
                                    "conformed": conformed, "quiet": quiet, "loud": loud,
                                    "BoundsError": BoundsError, "count": len(graph.inputs)}
    lines = ["def run(args):",
             "    if len(args) != count:",
             "        raise TypeError(f'graph takes {count} inputs, got {len(args)}')"]
    for index, value in enumerate(graph.inputs):
        name = names[value] = f"v{len(names)}"
        lines.append(f"    {name} = args[{index}]")
        lines.append(f"    if {name}.__class__ is not ndarray: {name} = asarray({name})")
    for value, array in graph.constants:
        name = names[value] = f"v{len(names)}"
        namespace[name] = array
    last_use = {v: i for i, node in enumerate(graph.nodes) for v in node.inputs}
    keep = set(graph.outputs)
    body: list[str] = []
    sources: dict[int, Node] = {}   # line number of a call -> its node
    for index, node in enumerate(graph.nodes):
        if node.primitive.name == "const":
            # The same number every run: made once, read-only (see `evaluator`).
            array = run_node(node, [])
            array.flags.writeable = False
            name = names[node.out] = f"v{len(names)}"
            namespace[name] = array
            continue
        step = f"s{index}"
        namespace[f"{step}f"] = prepared_impl(node, impls)
        arguments = ", ".join(names[v] for v in node.inputs)
        if node.params:
            namespace[f"{step}a"] = node.attrs
            arguments += (", " if arguments else "") + f"**{step}a"
        for value in node.outputs:
            names[value] = f"v{len(names)}"
        sources[len(lines) + len(body) + 4] = node   # the 1-based line: after the 3 of `try:`
        if node.primitive.multiple_results:
            body.append(f"        r = {step}f({arguments})")
            for k, value in enumerate(node.outputs):
                namespace[f"{step}t{k}"], namespace[f"{step}s{k}"] = value.dtype, value.shape
                body.append(f"        {names[value]} = asarray(r[{k}]).astype({step}t{k}, "
                            f"copy=False).reshape({step}s{k})")
        else:
            out = names[node.out]
            namespace[f"{step}t"], namespace[f"{step}s"] = node.out.dtype, node.out.shape
            body.append(f"        {out} = {step}f({arguments})")
            body.append(f"        if {out}.__class__ is not ndarray or {out}.dtype is not {step}t "
                        f"or {out}.shape != {step}s: {out} = conformed({out}, {step}t, {step}s)")
        drops = [names[v] for v in dict.fromkeys(node.inputs)
                 if last_use[v] == index and v not in keep and names[v] not in namespace]
        if drops:
            body.append(f"        {' = '.join(drops)} = None")
    lines += ["    token = quiet()", "    try:", "        pass"] + body + [
        "    except BoundsError as error:",
        "        raise error_at(error) from None",
        "    finally:",
        "        loud(token)",
        f"    return [{', '.join(names[v] for v in graph.outputs)}]"]

    def error_at(error: BoundsError) -> BoundsError:
        # As run_node: say where the user indexed (the node whose call raised).
        traceback, node = error.__traceback__, None
        while traceback is not None and node is None:
            if traceback.tb_frame.f_code is code:
                node = sources.get(traceback.tb_lineno)
            traceback = traceback.tb_next
        return BoundsError(located(bare(error), node.source if node is not None else None))

    namespace["error_at"] = error_at
    source = "\n".join(lines)
    exec(compile(source, "<fusegrad generated evaluator>", "exec"), namespace)   # noqa: S102
    run = namespace["run"]
    code = run.__code__
    return run


# ---------------------------------------------------------------- outer products (issue 12, eager speed, round 4)
# A matmul of an (m, 1) and a (1, n) float matrix (in the backward of x @ w for a w of
# one column) is an outer product, which np.matmul runs through gemm at a third of the
# speed of NumPy's broadcast multiply (64 x 64: 5.5 against 2.1 us). Its sum of one
# product starts at +0.0, so np.matmul's result is the product plus 0.0 (a -0.0
# product gives +0.0): the prepared evaluators compute that, bit for bit the same.

def prepared_impl(node: Node, impls: Callable[[Node], Callable | None] | None = None):
    """The function the prepared evaluators call for `node`: its primitive's impl (or
    the one `impls(node)` gives for it), or the same result computed a faster way."""
    name = node.primitive.name
    if name == "matmul" and len(node.inputs) == 2 and not node.attrs:
        a, b = node.inputs
        if len(a.shape) == 2 and len(b.shape) == 2 and a.shape[1] == 1 and b.shape[0] == 1 \
                and a.dtype == b.dtype == node.out.dtype and a.dtype in (np.float32, np.float64):
            return _outer_product
    chosen = impls(node) if impls is not None else None
    return chosen if chosen is not None else node.primitive.impl


def _outer_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    result = np.multiply(a, b)
    np.add(result, 0.0, out=result)   # -0.0 to +0.0, as np.matmul's sum from +0.0
    return result
