"""Eager tensors: PyTorch-style autograd recorded into the same IR.

Outside `compile_grad` every op goes through `apply`. The op's `ir.ops` builder
emits its IR nodes into a small builder, over placeholder values for the array
arguments (an `OpGraph`, built once per op, params and argument types); the
reference interpreter computes the result from the arguments' data; and when an
argument requires grad, the result's ``grad_fn`` (`graph_nodes.Function`) keeps
the OpGraph and where each argument came from. ``backward()`` joins the recorded
OpGraphs into one graph and differentiates it with the same symbolic pass as
`compile_grad` (see `tracer.engine` and `tracer.autograd`).

`EagerTensorMixin` is the eager state and the eager-only methods of `Tensor`.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any

import numpy as np

from fusegrad.ir.builder import Builder, building
from fusegrad.ir.errors import FusegradError, TraceError, located
from fusegrad.ir.graph import Value
from fusegrad.ir.interpreter import run_node
from fusegrad.tracer import devices, dtypes
from fusegrad.tracer.dtypes import Size
from fusegrad.tracer.eager_methods import EagerMethodsMixin
from fusegrad.tracer.graph_nodes import (AccumulateGrad, Constant, Edge, Function, OpGraph, Saved,
                                         Version, _grad_state, function_class)
from fusegrad.tracer.source import user_line

__all__ = ["EagerTensorMixin", "Size", "apply", "wrap"]

CPU = dtypes.device("cpu")

_NON_LEAF_GRAD = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad "
    "field to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. "
    "If you access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead.")


class EagerTensorMixin(EagerMethodsMixin):
    # Traced mode: the IR value inside compile_grad (None for an eager tensor).
    _value: Value | None = None
    # Eager mode.
    _data: np.ndarray | None = None     # the storage; views share it
    _version_counter: Version | None = None   # bumped by in-place ops, shared by views
    _requires_grad = False
    _grad = None
    _grad_fn: Function | None = None
    _output_nr = 0                      # which output of grad_fn this tensor is
    _accumulator_ref = None
    _device = CPU

    def __init__(self, *args: Any, dtype: Any = None, device: Any = None,
                 requires_grad: bool = False) -> None:
        """The legacy constructor: ``Tensor([1, 2])`` (data) or ``Tensor(2, 3)`` (sizes)."""
        from fusegrad.tracer.creation import legacy_array
        self._init_eager(legacy_array(args, dtype or dtypes.float32), device=device)
        if requires_grad:
            self.requires_grad_(True)

    def _init_traced(self, value: Value) -> None:
        self._value = value

    def _init_eager(self, data: np.ndarray, device: Any = None) -> None:
        self._data = data
        self._version_counter = Version()
        if device is not None:
            self._device = _checked_device(device)

    def _eager_data(self) -> np.ndarray:
        if self._value is not None:
            raise TraceError("a traced tensor has no data while tracing")
        return self._data

    def _shape(self) -> Size:
        return Size(self._value.shape if self._value is not None else self._data.shape)

    @property
    def dtype(self):
        if self._value is not None:
            return self._value.dtype   # traced code works with NumPy dtypes
        return dtypes.as_dtype(self._data.dtype)

    # ------------------------------------------------------------ autograd state

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self._set_requires_grad(flag, "only Tensors of floating point and complex dtype can "
                                      "require gradients")

    def requires_grad_(self, requires_grad: bool = True):
        # PyTorch's three spellings each have their own message; kept verbatim.
        return self._set_requires_grad(requires_grad, "only Tensors of floating point dtype can "
                                                      "require gradients")

    def _set_requires_grad(self, requires_grad: bool, dtype_message: str):
        self._check_eager("requires_grad")
        requires_grad = bool(requires_grad)
        if self._grad_fn is not None:
            if not requires_grad:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach().")
            return self
        if requires_grad and self._data.dtype.kind not in "fc":
            raise RuntimeError(dtype_message)
        self._requires_grad = requires_grad
        return self

    def _python_scalar(self):
        """float(t), int(t): any one-element tensor, with PyTorch's error otherwise."""
        data = self._eager_data()
        if data.size != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return data.reshape(-1)[0].item()

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def grad_fn(self) -> Function | None:
        return self._grad_fn

    @property
    def grad(self):
        if self._grad_fn is not None and self._grad is None and not self.retains_grad:
            warnings.warn(_NON_LEAF_GRAD, UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, EagerTensorMixin):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad of "
                                f"type {type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError("assigned grad has data of a different size")
        self._grad = value

    @grad.deleter
    def grad(self) -> None:
        self._grad = None

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor in later backward calls."""
        if self._grad_fn is None:
            if not self._requires_grad:
                raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
            return
        if self._grad_fn.retained is None:
            self._grad_fn.retained = {}
        self._grad_fn.retained[self._output_nr] = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        retained = self._grad_fn.retained if self._grad_fn is not None else None
        return bool(retained) and self._output_nr in retained

    def backward(self, gradient=None, retain_graph: bool | None = None, create_graph: bool = False,
                 inputs=None) -> None:
        from fusegrad.tracer.autograd import backward
        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    @property
    def data(self):
        self._check_eager("data")
        return wrap(self._data, device=self._device)

    @data.setter
    def data(self, other) -> None:
        self._check_eager("data")
        self._data = other._data if isinstance(other, EagerTensorMixin) else np.asarray(other)

    def detach(self):
        self._check_eager("detach")
        return wrap(self._data, version=self._version_counter, device=self._device)

    def detach_(self):
        self._check_eager("detach_")
        self._grad_fn = None
        self._requires_grad = False
        return self

    @property
    def _version(self) -> int:
        return self._version_counter.value

    # ------------------------------------------------------------ recorded-op plumbing

    def _edge(self) -> Edge:
        """Where an op that reads this tensor finds its value (see graph_nodes)."""
        if self._grad_fn is not None:
            return Edge(self._grad_fn, self._output_nr, None)
        version = self._version_counter.value
        if self._requires_grad:
            return Edge(self._accumulator(), 0, version)
        return Edge(Constant(self._data, self._version_counter), 0, version)

    def _saved(self) -> Saved:
        """This tensor's data as a recorded op's result, at its current version."""
        return Saved(self._data, self._version_counter, self._version_counter.value)

    def _accumulator(self) -> AccumulateGrad:
        # Cached weakly so that next_functions shows one object per leaf, without a
        # reference cycle between the leaf and its accumulator.
        accumulator = self._accumulator_ref() if self._accumulator_ref is not None else None
        if accumulator is None:
            accumulator = AccumulateGrad(self)
            self._accumulator_ref = weakref.ref(accumulator)
        return accumulator

    def _check_eager(self, what: str) -> None:
        if self._value is not None:
            raise TraceError(f"{what} is not available on a traced tensor inside compile_grad "
                             "(the function is traced into a graph; gradients are its outputs)")


# ---------------------------------------------------------------- apply

_tensor_class = None


def tensor_class():
    global _tensor_class
    if _tensor_class is None:
        from fusegrad.tracer.tensor import Tensor
        _tensor_class = Tensor
    return _tensor_class


def wrap(data: np.ndarray, *, requires_grad: bool = False, version: Version | None = None,
         device: Any = None):
    """A leaf tensor over `data` (no copy); `version`: the counter of the storage it views."""
    tensor = tensor_class().__new__(tensor_class())
    tensor._data = data
    tensor._version_counter = version if version is not None else Version()
    if device is not None and device != CPU:
        tensor._device = _checked_device(device)
    if requires_grad:
        tensor._set_requires_grad(True, "Only Tensors of floating point and complex dtype can "
                                        "require gradients")
    return tensor


def apply(build, args, params, grad_fn: str | None):
    """Run the ir.ops builder `build` on eager tensors, numbers and arrays."""
    arrays: list[np.ndarray] = []
    tensors: list[EagerTensorMixin] = []
    signature: list[tuple] = []
    for arg in args:
        if isinstance(arg, EagerTensorMixin):
            data = arg._data
            tensors.append(arg)
        elif isinstance(arg, (np.ndarray, list, tuple)):
            data = np.asarray(arg)
        else:
            signature.append((type(arg), repr(arg)))   # repr: -0.0 is not 0.0
            continue
        arrays.append(data)
        signature.append((data.shape, data.dtype.str))
    device = _common_device(tensors)
    graph = op_graph(build, args, params, tuple(signature))
    env = dict(graph.fixed)
    env.update(zip(graph.inputs, arrays))
    for node in graph.steps:
        env[node.out] = run_node(node, [env[v] for v in node.inputs])
    outputs = [_output(env[value], graph, i, args, arrays, device)
               for i, value in enumerate(graph.outputs)]
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
        if isinstance(arg, (EagerTensorMixin, np.ndarray, list, tuple)):
            data = arg._data if isinstance(arg, EagerTensorMixin) else np.asarray(arg)
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
        raise type(error)(located(str(error), user_line())) from None
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
        argument = [a for a in args if isinstance(a, (EagerTensorMixin, np.ndarray, list, tuple))][alias]
        version = argument._version_counter if isinstance(argument, EagerTensorMixin) else None
    elif graph.outputs[index] in graph.fixed:
        data = np.array(data)   # a constant of the op graph: shared, never handed out
    else:
        for arg in args:
            if isinstance(arg, EagerTensorMixin) and np.may_share_memory(data, arg._data):
                version = arg._version_counter   # a view (reshape, transpose) shares its base's
                break
    tensor = tensor_class().__new__(tensor_class())
    tensor._data = data
    tensor._version_counter = version if version is not None else Version()
    if device is not CPU:
        tensor._device = device
    return tensor


def _record(name: str, graph: OpGraph, args, arrays: list, outputs: list) -> None:
    edges = []
    for arg in args:
        if isinstance(arg, EagerTensorMixin):
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


def _checked_device(spec: Any) -> dtypes.device:
    device = dtypes.device(spec)
    if device.type == "cuda":
        devices.require_cuda()
        if device.index is None:
            device = dtypes.device("cuda", 0)
    return device
