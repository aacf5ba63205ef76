"""The eager executor: running one op of the public API on eager tensors.

Outside `compile_grad` every op goes through `apply`. The op's `ir.ops` builder
emits its IR nodes into a small builder, over placeholder values for the array
arguments (an `OpGraph`, built once per op, params and argument types); the
reference interpreter computes the result from the arguments' data; and when an
argument requires grad, the result's ``grad_fn`` (`graph_nodes.Function`) keeps
the OpGraph and where each argument came from. ``backward()`` joins the recorded
OpGraphs into one graph and differentiates it with the same symbolic pass as
`compile_grad` (see `tracer.engine` and `tracer.autograd`).
"""
from __future__ import annotations

import contextvars
import weakref
from typing import Any

import numpy as np

from fusegrad.ir.builder import Builder, building, is_building
from fusegrad.ir.errors import BoundsError, FusegradError, bare, located
from fusegrad.ir.graph import Graph, Value
from fusegrad.ir.interpreter import (conformed, evaluator, generated_evaluator, loud,
                                     prepared_impl, quiet, run_node)
from fusegrad.ir.primitive import ELEMENTWISE, REDUCTION
from fusegrad.runtime import compile_graph
from fusegrad.runtime.host import host_impl
from fusegrad.tracer.devices import CPU, VIEW_PRIMITIVES, checked_device, device_view, to_storage
from fusegrad.tracer.graph_nodes import (Constant, Edge, OpGraph, Version,
                                         _grad_state, function_class)
from fusegrad.tracer.graph_nodes import _sequence as graph_nodes_sequence
from fusegrad.tracer import engine, pytree
from fusegrad.tracer.source import user_line
from fusegrad.tracer.state import EAGER, TensorState

__all__ = ["apply", "wrap"]


def wrap(data: np.ndarray, *, requires_grad: bool = False, version: Version | None = None,
         device: Any = None):
    """A leaf tensor over `data` (no copy); `version`: the counter of the storage it views."""
    tensor = TensorState._blank()
    tensor._data = data
    tensor._version_counter = version if version is not None else Version()
    if device is not None and device is not CPU and device != CPU:
        tensor._device = checked_device(device)
    if type(data) is not np.ndarray or tensor._device is not CPU:
        tensor._data = to_storage(data, tensor._device)   # (a gradient from the other device)
    if requires_grad:
        tensor._set_requires_grad(True, "Only Tensors of floating point and complex dtype can "
                                        "require gradients")
    if version is None and tracing():
        tensor._born_tracing = True   # local to the traced function (issue 11, item 3)
    return tensor


def apply(build, args, params, grad_fn: str | None):
    """Run the ir.ops builder `build` on eager tensors, numbers and arrays."""
    arrays: list[np.ndarray] = []
    tensors: list[TensorState] = []
    signature: list[tuple] = []
    for arg in args:
        if isinstance(arg, TensorState):
            data = arg._data
            tensors.append(arg)
        elif isinstance(arg, (np.ndarray, list, tuple)):
            data = np.asarray(arg)
            pytree.check_dtype(data)   # complex, float16, objects: refused, as fg.tensor does
        else:
            signature.append((type(arg), repr(arg)))   # repr: -0.0 is not 0.0
            continue
        arrays.append(data)
        signature.append((data.shape, data.dtype.str))
    device = _common_device(tensors)
    graph = op_graph(build, args, params, tuple(signature))
    if device.type == "cuda":
        outputs = _views_on_device(graph, arrays, tensors, device) or \
            _run_on_device(graph, arrays, device)
    else:
        env = dict(graph.fixed)
        env.update(zip(graph.inputs, arrays))
        for node in graph.steps:
            env[node.out] = run_node(node, [env[v] for v in node.inputs])
        outputs = [_output(env[value], graph, i, args, arrays, device)
                   for i, value in enumerate(graph.outputs)]
    note_views(outputs, tensors)
    if grad_fn is not None and _grad_state.enabled and any(t._requires_grad for t in tensors):
        _record(grad_fn, graph, args, arrays, outputs)
    return tuple(outputs) if graph.tuple_result else outputs[0]


# OpGraphs by (builder, argument types and numbers, params). Bounded: a program that
# feeds ever new numbers (x * i in a loop) must not grow it without end.
_op_graphs: dict[tuple, OpGraph] = {}
MAX_OP_GRAPHS = 4096


def op_graph(build, args, params: dict, signature: tuple) -> OpGraph:
    try:
        key = (build, signature, tuple(sorted((k, _hashable(v)) for k, v in params.items())))
        graph = _op_graphs.get(key)
    except TypeError:   # unhashable params: trace every time
        key, graph = None, None
    if graph is None:
        graph = _trace_op(build, args, params)
        if key is not None:
            if len(_op_graphs) >= MAX_OP_GRAPHS:
                _op_graphs.clear()
            _op_graphs[key] = graph
    return graph


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _trace_op(build, args, params: dict) -> OpGraph:
    inputs: list[Value] = []
    values: list[Any] = []
    for arg in args:
        if isinstance(arg, (TensorState, np.ndarray, list, tuple)):
            data = arg._data if isinstance(arg, TensorState) else np.asarray(arg)
            value = Value(data.shape, data.dtype)
            inputs.append(value)
            values.append(value)
        else:
            values.append(arg)
    builder = Builder()
    try:
        with building(builder):
            result = build(*values, **params)
    except FusegradError as error:
        raise type(error)(located(bare(error), user_line())) from None
    outputs = result if isinstance(result, tuple) else (result,)
    fixed = {n.out: run_node(n, []) for n in builder.nodes if not n.inputs}
    return OpGraph(tuple(inputs), tuple(builder.nodes), tuple(outputs), fixed,
                   tuple_result=isinstance(result, tuple))


def _output(data: np.ndarray, graph: OpGraph, index: int, args, arrays: list, device):
    version = None
    alias = graph.aliases[index]
    if alias is not None:
        # The op returned its argument (a reshape to the same shape, a cast to the
        # same dtype): a new tensor over the same storage, as a PyTorch view.
        data = data.view()
        argument = [a for a in args if isinstance(a, (TensorState, np.ndarray, list, tuple))][alias]
        version = argument._version_counter if isinstance(argument, TensorState) else None
    elif graph.outputs[index] in graph.fixed:
        data = np.array(data)   # a constant of the op graph: shared, never handed out
    else:
        for arg in args:
            if isinstance(arg, TensorState) and np.may_share_memory(data, arg._data):
                version = arg._version_counter   # a view (reshape, transpose) shares its base's
                break
    tensor = TensorState._blank()
    tensor._data = data
    tensor._version_counter = version if version is not None else Version()
    if device is not CPU:
        tensor._device = device
    return tensor


# ---------------------------------------------------------------- on the GPU (issue 13, item 3)
# An eager op on CUDA tensors runs the op's graph through the CUDA target: compiled
# once per op graph (shapes, dtypes, numbers), on the device arrays of its arguments,
# giving device arrays, each storage of its own. Layout ops (slices, reshape,
# transpose, expand) are views instead, as on the CPU: `_views_on_device`.
_device_executables: dict[int, object] = {}


def _run_on_device(graph: OpGraph, arrays: list, device) -> list:
    executable = _device_executables.get(graph.serial)
    if executable is None:
        from fusegrad.ir.graph import Graph
        from fusegrad.runtime import compile_graph
        if len(_device_executables) >= MAX_OP_GRAPHS:
            _device_executables.clear()
        executable = _device_executables[graph.serial] = compile_graph(
            Graph(graph.inputs, graph.steps, graph.outputs, tuple(graph.fixed.items())),
            device="cuda")
    outputs = []
    for data in executable(arrays):
        tensor = TensorState._blank()
        tensor._data = data
        tensor._version_counter = Version()
        tensor._device = device
        outputs.append(tensor)
    return outputs


def _views_on_device(graph: OpGraph, arrays: list, tensors: list, device) -> list | None:
    """The result of an op that only rearranges its one tensor argument (a chain of
    slice, reshape, transpose, broadcast_to nodes) as a view of the tensor's device
    array, sharing its version counter; None where it is not one (a kernel runs)."""
    if len(arrays) != 1 or len(tensors) != 1 or graph.fixed or graph.tuple_result:
        return None
    value, data = graph.inputs[0], arrays[0]
    for node in graph.steps:
        if node.primitive.name not in VIEW_PRIMITIVES or node.inputs != (value,):
            return None
        try:
            data = device_view(data, node)
        except (NotImplementedError, ValueError, IndexError, TypeError):
            data = None   # (a layout Numba's device arrays cannot view: the kernel copies)
        if data is None:
            return None
        value = node.out
    if graph.outputs != (value,):
        return None
    tensor = TensorState._blank()
    tensor._data = data
    tensor._version_counter = tensors[0]._version_counter
    tensor._device = device
    return [tensor]


def _record(name: str, graph: OpGraph, args, arrays: list, outputs: list) -> None:
    edges = []
    for arg in args:
        if isinstance(arg, TensorState):
            edges.append(arg._edge())
        elif isinstance(arg, np.ndarray):
            # A copy, as PyTorch turns an ndarray operand into a tensor: the caller may
            # change the array before backward(), and the gradient needs it as it was.
            edges.append(Edge(Constant(np.array(arrays[len(edges)])), 0, None))
        elif isinstance(arg, (list, tuple)):
            edges.append(Edge(Constant(arrays[len(edges)]), 0, None))   # np.asarray made it
    function = function_class(name)(graph, tuple(edges),
                                    [t._saved() for t in outputs])
    for index, (value, tensor) in enumerate(zip(graph.outputs, outputs)):
        if value.dtype.kind == "f":
            tensor._grad_fn = function
            tensor._output_nr = index
            tensor._requires_grad = True


def _common_device(tensors: list) -> Any:
    if not tensors:
        return CPU
    device = tensors[0]._device
    for tensor in tensors[1:]:
        if tensor._device != device:
            raise RuntimeError("Expected all tensors to be on the same device, but found at "
                               f"least two devices, {device} and {tensor._device}!")
    return device


# ---------------------------------------------------------------- views (issue 11, item 3)
# Which live tensors view another's storage (an op's result sharing its argument's
# version counter: a slice, reshape, transpose), so that an assignment recorded for
# autograd can refuse to change values that some other tensor's recorded graph computed.
# Weak on both sides: a view that is gone constrains nothing.

# Keyed by id(): a Tensor compares elementwise, so it cannot be a weak dictionary key;
# each entry holds a weak reference that tells a live key from a reused id.
_views: dict[int, tuple[weakref.ref, list]] = {}       # base -> (base, [views])
_bases: dict[int, tuple[weakref.ref, weakref.ref]] = {}  # view -> (view, root base)


def _forget(table: dict, key: int):
    return lambda _ref: table.pop(key, None)


def note_views(outputs: list, tensors: list) -> None:
    for out in outputs:
        base = next((t for t in tensors if t._version_counter is out._version_counter), None)
        if base is None:
            continue
        root = base_of(base)
        root = base if root is None else root   # (not `or`: a Tensor's truth is its value)
        for owner in {id(base): base, id(root): root}.values():
            entry = _views.get(id(owner))
            if entry is None or entry[0]() is not owner:
                entry = _views[id(owner)] = (weakref.ref(owner, _forget(_views, id(owner))), [])
            if len(entry[1]) >= 64:   # a base read in a loop: drop the views that are gone
                entry[1][:] = [r for r in entry[1] if r() is not None]
            entry[1].append(weakref.ref(out))
        _bases[id(out)] = (weakref.ref(out, _forget(_bases, id(out))), weakref.ref(root))


def base_of(tensor: TensorState) -> TensorState | None:
    """The live tensor whose storage `tensor` views, if any."""
    entry = _bases.get(id(tensor))
    return entry[1]() if entry is not None and entry[0]() is tensor else None


def views_of(tensor: TensorState) -> list:
    """The live tensors viewing the storage of `tensor`."""
    entry = _views.get(id(tensor))
    if entry is None or entry[0]() is not tensor:
        return []
    return [v for v in (r() for r in entry[1]) if v is not None]


def tracing() -> bool:
    """Whether a graph is being built (compile_grad is tracing a function)."""
    return is_building()


# ---------------------------------------------------------------- the fast path (issue 12, eager per-op cost)
# An eager op of tensors and Python numbers, after its first call, is one dictionary
# lookup by (op, argument shapes and dtypes, numbers, params) and a run of the NumPy
# function(s) of its OpGraph, precomputed: no argument signature in strings, no
# dictionary of values, one error-state switch per op instead of one per node, no
# result cast or reshape where NumPy's result is right already, and no search for
# shared memory where the result is a new array. What it cannot take (arrays or lists
# as arguments, traced or non-CPU tensors, unhashable params) goes the general way,
# `apply`, which is the reference for what this does.

MISS = object()   # apply_fast: the arguments need the general way


def apply_fast(build, args, params: dict, grad_fn: str | None):
    """`apply`'s result, or `MISS` where the arguments are not all eager CPU tensors
    and Python numbers (the caller then takes the general way)."""
    key = [build]
    append = key.append
    tensor_type = TensorState._result_type
    for arg in args:
        cls = arg.__class__
        if cls is float or cls is int or cls is bool:
            append(cls)
            # -0.0 == 0.0, but x * -0.0 is not x * 0.0; and NaN equals no NaN
            append(arg if arg and arg == arg else repr(arg))
            continue
        if cls is not tensor_type and not isinstance(arg, TensorState):
            return MISS
        if arg._mode is not EAGER or arg._device is not CPU:
            return MISS
        data = arg._data
        append(data.shape)
        append(data.dtype)
    if params:
        append(tuple(params.items()))
    key = tuple(key)
    try:
        op = _fast_ops.get(key)
    except TypeError:   # an unhashable param
        return MISS
    if op is None:
        op = _fast_op(build, args, params, key)
    return op.run(args, grad_fn)


class _OpTable(dict):
    """`_fast_ops`: a dict whose clear() also empties the tables of the same FastOps
    that fast functions keep by keys of their own (`fast_reduction`)."""

    def __init__(self) -> None:
        super().__init__()
        self.also: list[dict] = []

    def clear(self) -> None:
        super().clear()
        for table in self.also:
            table.clear()


_fast_ops: dict[tuple, "FastOp"] = _OpTable()


def _fast_op(build, args, params: dict, key: tuple) -> "FastOp":
    signature = tuple((a._data.shape, a._data.dtype.str) if isinstance(a, TensorState)
                      else (type(a), repr(a)) for a in args)
    graph = op_graph(build, args, params, signature)
    if len(_fast_ops) >= MAX_OP_GRAPHS:
        _fast_ops.clear()
    op = _fast_ops[key] = FastOp(graph, [i for i, a in enumerate(args)
                                         if isinstance(a, TensorState)], len(args))
    op.plain = _plain(op, graph, args)
    return op


def _edges(tensors) -> list:
    """The edges of a recorded op to its tensor arguments (`tensor._edge()` of each,
    written out: a hot path of every recorded eager op), as plain tuples: an `Edge`
    (a NamedTuple, whose constructor is a Python call) costs three times as much."""
    edges = []
    for argument in tensors:
        function = argument._grad_fn
        if function is not None:
            edges.append((function, argument._output_nr, None))
        elif argument._requires_grad:   # a leaf: the edge names it (see graph_nodes)
            edges.append((argument, 0, argument._version_counter.value))
        else:   # data that needs no gradient
            counter = argument._version_counter
            edges.append((_constant(argument._data, counter), 0, counter.value))
    return edges


class FastOp:
    """One OpGraph, ready to run on the data of the tensors at `positions`."""

    __slots__ = ("graph", "positions", "compute", "fresh", "single", "differentiable",
                 "constant", "function_name", "function_type", "run", "derived_name", "ufunc",
                 "plain", "whole_axes")

    def __init__(self, graph: OpGraph, positions: list[int], count: int) -> None:
        self.graph = graph
        # None where every argument is a tensor (most ops): the arguments themselves.
        self.positions = None if len(positions) == count else positions
        # Per output: whether a new array from `compute` is a tensor of its own (not
        # an argument returned as it is, nor a constant of the OpGraph).
        self.fresh = [graph.aliases[i] is None and v not in graph.fixed
                      for i, v in enumerate(graph.outputs)]
        # One output computed by one node (add, tanh, matmul, sum): `compute` returns
        # the array itself, and the result is a new tensor unless it is an argument's.
        self.single = _single_node(graph) and not graph.tuple_result and self.fresh[0]
        self.compute = _single_step(graph, graph.steps[0]) if self.single else _compute(self, graph)
        self.function_name, self.function_type = None, None
        self.plain = None   # see `_plain`: set by `_fast_op`, which has the arguments
        self.whole_axes = None   # the axes of a plain whole sum (`_whole_sum`)
        self.derived_name = None   # fast_binary's grad_fn of these argument types, once asked
        # The outputs a recorded op gives a grad_fn: the floating-point ones.
        self.differentiable = [i for i, v in enumerate(graph.outputs) if v.dtype.kind == "f"]
        # A read-only result that reads no argument's data (fill_'s value broadcast to
        # the tensor's shape: only its shape and dtype matter): computed once, and
        # each call has a view of it.
        self.constant = None
        if self.single and not set(graph.steps[0].inputs) & set(graph.inputs):
            result = self.compute([])
            if not result.flags.writeable:
                self.constant = result
        # The common case, written out: see `_direct_runner`.
        direct = _direct_runner(self, graph) if self.single and self.constant is None else None
        self.run = direct if direct is not None else self._run
        # For fast_inplace: the ufunc of a direct op of two tensors (np.subtract).
        node = graph.steps[0] if direct is not None else None
        self.ufunc = node.primitive.impl if (
            node is not None and self.positions is None and len(graph.inputs) == 2
            and not node.params and isinstance(node.primitive.impl, np.ufunc)) else None

    def _run(self, args, grad_fn: str | None):   # `run`, where `_direct_runner` gives none
        tensors = args if self.positions is None else [args[i] for i in self.positions]
        arrays = [t._data for t in tensors]
        if not self.single:
            return self._run_general(args, grad_fn, tensors, arrays)
        constant = self.constant
        if constant is not None:
            data = constant.view()
        else:
            data = self.compute(arrays)
            if data.base is not None or not _not_in(data, arrays):   # a view, or an argument
                return self._run_general(args, grad_fn, tensors, arrays, [data])
        cls = TensorState._result_type
        tensor = cls.__new__(cls)   # a new array: its own storage and version (made when read)
        tensor._data = data
        if grad_fn is not None and _grad_state.enabled:
            for argument in tensors:
                if argument._requires_grad:
                    self._record(grad_fn, tensors, [tensor])
                    break
        return tensor

    def _run_general(self, args, grad_fn: str | None, tensors, arrays: list,
                     results: list | None = None):
        outputs = self._outputs(args, tensors, arrays, results)
        if grad_fn is not None and _grad_state.enabled:
            for argument in tensors:
                if argument._requires_grad:
                    self._record(grad_fn, tensors, outputs)
                    break
        return tuple(outputs) if self.graph.tuple_result else outputs[0]

    def _record(self, grad_fn: str, tensors, outputs: list) -> None:
        """`_record` for arguments that are tensors and numbers (numbers have no edge)."""
        edges = _edges(tensors)
        saved = []
        for tensor in outputs:
            counter = tensor._version_counter
            saved.append((tensor._data, counter, counter.value))   # a Saved, as a plain tuple
        if grad_fn != self.function_name:   # (one name per op, nearly always)
            self.function_name, self.function_type = grad_fn, function_class(grad_fn)
        function = self.function_type(self.graph, tuple(edges), saved)
        for index in self.differentiable:
            tensor = outputs[index]
            tensor._grad_fn = function
            tensor._output_nr = index
            tensor._requires_grad = True

    def _record_one(self, grad_fn: str, tensors, tensor) -> None:
        """`_record` of one new output (at version 0, its version counter not made
        yet), as `_direct_runner` makes it."""
        if grad_fn is not self.function_name and grad_fn != self.function_name:
            self.function_name, self.function_type = grad_fn, function_class(grad_fn)
        # Function(graph, edges, saved), without the call of its __init__
        function = _new(self.function_type)
        function.graph = self.graph
        edges = []
        for argument in tensors:   # `_edges`, its two common kinds written out (no call)
            source = argument._grad_fn
            if source is not None:
                edges.append((source, argument._output_nr, None))
            elif argument._requires_grad:
                edges.append((argument, 0, argument._version_counter.value))
            else:
                edges += _edges((argument,))
        function.edges = tuple(edges)
        # A Saved, as a plain tuple; the counter None: the result's own, made when
        # read (state.py's `_share_saved`), as most results' never are.
        function.saved = [(tensor._data, None, 0)]
        function.seq = next(_function_sequence)
        function.retained = None
        if self.differentiable:
            tensor._grad_fn = function
            tensor._requires_grad = True   # (_output_nr: 0, the class's default)

    def _outputs(self, args, tensors, arrays: list, results: list | None = None) -> list:
        """The op's results as tensors: a new array is a tensor of its own; an argument,
        a view of one or a constant goes through `_output`."""
        if results is None:
            results = self.compute(arrays)
        outputs = []
        for index, data in enumerate(results):
            if self.fresh[index] and data.base is None and _not_in(data, arrays):
                tensor = TensorState._blank()
                tensor._data = data
                tensor._version_counter = Version()
            else:
                tensor = _output(data, self.graph, index, args, arrays, CPU)
                note_views([tensor], tensors)
            outputs.append(tensor)
        return outputs


_new = object.__new__
_function_sequence = graph_nodes_sequence
_constant = Constant


def _not_in(data: np.ndarray, arrays: list) -> bool:
    for array in arrays:
        if array is data:
            return False
    return True


def _single_node(graph: OpGraph) -> bool:
    return (len(graph.steps) == 1 and graph.steps[0].outputs == graph.outputs
            and len(graph.outputs) == 1 and not graph.steps[0].primitive.multiple_results)


def _compute(op: FastOp, graph: OpGraph):
    """A function of the argument arrays giving the OpGraph's output arrays, as
    `run_node` computes them, under one error state."""
    # The values of the nodes without inputs are the graph's constants.
    whole = Graph(graph.inputs, graph.steps, graph.outputs, tuple(graph.fixed.items()))
    prepared = evaluator(whole, host_impl)
    calls = 0

    def first_calls(arrays):
        # An op graph run a third time is written out as code (ir.generated_evaluator),
        # which replaces this: an op seen once or twice (a new number each time) does
        # not pay for writing it.
        nonlocal calls
        calls += 1
        if calls == 2:
            # (An op returning an argument as it is stays on the interpreter, which
            # gives that argument's array, as `_outputs` expects.)
            op.compute = _repeated(whole, all(alias is None for alias in graph.aliases))
        return prepared(arrays)
    return first_calls


# An op graph of several elementwise and reduction nodes over large arrays (softmax,
# log_softmax: 2.2 ms for 4096x256 float32 in NumPy's five passes over memory, 0.36
# in PyTorch's one kernel) runs through compiled, fused kernels once its runs have
# cost what compiling it would, as a backward plan does (engine.should_compile:
# interpreted until then; a kernel compiled before loads from the disk cache in
# milliseconds). Other op graphs (indexing, products, one node) stay on the
# interpreter, whose NumPy calls are already what a kernel would do.
_FUSIBLE_KINDS = frozenset({ELEMENTWISE, REDUCTION})


def _repeated(whole: Graph, compilable: bool):
    """The compute of an op graph run a third time: written out as code, and compiled
    once repeated enough where that pays."""
    evaluate = generated_evaluator(whole, host_impl)
    nodes = [n for n in whole.nodes if n.primitive.name != "const"]
    if not compilable or len(nodes) < 2 or any(n.primitive.kind not in _FUSIBLE_KINDS
                             or n.primitive.multiple_results for n in nodes):
        return evaluate
    plan = engine.BackwardPlan(whole, [])   # (a plan for this graph: runs and costs)
    if plan.largest < engine.COMPILE_MIN_ELEMENTS:
        return evaluate

    def compute(arrays: list) -> list:
        plan.runs += 1
        if not engine.should_compile(plan):
            return evaluate(arrays)
        if plan.executable is None:
            plan.executable = compile_graph(whole)
        return engine.owned(plan.executable([np.ascontiguousarray(a) for a in arrays]), arrays)
    return compute


def _single_step(graph: OpGraph, node):
    """`_compute` for a graph of one node (and constants): the output array itself."""
    impl, attrs, dtype, shape = prepared_impl(node, host_impl), node.attrs, node.out.dtype, \
        node.out.shape
    slots = [graph.inputs.index(v) if v in graph.inputs else None for v in node.inputs]
    if slots == list(range(len(graph.inputs))):   # f(*arguments): add(a, b), tanh(x)
        def arguments(arrays):
            return arrays
    else:   # a constant among them (x * 2.0), or an argument read twice
        template = [None if s is not None else graph.fixed[v] for s, v in zip(slots, node.inputs)]
        places = [(p, s) for p, s in enumerate(slots) if s is not None]

        def arguments(arrays):
            values = template.copy()
            for place, slot in places:
                values[place] = arrays[slot]
            return values

    ndarray = np.ndarray

    def compute(arrays):
        token = quiet()
        try:
            result = impl(*arguments(arrays), **attrs)
        except BoundsError as error:   # as run_node: say where the user indexed
            raise BoundsError(located(bare(error), node.source)) from None
        finally:
            loud(token)
        if result.__class__ is not ndarray or result.dtype is not dtype or result.shape != shape:
            result = conformed(result, dtype, shape)
        return result
    return compute


# ---------------------------------------------------------------- fewer layers (issue 12, eager speed, round 2)
# The common eager op (`a + b`, `x * 2.0`, `tanh(x)` on CPU tensors: one NumPy call
# giving a new array) costs little more than NumPy's call when the layers between
# the operator and NumPy go: `_direct_runner` is `FastOp.run` written out for one
# node over its tensor arguments (no argument lists, no template of constants), and
# `fast_unary`/`fast_binary`/`fast_reduction` are the public functions and Tensor's
# operators, looking their FastOp up by `apply_fast`'s key themselves. Anything
# else, or a first call, goes through the function they stand for.

def _direct_runner(op: FastOp, graph: OpGraph):
    """`op.run` for one node reading its one or two tensor arguments, in order
    (add(a, b), tanh(x), sum(x, axes)), or one tensor and a number (x * 2.0, 2.0 - x);
    None for any other op."""
    node = graph.steps[0]
    inputs, tensors = list(node.inputs), list(graph.inputs)
    impl, dtype, shape, source = prepared_impl(node, host_impl), node.out.dtype, node.out.shape, \
        node.source
    attrs = node.attrs
    ndarray, state, general, record = np.ndarray, _grad_state, op._run_general, op._record_one
    quietly = _quietly
    cls = TensorState._result_type
    new = cls.__new__

    def failed(error: BoundsError):   # as run_node: say where the user indexed
        return BoundsError(located(bare(error), source))

    if len(tensors) == 1 and inputs == tensors:
        position = 0 if op.positions is None else op.positions[0]

        def run(args, grad_fn):
            x = args[position]
            xd = x._data
            try:
                try:
                    data = quietly(impl, xd, **attrs)
                except RuntimeError as error:
                    data = _quiet_call(error, impl, xd, **attrs)
            except BoundsError as error:
                raise failed(error) from None
            if data.__class__ is not ndarray or data.dtype is not dtype or data.shape != shape:
                data = conformed(data, dtype, shape)
            if data.base is not None or data is xd:   # a view, or the argument
                return general(args, grad_fn, [x], [xd], [data])
            tensor = new(cls)
            tensor._data = data   # (its own version counter: made when read, see state.py)
            if grad_fn is not None and x._requires_grad and state.enabled:
                record(grad_fn, (x,), tensor)
            return tensor
        return run
    if len(tensors) == 1 and len(inputs) == 2 and tensors[0] in inputs \
            and (inputs[0] in graph.fixed or inputs[1] in graph.fixed):
        position = 0 if op.positions is None else op.positions[0]
        first = inputs[0] is tensors[0]   # x OP number, else number OP x
        number = graph.fixed[inputs[1] if first else inputs[0]]

        def run(args, grad_fn):
            x = args[position]
            xd = x._data
            a, b = (xd, number) if first else (number, xd)
            try:
                try:
                    data = quietly(impl, a, b, **attrs)
                except RuntimeError as error:
                    data = _quiet_call(error, impl, a, b, **attrs)
            except BoundsError as error:
                raise failed(error) from None
            if data.__class__ is not ndarray or data.dtype is not dtype or data.shape != shape:
                data = conformed(data, dtype, shape)
            if data.base is not None or data is xd or data is number:
                return general(args, grad_fn, [x], [xd], [data])
            tensor = new(cls)
            tensor._data = data   # (its own version counter: made when read, see state.py)
            if grad_fn is not None and x._requires_grad and state.enabled:
                record(grad_fn, (x,), tensor)
            return tensor
        return run
    if op.positions is not None or inputs != tensors or len(tensors) != 2:
        return None

    def run(args, grad_fn):
        a, b = args
        ad, bd = a._data, b._data
        try:
            try:
                data = quietly(impl, ad, bd, **attrs)
            except RuntimeError as error:
                data = _quiet_call(error, impl, ad, bd, **attrs)
        except BoundsError as error:
            raise failed(error) from None
        if data.__class__ is not ndarray or data.dtype is not dtype or data.shape != shape:
            data = conformed(data, dtype, shape)
        if data.base is not None or data is ad or data is bd:
            return general(args, grad_fn, args, [ad, bd], [data])
        tensor = new(cls)
        tensor._data = data   # (its own version counter: made when read)
        if grad_fn is not None and (a._requires_grad or b._requires_grad) and state.enabled:
            record(grad_fn, args, tensor)
        return tensor
    return run


def fast_unary(build, grad_fn: str, general):
    """`general(x)` (a public function applying `build` to x), looking up the FastOp
    of an eager CPU tensor directly."""
    get = _fast_ops.get
    state, new, quietly = _grad_state, object.__new__, _quietly

    def function(x):
        tensor_type = _result_type
        if x.__class__ is tensor_type and x._mode is EAGER and x._device is CPU:
            xd = x._data
            op = get((build, xd.shape, xd.dtype))
            if op is not None:
                plain = op.plain
                if plain is None:
                    return op.run((x,), grad_fn)
                try:
                    data = quietly(plain, xd)   # (see `_plain`)
                except RuntimeError as error:
                    data = _quiet_call(error, plain, xd)
                tensor = new(tensor_type)
                tensor._data = data
                if x._requires_grad and state.enabled:
                    op._record_one(grad_fn, (x,), tensor)
                return tensor
        return general(x)
    _named_as(function, general)
    return function


def fast_binary(build, grad_fn, general, reflected: bool = False):
    """`general(a, b)` (or `general(b, a)`, `reflected`: Tensor's __radd__), looking up
    the FastOp of eager CPU tensors and Python numbers directly. `grad_fn`: a name, or
    a function of the two arguments' data (or numbers) giving it (matmul's, pow's:
    fixed by the argument types, so asked once per FastOp)."""
    get = _fast_ops.get
    named = isinstance(grad_fn, str)
    state, new, quietly = _grad_state, object.__new__, _quietly

    def name_of(op: FastOp, a, b) -> str:
        name = op.derived_name
        if name is None:
            name = op.derived_name = grad_fn(a, b)
        return name

    def function(a, b):
        if reflected:
            a, b = b, a
        tensor_type = _result_type
        ca, cb = a.__class__, b.__class__
        if ca is tensor_type and a._mode is EAGER and a._device is CPU:
            ad = a._data
            if cb is tensor_type:
                if b._mode is EAGER and b._device is CPU:
                    bd = b._data
                    op = get((build, ad.shape, ad.dtype, bd.shape, bd.dtype))
                    if op is not None:
                        plain = op.plain
                        if plain is None:
                            return op.run((a, b), grad_fn if named else name_of(op, ad, bd))
                        try:
                            data = quietly(plain, ad, bd)   # (see `_plain`)
                        except RuntimeError as error:
                            data = _quiet_call(error, plain, ad, bd)
                        tensor = new(tensor_type)
                        tensor._data = data
                        if (a._requires_grad or b._requires_grad) and state.enabled:
                            op._record_one(grad_fn if named else name_of(op, ad, bd), (a, b),
                                           tensor)
                        return tensor
            elif (cb is float or cb is int) and b and b == b:   # (as apply_fast's key)
                op = get((build, ad.shape, ad.dtype, cb, b))
                if op is not None:
                    return op.run((a, b), grad_fn if named else name_of(op, ad, b))
        elif (ca is float or ca is int) and cb is tensor_type and a and a == a \
                and b._mode is EAGER and b._device is CPU:
            bd = b._data
            op = get((build, ca, a, bd.shape, bd.dtype))
            if op is not None:
                return op.run((a, b), grad_fn if named else name_of(op, a, bd))
        return general(a, b)
    _named_as(function, general)
    return function


def fast_reduction(build, grad_fn: str, general):
    """`general(x, *args, **kwargs)` (sum, mean), looking up the FastOp of the whole
    reduction of an eager CPU tensor (no axis, no keepdims) directly."""
    get = _fast_ops.get
    whole = (("axes", None), ("keepdims", False))   # the params, as apply_fast keys them
    # Its FastOps of whole reductions by dtype, then shape, found in `_fast_ops` once:
    # two lookups without a key tuple cost 0.04 us less than apply_fast's key.
    wholes: dict[np.dtype, dict[tuple, FastOp]] = {}
    _fast_ops.also.append(wholes)
    state, new, reduce, asarray = _grad_state, object.__new__, np.add.reduce, np.asarray
    quietly = _quietly

    def function(x, *args, **kwargs):
        tensor_type = _result_type
        if not args and not kwargs and x.__class__ is tensor_type \
                and x._mode is EAGER and x._device is CPU:
            xd = x._data
            shapes = wholes.get(xd.dtype)
            op = shapes.get(xd.shape) if shapes is not None else None
            if op is None:
                op = get((build, xd.shape, xd.dtype, whole))
                if op is not None:   # (as many as `_fast_ops` has: cleared with it)
                    wholes.setdefault(xd.dtype, {})[xd.shape] = op
            if op is not None:
                axes = op.whole_axes
                plain = op.plain
                if axes is None and plain is None:
                    return op.run((x,), grad_fn)
                try:   # (see `_plain`: `_whole_sum`, inline)
                    if axes is None:
                        data = quietly(plain, xd)   # (a whole mean)
                    elif _REDUCE_TO_ARRAY:
                        data = quietly(reduce, xd, axes, xd.dtype, out=...)
                    else:
                        data = asarray(quietly(reduce, xd, axes, xd.dtype))
                except RuntimeError as error:
                    data = _quiet_call(error, plain or _whole_sum(axes), xd)
                tensor = new(tensor_type)
                tensor._data = data
                if x._requires_grad and state.enabled:
                    op._record_one(grad_fn, (x,), tensor)
                return tensor
        return general(x, *args, **kwargs)
    _named_as(function, general)
    return function


def _named_as(function, general) -> None:
    for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(function, attribute, getattr(general, attribute, None))
    function.__wrapped__ = general


def fast_inplace(build, general):
    """`general(x, y)` (Tensor's ``x -= y``: `_assign` of the op's result), computed
    into x's storage by the op's ufunc where nothing is recorded, x and y are eager CPU
    tensors of one dtype, and the op's result has x's shape and dtype: what the
    general way computes (the same ufunc loop) and writes, without a new array."""
    get = _fast_ops.get

    def method(x, y):
        tensor_type = TensorState._result_type
        if x.__class__ is tensor_type and y.__class__ is tensor_type and x._mode is EAGER \
                and y._mode is EAGER and x._device is CPU and y._device is CPU \
                and not (_grad_state.enabled and (x._requires_grad or y._requires_grad)):
            xd, yd = x._data, y._data
            op = get((build, xd.shape, xd.dtype, yd.shape, yd.dtype))
            if op is not None and op.ufunc is not None and yd.dtype is xd.dtype:
                out = op.graph.outputs[0]
                if out.dtype is xd.dtype and out.shape == xd.shape and xd.flags.writeable:
                    try:
                        _quietly(op.ufunc, xd, yd, out=xd)
                    except RuntimeError as error:   # (not entered: nothing written yet)
                        _quiet_call(error, op.ufunc, xd, yd, out=xd)
                    x._version_counter.bump()
                    return x
        return general(x, y)
    _named_as(function=method, general=general)
    return method


# ---------------------------------------------------------------- plain ops (issue 12, eager per-op cost, round 3)
# `a + b`, `exp(x)`, `x.sum()` of eager CPU tensors: the op is one NumPy call whose
# result is the new tensor's data as it is. Where the FastOp's one node is a ufunc
# (or the whole sum) of its tensor arguments, in order, and its result on the first
# call's arrays is a new array of the op's dtype and shape, that call is the op: a
# ufunc's result dtype and shape follow from its arguments' dtypes and shapes, which
# the FastOp's key fixes, and without `out=` it is a new array. The fast functions
# (`fast_binary` ...) then run it under the error state of `quiet` (`_quietly`), make the tensor
# (its version counter is made when read: state.py) and record it as `_record_one`.
# Everything else keeps `FastOp.run`, which stays the reference.

_result_type = None   # Tensor: `bind_result_type`, from tracer.tensor


def bind_result_type(cls: type) -> None:
    """The class of the tensors ops return (TensorState._result_type), read by the
    fast functions as a global of this module."""
    global _result_type
    _result_type = cls


# `quiet()` as ContextVar.set of NumPy's error state, where NumPy 2 keeps it so.
if getattr(quiet, "func", None) is not None and len(quiet.args) == 1 and not quiet.keywords:
    _quiet_set, _quiet_state = quiet.func, quiet.args[0]   # (ContextVar.set, NumPy's state)
else:
    _quiet_set, _quiet_state = None, None


# `_quietly(f, *args, **kwargs)`: f(*args, **kwargs) under np.errstate(all="ignore"),
# run in a context of its own that holds only that error state (NumPy 2 keeps it in
# a context variable). Entering a prepared context costs a third of switching the
# state in the caller's (`quiet`, then `loud`: ContextVar.set and reset, 0.13 us of
# a 1 us eager op). A context is entered by one thread at a time: where it is in use
# (by another thread), `_quietly` raises RuntimeError before calling f, and
# `_quiet_call` makes the call the other way.
_ENTERED = "cannot enter context"


def _quiet_context():
    if _quiet_state is None:   # (NumPy 1: np.errstate around the call)
        def quietly(function, *args, **kwargs):
            token = quiet()
            try:
                return function(*args, **kwargs)
            finally:
                loud(token)
        return quietly
    context = contextvars.Context()
    context.run(_quiet_set, _quiet_state)
    return context.run


_quietly = _quiet_context()


def _quiet_call(error: RuntimeError, function, *args, **kwargs):
    """`_quietly(function, ...)` that raised `error`: where its context was in use,
    the call under `quiet` in the caller's context; else the call's own error."""
    if not str(error).startswith(_ENTERED):
        raise error
    token = quiet()
    try:
        return function(*args, **kwargs)
    finally:
        loud(token)


# The first call runs a plain op's NumPy call once more, on its arrays, to see its
# result: done for small arrays only, where the Python around the call matters.
PLAIN_TRIAL_MAX = 1 << 16


def _plain(op: FastOp, graph: OpGraph, args):
    """The NumPy function of the argument arrays that is the op (see the section
    comment), or None."""
    if op.positions is not None or graph.aliases[0] is not None or graph.tuple_result \
            or len(graph.outputs) != 1:
        return None
    if op.single and op.constant is None:
        function = _one_call(graph)
    else:
        function = _whole_mean(graph)
    if function is None:
        return None
    arrays = [a._data for a in args]
    if sum(a.size for a in arrays) > PLAIN_TRIAL_MAX:   # (no second run of a large first call)
        return None
    token = quiet()
    try:
        result = function(*arrays)
    except Exception:   # noqa: BLE001 (the reference way says what went wrong)
        return None
    finally:
        loud(token)
    out = graph.outputs[0]
    fresh = result.__class__ is np.ndarray and result.base is None and \
        all(result is not a for a in arrays)
    if not (fresh and result.dtype is out.dtype and result.shape == out.shape):
        return None
    if graph.steps[0].primitive.name == "reduce_sum" and len(graph.steps) == 1:
        op.whole_axes = graph.steps[0].attrs["axes"]   # (fast_reduction runs it inline)
    return function


def _one_call(graph: OpGraph):
    """The op's one node as a NumPy call of the argument arrays: a ufunc, or a whole
    sum; None for another node."""
    node = graph.steps[0]
    if list(node.inputs) != list(graph.inputs) or not 1 <= len(graph.inputs) <= 2:
        return None
    impl = node.primitive.impl
    if isinstance(impl, np.ufunc) and impl.nout == 1 and impl.nin == len(node.inputs) \
            and not node.attrs:
        return impl
    if _is_whole_sum(node):
        return _whole_sum(node.attrs["axes"])
    return None


def _is_whole_sum(node) -> bool:
    """A reduce_sum over all axes (no keepdims): a 0-d result."""
    return node.primitive.name == "reduce_sum" and node.attrs.get("keepdims") is False \
        and len(node.attrs) == 2 and node.out.shape == ()


def _whole_mean(graph: OpGraph):
    """`mean(x)` of all of x (ops.mean: a whole sum divided by a constant count) as
    one function of x's array: the same two NumPy calls as the interpreter's, each
    giving a 0-d array; None for any other graph."""
    if len(graph.steps) != 2 or len(graph.inputs) != 1:
        return None
    total, scale = graph.steps
    if not _is_whole_sum(total) or total.inputs != graph.inputs or scale.primitive.impl is not \
            np.divide or scale.attrs or scale.inputs[0] is not total.out or \
            scale.inputs[1] not in graph.fixed or graph.outputs != (scale.out,):
        return None
    whole_sum, count, divide = _whole_sum(total.attrs["axes"]), graph.fixed[scale.inputs[1]], \
        np.divide

    def whole_mean(x: np.ndarray) -> np.ndarray:
        if _REDUCE_TO_ARRAY:
            return divide(whole_sum(x), count, out=...)
        return np.asarray(divide(whole_sum(x), count))
    return whole_mean


def _whole_sum(axes):
    """reduce_sum's impl over all `axes` of an array (no keepdims), and the 0-d array
    `conformed` makes of its NumPy scalar, in one function of the array."""
    reduce, asarray = np.add.reduce, np.asarray

    def whole_sum(x: np.ndarray) -> np.ndarray:
        if _REDUCE_TO_ARRAY:
            return reduce(x, axes, x.dtype, out=...)
        return asarray(reduce(x, axes, x.dtype))
    return whole_sum


def _reduces_to_array() -> bool:
    """Whether NumPy's reductions and ufuncs take ``out=...`` (recent NumPy 2): the
    result as a 0-d array instead of a NumPy scalar, without the scalar and
    np.asarray's copy of it."""
    try:
        total = np.add.reduce(np.ones(2, np.float32), (0,), np.float32, out=...)
        half = np.divide(total, total, out=...)
    except TypeError:
        return False
    return all(r.__class__ is np.ndarray and r.shape == () for r in (total, half)) and half == 1


_REDUCE_TO_ARRAY = _reduces_to_array()
