"""``backward()`` and ``autograd.grad``: PyTorch's entry points over `tracer.engine`.

Differences from PyTorch, on purpose: a graph may be differentiated again after a
backward without ``retain_graph=True``. PyTorch raises there when the graph saved
tensors (and not for ``x.sum()``, which saves none: the seeds call
``y.backward()`` three times on it). Here the recorded IR stays; only the kept
forward results are released, and a later backward recomputes them from the leaves
(after checking that no leaf it reads was modified in place since).
"""
from __future__ import annotations

import numpy as np

from fusegrad.ir.errors import UnsupportedError
from fusegrad.tracer import engine
from fusegrad.tracer.devices import copy_into, host_array, on_device, ones_on_device
from fusegrad.tracer.dtypes import Size
from fusegrad.tracer.executor import wrap
from fusegrad.tracer.graph_nodes import (Constant, Edge, OpGraph,
                                         enable_grad, function_class, is_grad_enabled, no_grad,
                                         set_grad_enabled)
from fusegrad.tracer.state import TensorState

__all__ = ["backward", "grad", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs=None) -> None:
    """Accumulate d(tensors)/d(leaf), weighted by `grad_tensors`, into each leaf's ``.grad``."""
    if grad_tensors is None and inputs is None and not create_graph \
            and tensors.__class__ is TensorState._result_type:
        return _scalar_backward(tensors, retain_graph)   # loss.backward()
    outputs = _tensors(tensors, "tensors")
    seeds = _seeds(outputs, grad_tensors)
    recorded, roots = engine.gather([t._edge() for t in outputs])
    if inputs is not None:
        targets = _tensors(inputs, "inputs")
        if not targets:
            raise RuntimeError("'inputs' argument to backward() cannot be empty.")
        for t in targets:
            if not t._requires_grad:
                raise RuntimeError("One of the differentiated Tensors does not require grad")
        targets = [t for t in targets if recorded.ref(t) is not None]
    else:
        targets = _leaves_and_retained(recorded)
    if targets:
        grads = _differentiate(recorded, roots, seeds, targets, create_graph)
        for tensor, g in zip(targets, grads):
            _accumulate(tensor, g, create_graph)
    if not (create_graph if retain_graph is None else retain_graph):
        _release(recorded)


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None,
         create_graph: bool = False, only_inputs: bool = True, allow_unused: bool | None = None,
         is_grads_batched: bool = False, materialize_grads: bool = False) -> tuple:
    """The gradients of `outputs` with respect to `inputs`, as a tuple; ``.grad`` is untouched."""
    if is_grads_batched:
        raise UnsupportedError("autograd.grad: is_grads_batched=True is not supported by fusegrad")
    outputs = _tensors(outputs, "outputs")
    targets = _tensors(inputs, "inputs")
    for t in targets:
        if not t._requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    seeds = _seeds(outputs, grad_outputs)
    recorded, roots = engine.gather([t._edge() for t in outputs])
    used = [t for t in targets if recorded.ref(t) is not None]
    if len(used) < len(targets) and not (allow_unused or materialize_grads):
        raise RuntimeError("One of the differentiated Tensors appears to not have been used in "
                           "the graph. Set allow_unused=True if this is the desired behavior.")
    found = dict(zip(map(id, used), _differentiate(recorded, roots, seeds, used, create_graph))) \
        if used else {}
    result = []
    for t in targets:
        g = found.get(id(t))
        if g is None and materialize_grads:
            g = wrap(np.zeros_like(t._data))
        result.append(g)
    if not (create_graph if retain_graph is None else retain_graph):
        _release(recorded)
    return tuple(result)


# ---------------------------------------------------------------- helpers

def _tensors(value, what: str) -> list:
    if isinstance(value, TensorState):
        value = [value]
    items = list(value)
    for item in items:
        if not isinstance(item, TensorState):
            raise TypeError(f"{what} must be Tensors, got {type(item).__name__}")
        item._check_eager("backward")
    return items


def _seeds(outputs: list, grad_tensors) -> list:
    """The output cotangents as (array, tensor or None), PyTorch's checks and messages."""
    if grad_tensors is None or isinstance(grad_tensors, (TensorState, np.ndarray, float, int)):
        grad_tensors = [grad_tensors] * (1 if grad_tensors is not None else len(outputs))
    grad_tensors = list(grad_tensors)
    if len(grad_tensors) != len(outputs):
        raise RuntimeError(f"grad_tensors has {len(grad_tensors)} gradients for "
                           f"{len(outputs)} tensors")
    seeds = []
    for i, (out, g) in enumerate(zip(outputs, grad_tensors)):
        if not out._requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have "
                               "a grad_fn")
        if g is None:
            if out._data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            seeds.append((ones_on_device(out._data.shape, out._data.dtype) if on_device(out._data)
                          else np.ones(out._data.shape, out._data.dtype), None))
            continue
        tensor = g if isinstance(g, TensorState) else None
        array = g._data if tensor is not None else np.asarray(g)
        if array.shape != out._data.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of "
                               f"{Size(array.shape)} and output[{i}] has a shape of "
                               f"{Size(out._data.shape)}.")
        if on_device(array) and array.dtype != out._data.dtype:
            array = host_array(array)   # cast on the host: rare (a seed of another dtype)
        seeds.append((array if on_device(array) else array.astype(out._data.dtype, copy=False),
                      tensor))
    return seeds


def _leaves_and_retained(recorded: engine.Recorded) -> list:
    targets = list(recorded.leaves)   # (gather's: the leaf inputs, in order)
    if not recorded.retains:
        return targets
    for f in recorded.functions:
        for ref in (f.retained or {}).values():
            tensor = ref()
            if tensor is not None and tensor._grad_fn is f:
                targets.append(tensor)
    return targets


def _differentiate(recorded, roots: list, seeds: list, targets: list, create_graph: bool) -> list:
    wrt = [recorded.ref(t) for t in targets]
    plan, arrays = engine.differentiate(recorded, roots, wrt, [a for a, _ in seeds])
    devices = [t._device for t in targets]
    if create_graph and is_grad_enabled():
        return _record_gradients(recorded, plan, seeds, arrays, devices)
    return [wrap(a, device=d) for a, d in zip(arrays, devices)]


def _accumulate(tensor, g, create_graph: bool) -> None:
    existing = tensor._grad
    if existing is None:
        tensor._grad = g
    elif create_graph or existing._requires_grad or existing._data.shape != g._data.shape:
        with set_grad_enabled(create_graph):
            tensor._grad = existing + g
    elif existing.is_cuda:   # in place, as on the CPU: the sum on the device, written over
        with set_grad_enabled(False):
            copy_into(existing._data, (existing + g)._data)
        existing._version_counter.bump()
    else:
        np.add(existing._data, g._data, out=existing._data, casting="unsafe")
        existing._version_counter.bump()


def _release(recorded: engine.Recorded) -> None:
    for f in recorded.functions:
        f.saved = None


# ---------------------------------------------------------------- create_graph

def _record_gradients(recorded, plan: engine.BackwardPlan, seeds: list, arrays: list,
                      devices: list) -> list:
    """Gradients that are themselves recorded: the backward graph becomes an op."""
    edges = []
    for value, (kind, where) in zip(plan.graph.inputs, plan.sources):
        if kind == "input":
            edges.append(recorded.inputs[where])
        elif kind == "known":
            edges.append(Edge(recorded.functions[where[0]], where[1], None))
        elif kind == "seed":
            array, tensor = seeds[where]
            # A seed given as an ndarray is copied: the recorded gradient outlives the call.
            edges.append(tensor._edge() if tensor is not None else Edge(Constant(np.array(array)), 0, None))
        else:
            edges.append(Edge(Constant(np.zeros(value.shape, value.dtype)), 0, None))
    tensors = [wrap(a, device=d) for a, d in zip(arrays, devices)]
    if all(isinstance(e[0], Constant) for e in edges):
        return tensors   # the gradients depend on nothing that requires grad
    graph = OpGraph(plan.graph.inputs, plan.graph.nodes, plan.graph.outputs, {})
    producers = {v: n for n in graph.nodes for v in n.outputs}
    first = producers.get(graph.outputs[0]) if graph.outputs else None
    name = (first.primitive.grad_fn if first is not None else None) or "CloneBackward0"
    function = function_class(name)(graph, tuple(edges),
                                    [t._saved() for t in tensors])
    for index, tensor in enumerate(tensors):
        tensor._grad_fn, tensor._output_nr, tensor._requires_grad = function, index, True
    return tensors


# ---------------------------------------------------------------- loss.backward() (issue 12, eager speed, round 2)
# The common call, one tensor and no options, written out: what `backward` does for
# it, without the lists of outputs and seeds, and adding each gradient straight into
# an existing ``.grad`` (a training loop's second step on) instead of wrapping it first.

_ones: dict[tuple, np.ndarray] = {}   # the implicit seed per (shape, dtype): read-only, shared


def _scalar_backward(output, retain_graph: bool | None) -> None:
    if output._mode.traced:
        output._check_eager("backward")
    if not output._requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                           "grad_fn")
    data = output._data
    if data.size != 1:
        raise RuntimeError("grad can be implicitly created only for scalar outputs")
    seed = _ones.get((data.shape, data.dtype)) if data.__class__ is np.ndarray else None
    if seed is None and on_device(data):
        seed = ones_on_device(data.shape, data.dtype)   # made on the GPU: nothing crosses the bus
    elif seed is None:
        seed = np.ones(data.shape, data.dtype)
        if data.__class__ is np.ndarray:
            seed.flags.writeable = False   # shared: the engine copies a gradient that is it
            _ones[(data.shape, data.dtype)] = seed
    recorded, roots = engine.gather([output._edge()])
    targets = _leaves_and_retained(recorded)
    if targets:
        leaf_index = recorded.leaf_index
        wrt = [leaf_index[id(t)] if t._grad_fn is None else recorded.ref(t) for t in targets]
        _, arrays = engine.differentiate(recorded, roots, wrt, [seed])
        for tensor, array in zip(targets, arrays):
            existing = tensor._grad
            if existing is not None and existing.__class__ is TensorState._result_type \
                    and existing._data.__class__ is np.ndarray and array.__class__ is np.ndarray \
                    and not existing._requires_grad and existing._data.shape == array.shape:
                data = existing._data
                if data.dtype is array.dtype:
                    np.add(data, array, out=data)
                else:
                    np.add(data, array, out=data, casting="unsafe")
                existing._version_counter.bump()
            else:
                _accumulate(tensor, wrap(array, device=tensor._device), False)
    if not retain_graph:
        _release(recorded)
