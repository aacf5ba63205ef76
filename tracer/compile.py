"""`compile_grad`: trace once per signature, differentiate, optimise, fuse, run."""
from __future__ import annotations

import functools
import inspect
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from fusegrad import ir
from fusegrad.ir.errors import DTypeError, FusegradError, ShapeError, TraceError
from fusegrad.ir.graph import FLOATING, Graph, Node, Value, first_backward_node
from fusegrad.runtime import Executable, compile_graph
from fusegrad.tracer.dispatch import Tracing
from fusegrad.tracer.tensor import Tensor


@dataclass(frozen=True)
class Traced:
    """Everything compiled for one signature."""

    forward: Graph          # the function as traced
    joint: Graph            # forward + backward, optimised
    executable: Executable
    array_positions: tuple[int, ...]  # which arguments are graph inputs
    single_grad: bool       # wrt=k returns one array instead of a tuple


class CompiledGrad:
    """The object `@compile_grad` returns: call it for (value, grads)."""

    def __init__(self, fn: Callable, wrt, device: str, fuse: bool) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda":
            from fusegrad.runtime.cuda import require_cuda
            require_cuda()  # a clear error now, not a Numba traceback at the first call
        self.fn = fn
        self.wrt = wrt
        self.device = device
        self.fuse = fuse
        self._cache: dict[tuple, Traced] = {}
        self._names = _parameter_names(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any):
        arrays, key = _signature(args)
        traced = self._cache.get(key)
        if traced is None:
            traced = self._cache[key] = self._trace(args, arrays)
        outputs = traced.executable([arrays[i] for i in traced.array_positions])
        value, grads = outputs[0], tuple(outputs[1:])
        return value, (grads[0] if traced.single_grad else grads)

    def dump(self, *args: Any) -> str:
        """Forward IR, backward IR, kernel plan and generated source for these arguments."""
        return _dump_text(self.fn, self.trace(*args))

    def trace(self, *args: Any) -> Traced:
        """What these arguments compile to (traced and planned; kernels compile on use)."""
        arrays, key = _signature(args)
        traced = self._cache.get(key)
        if traced is None:
            traced = self._cache[key] = self._trace(args, arrays)
        return traced

    def wrt_positions(self, *args: Any) -> tuple[int, ...]:
        """The argument positions gradients are returned for, with these arguments."""
        arrays, _ = _signature(args)
        return _resolve_wrt(self.wrt, arrays, self._names, _where(self.fn))[0]

    def argument_name(self, position: int) -> str:
        return self._name(position)

    # ------------------------------------------------------------ tracing

    def _trace(self, args: Sequence[Any], arrays: list) -> Traced:
        positions = tuple(i for i, a in enumerate(arrays) if a is not None)
        wrt, single = _resolve_wrt(self.wrt, arrays, self._names, _where(self.fn))
        inputs = {i: Value(arrays[i].shape, arrays[i].dtype, name=self._name(i)) for i in positions}
        with Tracing() as builder:
            traced_args = [Tensor._traced(inputs[i]) if i in inputs else a for i, a in enumerate(args)]
            result = self.fn(*traced_args)
        out = _check_result(result, self.fn, builder.nodes)
        forward = builder.finish(tuple(inputs[i] for i in positions), (out,))
        joint = ir.optimize(ir.vjp_graph(forward, [positions.index(i) for i in wrt]))
        executable = compile_graph(joint, device=self.device, fuse=self.fuse)
        traced = Traced(forward, joint, executable, positions, single)
        if os.environ.get("FUSEGRAD_DUMP", "") not in ("", "0"):
            print(_dump_text(self.fn, traced), flush=True)
        return traced

    def _name(self, i: int) -> str:
        return self._names[i] if i < len(self._names) else f"arg{i}"

    def __repr__(self) -> str:
        return f"<compile_grad {getattr(self.fn, '__qualname__', self.fn)} wrt={self.wrt} device={self.device} fuse={self.fuse}>"


def compile_grad(fn: Callable | None = None, *, wrt=None, device: str = "cpu", fuse: bool = True):
    """Compile `fn` (a scalar-valued function of arrays) to return ``(value, grads)``."""
    if fn is None:
        return lambda f: CompiledGrad(f, wrt, device, fuse)
    return CompiledGrad(fn, wrt, device, fuse)


# ---------------------------------------------------------------- signatures

def _signature(args: Sequence[Any]) -> tuple[list, tuple]:
    """Arrays for the graph (None for trace constants) and the cache key.

    An array argument is made C-contiguous and native-endian here (the kernels read
    plain strided memory); the caller's array is never written to.
    """
    arrays: list = []
    key: list = []
    for arg in args:
        array = _as_array(arg)
        arrays.append(array)
        if array is None:
            key.append(("const", type(arg), _const_key(arg)))
        else:
            key.append((array.shape, array.dtype.str))
    return arrays, tuple(key)


def _as_array(arg: Any) -> np.ndarray | None:
    if isinstance(arg, np.ndarray):
        array = arg
    elif isinstance(arg, Tensor):
        array = arg.detach().numpy()
    elif isinstance(arg, (list, tuple)) and _is_numeric_sequence(arg):
        array = np.asarray(arg)  # accepted like NumPy does (documented in the README)
    else:
        return None
    # float16 and long double pass NumPy's checks but Numba has no CPU arrays of
    # them: refuse here rather than fail with a Numba traceback at the first call.
    dtype = array.dtype
    if dtype.kind not in "biu" and dtype not in FLOATING and dtype.newbyteorder("=") not in FLOATING:
        raise DTypeError(f"unsupported array dtype {array.dtype}: arrays must be float32 or "
                         f"float64 (or bool or integer, which get no gradient); "
                         f"convert with .astype(np.float32)")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    # Not np.ascontiguousarray: it returns 0-d arrays as shape (1,), which made a
    # scalar argument trace as a vector (and its gradient come back 1-d).
    return np.asarray(array, order="C")


def _is_numeric_sequence(seq) -> bool:
    first = seq
    while isinstance(first, (list, tuple)) and first:
        first = first[0]
    return isinstance(first, numbers.Number) and not isinstance(seq, str)


def _const_key(arg: Any) -> Any:
    try:
        hash(arg)
    except TypeError:
        return repr(arg)
    # 0.0 == -0.0 (and they hash alike), yet x / 0.0 and x / -0.0 differ in sign; and
    # nan != nan would retrace on every call. repr tells floats apart exactly.
    if isinstance(arg, (float, complex, np.floating, np.complexfloating)):
        return repr(arg)
    return arg


def _resolve_wrt(wrt, arrays: list, names: list[str],
                 where: str) -> tuple[tuple[int, ...], bool]:
    """The differentiated positions and whether one gradient is returned bare. Errors
    name `where` (the function and its line): wrt is an option of that function."""
    count = len(arrays)
    if wrt is None:
        return tuple(i for i, a in enumerate(arrays) if a is not None and a.dtype.kind == "f"), False
    single = isinstance(wrt, numbers.Integral)
    positions = (int(wrt),) if single else tuple(int(i) for i in wrt)
    for i in positions:
        if not -count <= i < count:
            raise FusegradError(f"{where}: wrt={wrt!r}: argument {i} is out of range for "
                                f"{count} arguments")
        array = arrays[i]
        if array is None:
            raise DTypeError(f"{where}: wrt={wrt!r}: argument {i} is not an array, it has no "
                             f"gradient")
        if array.dtype.kind != "f":
            label = names[i] if i < len(names) else f"arg{i}"
            raise DTypeError(f"{where}: cannot differentiate with respect to argument {i} "
                             f"({label}), an array of {array.dtype}: only floating-point arrays "
                             f"have gradients")
    return tuple(i % count for i in positions), single


def _check_result(result: Any, fn: Callable, nodes: Sequence[Node]) -> Value:
    if not isinstance(result, Tensor) or result._value is None:
        raise TraceError(f"{_where(fn)} must return a traced scalar tensor computed from its "
                         f"array arguments, got {type(result).__name__}")
    value = result._value
    if value.shape != ():
        raise ShapeError(f"{_where(fn)} must return a scalar (0-d) value to be differentiated, "
                         f"got shape {value.shape}{_computed_by(value, nodes)}; reduce it first "
                         f"(e.g. .sum() or .mean()), "
                         f"as backward() without a gradient requires in PyTorch")
    if value.dtype.kind != "f":
        raise DTypeError(f"{_where(fn)} must return a floating-point value, got {value.dtype}")
    return value


def _computed_by(value: Value, nodes: Sequence[Node]) -> str:
    """' (the result of mul at model.py:7)': which op and line of the user's code made `value`."""
    for node in reversed(nodes):
        if any(out is value for out in node.outputs):
            line = f" at {node.source}" if node.source else ""
            return f" (the result of {node.primitive.name}{line})"
    return ""


def _where(fn: Callable) -> str:
    try:
        code = fn.__code__
        return f"{fn.__name__} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"
    except AttributeError:
        return repr(fn)


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
