"""`compile_grad`: trace once per signature, differentiate, optimise, fuse, run."""
from __future__ import annotations

import functools
import inspect
import numbers
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from fusegrad import ir
from fusegrad.ir.errors import DTypeError, FusegradError, ShapeError, TraceError, bare
from fusegrad.ir.graph import Graph, Node, Value, first_backward_node
from fusegrad.runtime import Executable, compile_graph
from fusegrad.runtime.device_arrays import is_device_array, shape_and_dtype
from fusegrad.runtime.devices import require_cuda
from fusegrad.tracer import distributed, pytree
from fusegrad.tracer.source import function_location
from fusegrad.tracer.captures import Captured, capture
from fusegrad.tracer.dispatch import Tracing
from fusegrad.tracer.pytree import ArgumentError
from fusegrad.tracer.tensor import Tensor
from fusegrad.tracer.transforms import tree_flatten, tree_unflatten


@dataclass(frozen=True)
class Traced:
    """Everything compiled for one signature."""

    forward: Graph          # the function as traced
    joint: Graph            # forward + backward, optimised
    executable: Executable
    wrt_leaves: tuple[int, ...]     # the array leaves (graph inputs) differentiated, in order
    leaf_labels: tuple[str, ...]    # per array leaf, for messages: "argument 1 (params['w'])"
    grad_keys: tuple | None  # per differentiated argument its pytree key; None: all plain arrays
    single_grad: bool       # wrt=k returns one gradient instead of a tuple
    captured: Captured | None       # closure cells and globals read (rebinding them retraces)
    # has_aux=True: the aux tree's spec and, per leaf, its output index or (constant,)
    aux: tuple | None = None


# Rebinding a name the function reads retraces it; this many times, and the user is
# told once that passing the value as an argument would avoid it (torch.compile warns
# at its recompile limit, also 8).
REBIND_WARNING = 8

# Tags the cache key of a call with keyword arguments (that binding left as keywords).
KEYWORDS = "keywords"
# Tags the cache key of a has_aux=True function (its graph has more outputs).
HAS_AUX = ("has_aux",)


class CompiledGrad:
    """The object `@compile_grad` returns: call it for (value, grads)."""

    def __init__(self, fn: Callable, wrt, device: str, fuse: bool, has_aux: bool = False) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda":
            require_cuda()
        self.fn = fn
        self.wrt = wrt
        self.device = device
        self.fuse = fuse
        self.has_aux = bool(has_aux)
        self._cache: dict[tuple, Traced] = {}
        # The same traces by a cheaper key, for calls of plain C-contiguous arrays
        # only (see _fast_key): most calls, and a small call is mostly lookup overhead.
        # Each with whether its result is plain (value, grads): no aux, no pytrees.
        self._fast: dict[tuple, tuple[Traced, bool]] = {}
        self._names = _parameter_names(fn)
        self._rebinds = 0
        self._call_signature: inspect.Signature | None = None
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any):
        fast = None if kwargs else _fast_key(args)
        if fast is not None:
            found = self._fast.get(fast)
            if found is not None:
                traced, plain = found
                if traced.captured is None or traced.captured.rebound() is None:
                    outputs = traced.executable(args)
                    if plain:   # (value, grads) and nothing to rearrange: most calls
                        return outputs[0], (outputs[1] if traced.single_grad else tuple(outputs[1:]))
                    return _result(traced, outputs)
        if distributed.holds_dask(args, kwargs):
            traced, value, grads = distributed.call(self, args, kwargs)
            return value, self._structured(traced, grads)
        traced, leaves = self._lookup(args, kwargs)
        if fast is not None and all(leaf is arg for leaf, arg in zip(leaves, args)):
            self._fast[fast] = traced, traced.aux is None and traced.grad_keys is None
        return _result(traced, traced.executable(leaves))

    @staticmethod
    def _structured(traced: Traced, grads: tuple):
        """The flat gradients as the call returns them: in the arguments' pytrees, and
        bare for wrt=k."""
        if traced.grad_keys is not None:
            grads = _assemble(traced.grad_keys, grads)
        return grads[0] if traced.single_grad else grads

    def dump(self, *args: Any, **kwargs: Any) -> str:
        """Forward IR, backward IR, kernel plan and generated source for these arguments."""
        return _dump_text(self.fn, self.trace(*args, **kwargs))

    def trace(self, *args: Any, **kwargs: Any) -> Traced:
        """What these arguments compile to (traced and planned; kernels compile on use)."""
        return self._lookup(args, kwargs)[0]

    def leaves(self, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        """The arrays these arguments hand the compiled graph, in its input order."""
        return self._lookup(args, kwargs)[1]

    def _lookup(self, args: tuple, kwargs: dict) -> tuple[Traced, list]:
        """The trace for these arguments (made on a miss, or when a name the function
        reads was rebound since) and the arrays to run it on. The per-call path."""
        kwnames = ()
        if kwargs:
            args, kwnames = self._bind(args, kwargs)
        leaves, key = _signature(args, self._names)
        if kwnames:
            key += ((KEYWORDS, kwnames),)
        if self.has_aux:
            key += (HAS_AUX,)
        traced = self._cache.get(key)
        if traced is None or (traced.captured is not None and traced.captured.rebound()):
            traced = self._retrace(key, args, kwnames, leaves, traced)
        return traced, leaves

    # ------------------------------------------------------------ tracing

    def _retrace(self, key: tuple, args: Sequence[Any], kwnames: tuple, leaves: list,
                 stale: Traced | None) -> Traced:
        if stale is not None:
            self._rebinds += 1
            if self._rebinds == REBIND_WARNING:
                warnings.warn(f"{function_location(self.fn)} was traced again {REBIND_WARNING} times because "
                              f"a name it reads from outside ({stale.captured.rebound()!r}) was "
                              f"rebound between calls; pass that value as an argument instead",
                              stacklevel=3)
        traced = self._cache[key] = self._trace(args, kwnames, leaves)
        return traced

    def _trace(self, args: Sequence[Any], kwnames: tuple, leaves: list) -> Traced:
        labels = self._labels(len(args), kwnames)
        keys, ranges = _argument_leaves(args)
        paths = [p for k, label in zip(keys, labels) for p in pytree.leaf_paths(k, label)]
        owner = [i for i, r in enumerate(ranges) for _ in r]
        wrt, single = _resolve_wrt(self.wrt, leaves, ranges, labels,
                                   self._parameter_positions(len(args), kwnames), function_location(self.fn))
        wrt_leaves = tuple(j for i in wrt for j in ranges[i] if leaves[j].dtype.kind == "f")
        names = _unique([pytree.identifier(p) for p in paths])
        if self.device == "cpu":
            _refuse_device_arrays(leaves, owner, paths)
        inputs = tuple(Value(*_shape_and_dtype(a), name=n) for a, n in zip(leaves, names))
        captured = capture(self.fn)
        with Tracing() as builder:
            tensors = iter([Tensor._traced(v) for v in inputs])
            traced_args = [pytree.substitute(a, lambda _: next(tensors)) for a in args]
            positional = len(args) - len(kwnames)
            result = self.fn(*traced_args[:positional],
                             **dict(zip(kwnames, traced_args[positional:])))
        aux_outputs, aux = (), None
        if self.has_aux:
            result, aux_outputs, aux = _split_aux(result, self.fn)
        out = _check_result(result, self.fn, builder.nodes)
        forward = builder.finish(inputs, (out,) + aux_outputs)
        joint = ir.optimize(ir.vjp_graph(forward, list(wrt_leaves)))
        executable = compile_graph(joint, device=self.device, fuse=self.fuse)
        plain = all(not isinstance(keys[i][0], str) for i in wrt)
        traced = Traced(forward, joint, executable, wrt_leaves,
                        tuple(f"argument {i} ({p})" for i, p in zip(owner, paths)),
                        None if plain else tuple(keys[i] for i in wrt), single, captured, aux)
        if os.environ.get("FUSEGRAD_DUMP", "").lower() not in ("", "0"):
            print(_dump_text(self.fn, traced), flush=True)
        return traced

    def _bind(self, args: tuple, kwargs: dict) -> tuple[tuple, tuple]:
        """Keyword arguments bound to positions where the signature allows (so that
        f(x, w=w) and f(x, w) share a trace); the rest stay keywords, named. A call
        that does not fit the signature raises Python's TypeError here."""
        if self._call_signature is None:
            try:
                self._call_signature = inspect.signature(self.fn)
            except (TypeError, ValueError):  # no signature to bind with
                return args + tuple(kwargs.values()), tuple(kwargs)
        bound = self._call_signature.bind(*args, **kwargs)
        return bound.args + tuple(bound.kwargs.values()), tuple(bound.kwargs)

    def _labels(self, count: int, kwnames: tuple) -> list[str]:
        positional = count - len(kwnames)
        return [self._name(i) for i in range(positional)] + list(kwnames)

    def _parameter_positions(self, count: int, kwnames: tuple) -> list:
        """Per argument, its position in the signature (what wrt=k counts)."""
        positional = count - len(kwnames)
        return list(range(positional)) + [self._names.index(n) if n in self._names else None
                                          for n in kwnames]

    def _name(self, i: int) -> str:
        return self._names[i] if i < len(self._names) else f"arg{i}"

    def __repr__(self) -> str:
        aux = " has_aux=True" if self.has_aux else ""
        return f"<compile_grad {getattr(self.fn, '__qualname__', self.fn)} wrt={self.wrt} device={self.device} fuse={self.fuse}{aux}>"


def compile_grad(fn: Callable | None = None, *, wrt=None, device: str = "cpu", fuse: bool = True,
                 has_aux: bool = False):
    """Compile `fn` (a scalar-valued function of arrays) to return ``(value, grads)``.

    Arguments may be arrays (NumPy arrays, eager tensors, nested lists of numbers),
    pytrees of them (nested dicts, lists, tuples and NamedTuples: every array leaf is
    an input of the graph, and its gradient comes back in the same structure, None
    at leaves without one), or anything else hashable, which is a constant of the
    trace. ``wrt=None`` differentiates every argument holding a floating-point
    array; ``wrt=k`` (position or name) one, returned bare; ``wrt=(i, j)`` several,
    as a tuple. Keyword arguments work at call time.

    One trace and compilation per distinct structure, shapes, dtypes and constants.
    Arrays the function reads from outside (closed over, or module globals) are
    constants of the trace, as in `jax.jit`: changing one in place is seen by later
    calls; rebinding the name to another object makes the next call trace again
    (only names read by `fn` itself; not attributes, nor names read by functions it
    calls). Values that change from call to call belong in the arguments.

    ``has_aux=True``: `fn` returns ``(loss, aux)``, aux an array or a pytree of them
    (other leaves, like Python numbers, come back as they are); the call returns
    ``((value, aux), grads)``, as `jax.value_and_grad(..., has_aux=True)`. The aux
    arrays are outputs of the same compiled graph, computed by the same kernels.
    """
    if fn is None:
        return lambda f: CompiledGrad(f, wrt, device, fuse, has_aux)
    return CompiledGrad(fn, wrt, device, fuse, has_aux)


# ---------------------------------------------------------------- signatures

def _signature(args: Sequence[Any], names: Sequence[str] = ()) -> tuple[list, tuple]:
    """The array leaves of the arguments (the graph's inputs) and the cache key.

    A plain array, the common case, is handled here without the pytree walk."""
    leaves: list[np.ndarray] = []
    key: list = []
    try:
        for arg in args:
            if type(arg) is np.ndarray:
                array = pytree.checked_array(arg)
                leaves.append(array)
                key.append((array.shape, array.dtype.str))
            else:
                key.append(pytree.flatten(arg, leaves))
    except pytree.UnhashableConstant as error:
        raise _unhashable(args, names, error.args[0]) from None
    except (DTypeError, ShapeError) as error:   # a float16 array, a ragged list
        raise type(error)(f"{_culprit(args, names)}: {bare(error)}") from None
    return leaves, tuple(key)


def _result(traced: Traced, outputs: list) -> tuple:
    """The call's result from the graph's outputs (value, *aux, *grads)."""
    if traced.aux is not None:
        return _with_aux(traced, outputs)
    value, grads = outputs[0], tuple(outputs[1:])
    if traced.grad_keys is not None:
        grads = _assemble(traced.grad_keys, grads)
    return value, (grads[0] if traced.single_grad else grads)


def _fast_key(args: Sequence[Any], ndarray=np.ndarray) -> tuple | None:
    """A cache key for arguments that are all plain arrays; None for any other call.
    A key is only ever stored for arrays `_signature` passed through unchanged
    (supported native dtypes, C-contiguous), and whether it does is a matter of the
    shape, strides and dtype the key holds: a hit needs no checks of its own (and
    reading the strides is cheaper than asking for the flags)."""
    key = []
    append = key.append
    for arg in args:
        if arg.__class__ is not ndarray:
            return None
        append(arg.shape)
        append(arg.strides)
        append(arg.dtype)
    return tuple(key)


def _culprit(args: Sequence[Any], names: Sequence[str]) -> str:
    """'argument 1 (w)': the first argument that does not flatten (on errors only)."""
    for i, arg in enumerate(args):
        try:
            pytree.flatten(arg, [])
        except (FusegradError, pytree.UnhashableConstant):
            return f"argument {i} ({names[i] if i < len(names) else f'arg{i}'})"
    return "an argument"


def _unhashable(args: Sequence[Any], names: Sequence[str], leaf: Any) -> FusegradError:
    for i, arg in enumerate(args):
        label = names[i] if i < len(names) else f"arg{i}"
        path = pytree.find_path(arg, leaf, label)
        if path is not None:
            return ArgumentError(
                f"argument {i} ({path}) is a {type(leaf).__name__}: compile_grad takes arrays, "
                f"nested dicts, lists and tuples of them, and hashable constants (the trace is "
                f"cached by their value); pass it as an array or make it hashable")
    return ArgumentError(f"an argument holds an unhashable {type(leaf).__name__}")


def _argument_leaves(args: Sequence[Any]) -> tuple[list[tuple], list[range]]:
    """Per argument, its pytree key and which of the flat leaves are its own."""
    keys, ranges, flat = [], [], []
    for arg in args:
        start = len(flat)
        keys.append(pytree.flatten(arg, flat))
        ranges.append(range(start, len(flat)))
    return keys, ranges


def _assemble(grad_keys: tuple, grads: tuple) -> tuple:
    """The flat gradients as trees shaped like the differentiated arguments."""
    flat = iter(grads)
    return tuple(pytree.gradients(key, flat) for key in grad_keys)


def _unique(names: list[str]) -> list[str]:
    """Names of the graph's inputs, made distinct (``a['b_c']`` and ``a['b']['c']``)."""
    seen: set[str] = set()
    result = []
    for name in names:
        unique, n = name, 1
        while unique in seen:
            n += 1
            unique = f"{name}_{n}"
        seen.add(unique)
        result.append(unique)
    return result


def _resolve_wrt(wrt, leaves: list, ranges: list[range], labels: list[str], positions: list,
                 where: str) -> tuple[tuple[int, ...], bool]:
    """The differentiated arguments and whether one gradient is returned bare. Errors
    name `where` (the function and its line): wrt is an option of that function."""
    count = len(ranges)
    floating = [any(leaves[j].dtype.kind == "f" for j in r) for r in ranges]
    if wrt is None:
        return tuple(i for i in range(count) if floating[i]), False
    single = isinstance(wrt, (numbers.Integral, str))
    chosen = tuple(_argument_index(w, wrt, labels, positions, where)
                   for w in ((wrt,) if single else wrt))
    for i in chosen:
        if not ranges[i]:
            raise DTypeError(f"{where}: wrt={wrt!r}: argument {i} ({labels[i]}) is not an array, "
                             f"it has no gradient")
        if not floating[i]:
            dtypes = ", ".join(sorted({str(leaves[j].dtype) for j in ranges[i]}))
            raise DTypeError(f"{where}: cannot differentiate with respect to argument {i} "
                             f"({labels[i]}), an array of {dtypes}: only floating-point arrays "
                             f"have gradients")
    return chosen, single


def _argument_index(spec, wrt, labels: list[str], positions: list, where: str) -> int:
    count = len(labels)
    if isinstance(spec, str):
        if spec not in labels:
            raise ArgumentError(f"{where}: wrt={wrt!r}: no argument named {spec!r} in this call "
                                f"(the arguments are {', '.join(labels)})")
        return labels.index(spec)
    position = int(spec)
    if -count <= position < 0:
        position += count
    if position in positions:
        return positions.index(position)
    raise ArgumentError(f"{where}: wrt={wrt!r}: argument {int(spec)} is out of range for "
                        f"{count} arguments")


def _check_result(result: Any, fn: Callable, nodes: Sequence[Node]) -> Value:
    if not isinstance(result, Tensor) or not result._mode.traced:
        raise TraceError(f"{function_location(fn)} must return a traced scalar tensor computed from its "
                         f"array arguments, got {type(result).__name__}")
    value = result._mode.value
    if value.shape != ():
        raise ShapeError(f"{function_location(fn)} must return a scalar (0-d) value to be differentiated, "
                         f"got shape {value.shape}{_computed_by(value, nodes)}; reduce it first "
                         f"(e.g. .sum() or .mean()), "
                         f"as backward() without a gradient requires in PyTorch")
    if value.dtype.kind != "f":
        raise DTypeError(f"{function_location(fn)} must return a floating-point value, got {value.dtype}")
    return value


def _computed_by(value: Value, nodes: Sequence[Node]) -> str:
    """' (the result of mul at model.py:7)': which op and line of the user's code made `value`."""
    for node in reversed(nodes):
        if any(out is value for out in node.outputs):
            line = f" at {node.source}" if node.source else ""
            return f" (the result of {node.primitive.name}{line})"
    return ""


def _parameter_names(fn: Callable) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _dump_text(fn: Callable, traced: Traced) -> str:
    name = getattr(fn, "__name__", "fn")
    parts = [
        ir.pretty(traced.forward, title=f"forward IR of {name}"),
        ir.pretty(traced.joint, title="forward + backward IR (symbolic backward, after optimisation)",
                  mark_from=first_backward_node(traced.joint, len(traced.forward.outputs))),
        traced.executable.describe(),
    ]
    return "\n\n".join(parts)


# ---------------------------------------------------------------- has_aux (issue 11, item 10)

def _split_aux(result: Any, fn: Callable) -> tuple[Any, tuple[Value, ...], tuple]:
    """The loss of a has_aux=True result, the aux values the graph must output, and
    how to rebuild the aux tree from the outputs (Traced.aux)."""
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        got = (f"a {type(result).__name__} of length {len(result)}"
               if isinstance(result, (tuple, list)) else f"a {type(result).__name__}")
        raise TraceError(f"{function_location(fn)} must return a pair (loss, aux) with has_aux=True, "
                         f"got {got}")
    loss, aux = result
    leaves, spec = tree_flatten(aux)
    outputs: list[Value] = []
    slots: list = []
    for leaf in leaves:
        if isinstance(leaf, Tensor) and leaf._mode.traced:
            slots.append(len(outputs))
            outputs.append(leaf._mode.value)
        elif isinstance(leaf, Tensor):
            slots.append((leaf.detach().numpy().copy(),))
        else:
            slots.append((leaf,))
    return loss, tuple(outputs), (spec, tuple(slots))


def _with_aux(traced: Traced, outputs: list) -> tuple:
    """((value, aux), grads) from the graph's outputs (value, *aux, *grads)."""
    spec, slots = traced.aux
    count = sum(isinstance(slot, int) for slot in slots)
    aux_outputs = outputs[1:1 + count]
    aux = tree_unflatten(spec, [aux_outputs[s] if isinstance(s, int) else
                                (s[0].copy() if isinstance(s[0], np.ndarray) else s[0])
                                for s in slots])
    grads = tuple(outputs[1 + count:])
    if traced.grad_keys is not None:
        grads = _assemble(traced.grad_keys, grads)
    return (outputs[0], aux), (grads[0] if traced.single_grad else grads)


# ---------------------------------------------------------------- device arrays (issue 13, item 1)

def _shape_and_dtype(leaf) -> tuple[tuple, np.dtype]:
    if isinstance(leaf, np.ndarray):
        return leaf.shape, leaf.dtype
    return shape_and_dtype(leaf)


def _refuse_device_arrays(leaves: list, owner: list[int], paths: list[str]) -> None:
    """The CPU target runs on host memory: a GPU array is the caller's to move (as
    PyTorch refuses a CUDA tensor in a CPU op), not silently copied per call."""
    for leaf, i, path in zip(leaves, owner, paths):
        if is_device_array(leaf):
            shape, dtype = shape_and_dtype(leaf)
            raise ArgumentError(
                f"argument {i} ({path}) is a {type(leaf).__name__} in CUDA device memory "
                f"(shape {shape}, {dtype}), but this function was compiled for device='cpu': "
                f"compile it with device='cuda', or copy the array to the host first "
                f"(.copy_to_host(), cupy.asnumpy(a), t.cpu().numpy())")
