"""The eager backward: join the recorded ops, differentiate them, run the backward graph.

`gather` walks the edges of the recorded ops from the outputs back to the leaves.
The joined program is numbered canonically (leaves and constants in order of first
use, then each op's outputs in creation order), and its *structure* — which op
graphs, wired how, over which shapes and dtypes — keys a cache of backward plans.
On a miss, `_build` joins the ops' IR into one forward `Graph` and runs the same
symbolic pass as `compile_grad` (`ir.vjp_graph` with the output cotangent as an
input, then `ir.optimize`); forward values the ops kept become inputs instead of
being recomputed. So a backward over an equally shaped program again costs a
lookup, not a differentiation, and never a second compile. A backward runs on the
NumPy interpreter until compiling it (fused Numba kernels) has paid for itself:
see `should_compile`.
"""
from __future__ import annotations

import operator
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir.builder import Builder, building
from fusegrad.ir.graph import Graph, Node, Value, live_nodes
from fusegrad.ir.interpreter import evaluator, generated_evaluator
from fusegrad.runtime import compilable, compile_graph, compile_seconds
from fusegrad.runtime.host import host_impl
from fusegrad.tracer.devices import on_device
from fusegrad.tracer.dtypes import legacy_type_name
from fusegrad.tracer.graph_nodes import Constant, Edge, Function

# A backward whose largest array has fewer elements than this always runs on the
# NumPy interpreter: per element there is too little work for a kernel to gain.
COMPILE_MIN_ELEMENTS = int(os.environ.get("FUSEGRAD_EAGER_COMPILE_MIN", 100_000))

# The interpreter's side of `should_compile`'s cost model, in seconds of one core
# (measured on a 2-core AVX2 machine): about 6 us per node and 3 ns per element
# it writes. Compiled kernels run the same work 8-9x faster (154 ms against 20 ms
# for 253 nodes over 200k float64), so nearly all of a run's interpreter time is
# what compiling gains per run.
INTERPRET_NODE_SECONDS = 6e-6
INTERPRET_ELEMENT_SECONDS = 3e-9

# A reference to a value of the joined program: an int is a leaf or constant (its
# position among the inputs), a pair (op position, output number) an op's result.
Ref = "int | tuple[int, int]"


class Recorded:
    """The recorded program between some outputs and the leaves."""

    __slots__ = ("inputs", "functions", "wiring", "position", "leaf_index", "saved",
                 "known_structure", "known", "leaves", "retains")

    def __init__(self, inputs: list[Edge], functions: list[Function], wiring: list[tuple],
                 position: dict[Function, int], leaf_index: dict[int, int],
                 saved: dict | None = None) -> None:
        self.inputs = inputs             # leaves and constants, in order of first use
        self.functions = functions       # the ops, in creation (topological) order
        self.wiring = wiring             # per op: the Ref of each argument
        self.position = position         # function -> its position (by identity)
        self.leaf_index = leaf_index     # id(leaf tensor or constant array) -> input position
        self.saved = {} if saved is None else saved   # Ref -> kept result
        # Worked out by `gather` as it walks (None: work them out when asked):
        self.known_structure = None      # structure()
        self.known = None                # known_refs()
        self.leaves = []                 # the leaf tensors that require grad, in input order
        self.retains = False             # whether some op has a retain_grad() output

    def ref(self, tensor) -> "Ref | None":
        """Where `tensor` is in this program (None: not part of it)."""
        if tensor._grad_fn is not None:
            position = self.position.get(tensor._grad_fn)
            return None if position is None else (position, tensor._output_nr)
        return self.leaf_index.get(id(tensor))

    def structure(self) -> tuple:
        if self.known_structure is not None:
            return self.known_structure
        types = tuple([(d.shape, d.dtype) for d in map(_edge_data, self.inputs)])
        return types, tuple((f.graph.serial, w) for f, w in zip(self.functions, self.wiring))


def gather(roots: Sequence[Edge]) -> tuple[Recorded, list]:
    """The program behind the edges `roots`, and the Ref of each root."""
    # Functions are found by identity (their hash is their address, as a tensor's
    # and a Constant's, so a lookup by an edge's source never compares values):
    # the sets and dictionaries below take them as they are, without id().
    functions: list[Function] = []
    seen: set[Function] = set()
    stack = [e[0] for e in roots if isinstance(e[0], Function)]
    while stack:
        f = stack.pop()
        if f in seen:
            continue
        seen.add(f)
        functions.append(f)
        for edge in f.edges:
            source = edge[0]
            if isinstance(source, Function) and source not in seen:
                stack.append(source)
    if len(functions) > 1:
        functions.sort(key=_sequence)
    position = {f: i for i, f in enumerate(functions)}
    inputs: list[Edge] = []
    leaf_index: dict[int, int] = {}
    recorded = Recorded(inputs, functions, [], position, leaf_index)
    wirings, saved, leaves = recorded.wiring, recorded.saved, recorded.leaves
    types: list[tuple] = []      # (shape, dtype) per input: the first half of structure()
    structure: list[tuple] = []  # (op graph, wiring) per op: the second half
    known: list[tuple] = []      # known_refs(): kept results that are not views of an argument

    def leaf(edge: Edge) -> int:
        source = edge[0]
        if isinstance(source, Constant):
            variable, data = None, source.array
            key = id(data)
        else:   # a leaf that requires grad
            variable, data, key = source, source._data, id(source)
        found = leaf_index.get(key)
        if found is None:
            found = leaf_index[key] = len(inputs)
            inputs.append(edge)
            types.append((data.shape, data.dtype))
            if variable is not None:
                leaves.append(variable)
        return found

    for position_of_f, f in enumerate(functions):
        wiring = []
        for edge in f.edges:
            found = position.get(edge[0])
            wiring.append((found, edge[1]) if found is not None else leaf(edge))
        wiring = tuple(wiring)
        wirings.append(wiring)
        graph = f.graph
        structure.append((graph.serial, wiring))
        if f.saved is not None:
            aliases = graph.aliases
            for index, entry in enumerate(f.saved):
                # entry.current(), inline: not modified in place since it was computed
                # (a counter None: the result's own, never made, so never bumped)
                if entry is not None and (entry[1] is None or entry[1].value == entry[2]):
                    saved[(position_of_f, index)] = entry[0]
                    if aliases[index] is None:
                        known.append((position_of_f, index))
        if f.retained:
            recorded.retains = True
    refs = [(position[e[0]], e[1]) if e[0] in position else leaf(e) for e in roots]
    recorded.known_structure = (tuple(types), tuple(structure))
    recorded.known = tuple(known)
    return recorded, refs


_sequence = operator.attrgetter("seq")


def _edge_data(edge: Edge) -> np.ndarray:
    source = edge[0]
    return source.array if isinstance(source, Constant) else source._data


# ---------------------------------------------------------------- planning

@dataclass(eq=False)
class BackwardPlan:
    graph: Graph                      # inputs -> gradients
    sources: list[tuple[str, object]]  # per graph input: ("input", i), ("seed", k), ("known", ref), ("zeros", 0)
    executable: object = None         # the compiled runtime's Executable, once compiling pays
    runs: int = 0                     # backward passes that used this plan
    largest: int = field(init=False)  # elements of the graph's largest value
    interpret_seconds: float = field(init=False)  # predicted, one interpreter run
    compilable: bool = field(init=False)  # dtypes the kernels hold (not float16)
    compile_seconds: float | None = None          # predicted, compiling; known when asked
    device_executable: object = None  # the CUDA one, for tensors on the GPU (issue 13)
    evaluate: object = None           # the interpreter's run of `graph`, once it has run

    def __post_init__(self) -> None:
        nodes = [n for n in self.graph.nodes if n.primitive.name != "const"]
        written = sum(v.size for n in nodes for v in n.outputs)
        self.largest = max([v.size for v in self.graph.inputs]
                           + [v.size for n in nodes for v in n.outputs], default=0)
        self.interpret_seconds = (INTERPRET_NODE_SECONDS * len(nodes)
                                  + INTERPRET_ELEMENT_SECONDS * written)
        self.compilable = compilable(self.graph)


def should_compile(plan: BackwardPlan) -> bool:
    """Whether the next run of `plan` (its `runs`-th) goes through compiled kernels.

    Compiling gains per element, and costs per node: a deep graph over small arrays
    (50k ops on 4 elements) would compile for many minutes to save milliseconds.
    So the plan runs on the interpreter until the interpreter time its runs have
    cost (this one included) reaches what compiling would cost, then compiles once.
    As in the ski-rental problem, that spends at most about twice what the better
    choice made in hindsight would have. A backward whose one interpreter run costs
    a compile compiles on its first run; an equally shaped backward repeated in a
    training loop compiles once it has been repeated enough.
    """
    if plan.executable is not None:
        return True
    if not plan.graph.nodes or plan.largest < COMPILE_MIN_ELEMENTS or not plan.compilable:
        return False
    if plan.compile_seconds is None:
        plan.compile_seconds = compile_seconds(plan.graph)
    return plan.runs * plan.interpret_seconds >= plan.compile_seconds


# Least recently used plans go first: a long interactive session must not keep
# every backward it ever ran (with its compiled kernels) alive.
_cache: OrderedDict[tuple, BackwardPlan] = OrderedDict()
MAX_PLANS = 512


def cached_plans() -> tuple[BackwardPlan, ...]:
    """The backward plans kept for reuse, least recently used first."""
    return tuple(_cache.values())


def known_refs(recorded: Recorded) -> tuple:
    """Results the backward reads instead of recomputing: every one an op kept
    (except views of an argument, which are inputs already). Measured on W2 at 1e7
    elements, reading them back beats recomputing the transcendentals inside the
    fused kernels: 129 ms against 201 ms."""
    if recorded.known is not None:
        return recorded.known
    return tuple(ref for ref in recorded.saved
                 if recorded.functions[ref[0]].graph.aliases[ref[1]] is None)


def plan_backward(recorded: Recorded, roots: list, wrt: list) -> BackwardPlan:
    known = known_refs(recorded)
    key = (recorded.structure(), tuple(roots), tuple(wrt), known)
    plan = _cache.get(key)
    if plan is None:
        plan = _cache[key] = _build(recorded, roots, wrt, known)
        if len(_cache) > MAX_PLANS:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return plan


def _join(recorded: Recorded) -> tuple[list[Value], list[Node], dict]:
    """One forward program: fresh values for the inputs and for every op's nodes."""
    inputs = [Value(d.shape, d.dtype) for d in map(_edge_data, recorded.inputs)]
    results: dict[tuple, Value] = {}
    nodes: list[Node] = []

    def value_of(ref) -> Value:
        return inputs[ref] if isinstance(ref, int) else results[ref]

    for position, (f, wiring) in enumerate(zip(recorded.functions, recorded.wiring)):
        mapping = {p: value_of(r) for p, r in zip(f.graph.inputs, wiring)}
        for node in f.graph.nodes:
            outputs = tuple(Value(v.shape, v.dtype) for v in node.outputs)
            mapping.update(zip(node.outputs, outputs))
            nodes.append(Node(node.primitive, tuple(mapping[v] for v in node.inputs),
                              node.params, outputs, node.source))
        for index, value in enumerate(f.graph.outputs):
            results[(position, index)] = mapping[value]
    return inputs, nodes, {**{i: v for i, v in enumerate(inputs)}, **results}


def _build(recorded: Recorded, roots: list, wrt: list, known: tuple) -> BackwardPlan:
    inputs, nodes, values = _join(recorded)
    root_values = [values[r] for r in roots]
    wrt_values = [values[r] for r in wrt]
    # A gradient with respect to a computed value (autograd.grad of an intermediate,
    # retain_grad) is the gradient with respect to a zero added to it.
    leaves = set(inputs)
    nodes, root_values, perturbations = _perturb(nodes, root_values,
                                                 [v for v in wrt_values if v not in leaves])
    perturbation_of = dict(perturbations)
    wrt_inputs = [perturbation_of.get(v, v) for v in wrt_values]
    all_inputs = inputs + [p for _, p in perturbations]
    if len(root_values) == 1:
        forward = Graph(tuple(all_inputs), tuple(nodes), tuple(root_values))
        joint = ir.vjp_graph(forward, [all_inputs.index(v) for v in wrt_inputs], seed_input=True)
        seeds = [joint.inputs[-1]]
    else:
        # Several outputs: differentiate sum_i <seed_i, output_i>, one scalar.
        seeds = [Value(r.shape, r.dtype, name=f"cotangent{i}") for i, r in enumerate(root_values)]
        builder = Builder()
        builder.nodes.extend(nodes)
        with building(builder):
            terms = [ops.reduce_sum(ops.cast(ops.mul(r, s), np.float64))
                     for r, s in zip(root_values, seeds)]
            total = terms[0]
            for term in terms[1:]:
                total = ops.add(total, term)
        forward = builder.finish(tuple(all_inputs + seeds), (total,))
        joint = ir.vjp_graph(forward, [all_inputs.index(v) for v in wrt_inputs])
    backward = ir.optimize(joint.replace(outputs=joint.outputs[1:]))

    sources: dict[Value, tuple] = {v: ("input", i) for i, v in enumerate(inputs)}
    sources.update((p, ("zeros", 0)) for _, p in perturbations)
    sources.update((s, ("seed", k)) for k, s in enumerate(seeds))
    known_values = {}
    for ref in known:
        value = values[ref]
        if value not in sources:
            known_values[value] = ref
            sources[value] = ("known", ref)
    backward = _read_known(backward, set(known_values))
    used = {v for n in backward.nodes for v in n.inputs} | set(backward.outputs)
    graph_inputs = tuple(v for v in sources if v in used)
    return BackwardPlan(backward.replace(inputs=graph_inputs), [sources[v] for v in graph_inputs])


def _perturb(nodes: list[Node], roots: list[Value], values: list[Value]):
    if not values:
        return nodes, roots, []
    perturbations = [(v, Value(v.shape, v.dtype, name="perturbation")) for v in dict.fromkeys(values)]
    replacement: dict[Value, Value] = {}
    builder = Builder()
    pending = dict(perturbations)
    for node in nodes:
        if any(v in replacement for v in node.inputs):
            node = Node(node.primitive, tuple(replacement.get(v, v) for v in node.inputs),
                        node.params, node.outputs, node.source)
        builder.nodes.append(node)
        for out in node.outputs:
            if out in pending:
                with building(builder):
                    replacement[out] = ops.add(out, pending.pop(out))
    return builder.nodes, [replacement.get(r, r) for r in roots], perturbations


def _read_known(graph: Graph, known: set[Value]) -> Graph:
    """Drop the nodes that compute known values; those values become inputs."""
    if not known:
        return graph
    nodes = [n for n in graph.nodes if not all(v in known for v in n.outputs)]
    return graph.replace(nodes=tuple(live_nodes(nodes, graph.outputs)))


# ---------------------------------------------------------------- running

def differentiate(recorded: Recorded, roots: list, wrt: list,
                  seeds: list[np.ndarray]) -> tuple[BackwardPlan, list[np.ndarray]]:
    """Vector-Jacobian products of `roots` (with cotangents `seeds`) for each of `wrt`."""
    plan = plan_backward(recorded, roots, wrt)
    arrays = []
    inputs = recorded.inputs
    for kind, where in plan.sources:
        if kind == "input":
            source, _, version = inputs[where]
            if source.__class__ is Constant and (version is None or source.counter is None
                                                 or source.counter.value == version):
                arrays.append(source.array)   # _input_data's common cases, written out
            elif source.__class__ is not Constant and (
                    version is None or source._version_counter.value == version):
                arrays.append(source._data)   # a leaf that requires grad
            else:
                arrays.append(_input_data(inputs[where]))
        elif kind == "seed":
            arrays.append(seeds[where])
        elif kind == "known":
            arrays.append(recorded.saved[where])
        else:
            value = plan.graph.inputs[len(arrays)]
            arrays.append(np.zeros(value.shape, value.dtype))
    plan.runs += 1
    host = True
    for array in arrays:   # (any(on_device(a) ...), written out: most are NumPy arrays)
        if array.__class__ is not np.ndarray and on_device(array):
            host = False
            break
    if not host:
        # CUDA tensors: the backward runs on the device, whatever its size (the
        # interpreter is NumPy's); its results are device arrays the caller owns.
        if plan.device_executable is None:
            plan.device_executable = compile_graph(plan.graph, device="cuda")
        return plan, plan.device_executable(arrays)
    if (plan.executable is not None or plan.largest >= COMPILE_MIN_ELEMENTS) and should_compile(plan):
        if plan.executable is None:
            plan.executable = compile_graph(plan.graph)
        outputs = plan.executable([np.ascontiguousarray(a) for a in arrays])
    else:
        if plan.evaluate is None:
            plan.evaluate = evaluator(plan.graph, host_impl)   # prepared once per plan
        elif plan.runs == 2:
            # Run again: worth writing out as code (a backward run once need not pay it).
            plan.evaluate = generated_evaluator(plan.graph, host_impl)
        outputs = plan.evaluate(arrays)
    return plan, owned(outputs, arrays)


def owned(outputs: list[np.ndarray], inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Gradients the caller may keep and add into: writable, not aliasing an input
    (a gradient can be the seed itself, or a forward value) or each other."""
    # An array's memory belongs to its base, or to itself (NumPy points a view's base
    # at the owner): an output whose owner is a new array made by this run, owner of
    # no input's memory and of no other output's, shares memory with none of them.
    owners = {id(_owner(a)) for a in inputs}
    result = []
    for out in outputs:
        if out.base is None and out.__class__ is np.ndarray and id(out) not in owners:
            flags = out.flags   # (the first case below, written out: the common one)
            if flags.writeable and flags.c_contiguous:
                owners.add(id(out))
                result.append(out)
                continue
        owner = _owner(out)
        if owner.__class__ is np.ndarray and owner.base is None and id(owner) not in owners \
                and out.flags.writeable and out.flags.c_contiguous:
            owners.add(id(owner))
        elif (not out.flags.writeable or not out.flags.c_contiguous
                or any(np.may_share_memory(out, a) for a in inputs)
                or any(np.may_share_memory(out, r) for r in result)):
            out = np.array(out, order="C")
            owners.add(id(out))
        else:
            owners.add(id(owner))
        result.append(out)
    return result


def _owner(array):
    base = array.base
    return array if base is None else base


def _input_data(edge: Edge) -> np.ndarray:
    source, _, version = edge
    if isinstance(source, Constant):
        data, counter = source.array, source.counter
    else:   # a leaf that requires grad
        data, counter = source._data, source._version_counter
    if counter is not None and version is not None and counter.value != version:
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [{legacy_type_name(data.dtype)} {list(data.shape)}] is at version {counter.value}; "
            f"expected version {version} instead.")
    return data


