"""What eager operations leave behind: PyTorch's ``grad_fn`` objects, holding IR.

An eager op is an `OpGraph`: the IR nodes that its `ir.ops` builder emits, over one
placeholder value per array argument. It is built once per (op, params, argument
types) and reused, so a repeated op costs an interpreter run, not a trace. A
recorded op is a `Function` (PyTorch's grad_fn node): its OpGraph and one edge per
array argument saying where that argument comes from. An edge is
``(source, index, version)``:

- source a `Function`: the argument is output `index` of that earlier op;
- source a tensor: the argument is that leaf, which requires grad (its
  `AccumulateGrad`, PyTorch's node for it, is made when `next_functions` shows it:
  a recorded op makes no object per leaf);
- source a `Constant`: the argument is data that needs no gradient.

`version` is the argument's in-place version when it was read (None for a
Function source), so a backward can tell whether data it needs has changed since.
`backward()` joins the OpGraphs from its output back to the leaves into one graph.
"""
from __future__ import annotations

import functools
import itertools
import threading
import weakref
from typing import Any, Callable, NamedTuple

import numpy as np

from fusegrad.ir.graph import Node, Value



class Version:
    """The in-place version of a storage, shared by the tensors viewing it: each
    in-place op bumps it, and a backward compares it with the version an op read."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1


class Edge(NamedTuple):
    """Where a recorded op's argument comes from (see the module docstring). The
    recording paths make plain tuples of these fields (cheaper to make); read an
    edge by position or unpack it."""

    source: Any            # Function | the leaf tensor | Constant
    index: int             # which output of a Function source
    version: int | None    # the argument's Version when read; None for a Function source


class Saved(NamedTuple):
    """A recorded op's result as computed, kept so the backward need not recompute it
    (made as a plain tuple by the recording paths, as `Edge`)."""

    array: np.ndarray
    counter: Version | None  # the storage's version counter (None: the result's own,
                             # not made yet: see state.py's `_share_saved`)
    version: int           # its value when the result was computed

    def current(self) -> bool:
        """Not modified in place since it was computed."""
        return self.counter is None or self.counter.value == self.version

_sequence = itertools.count()
_serials = itertools.count()


class OpGraph:
    """The IR of one eager op: ``outputs = nodes(inputs)``, immutable and shared."""

    __slots__ = ("inputs", "nodes", "outputs", "fixed", "steps", "aliases", "serial", "tuple_result")

    def __init__(self, inputs: tuple[Value, ...], nodes: tuple[Node, ...],
                 outputs: tuple[Value, ...], fixed: dict[Value, np.ndarray],
                 tuple_result: bool = False) -> None:
        self.tuple_result = tuple_result        # the builder returned a tuple of values
        self.inputs = inputs
        self.nodes = nodes
        self.outputs = outputs
        self.fixed = fixed                      # values of the nodes without inputs (constants)
        self.steps = tuple(n for n in nodes if n.inputs)
        # Per output: the argument it is (an op that returns its input), or None.
        self.aliases = tuple(inputs.index(v) if v in inputs else None for v in outputs)
        # Plans are cached by the serials of the OpGraphs they join (never reused).
        self.serial = next(_serials)


class Function:
    """A recorded op (PyTorch's grad_fn node). Subclasses carry PyTorch's names."""

    __slots__ = ("graph", "edges", "saved", "seq", "retained", "__weakref__")

    def __init__(self, graph: OpGraph, edges: tuple[Edge, ...], saved: list[Saved] | None) -> None:
        self.graph = graph
        self.edges = edges
        # Per output: the result as computed, so the backward can read it instead of
        # recomputing it; None once released.
        self.saved = saved
        # Creation order is a topological order of the recorded graph.
        self.seq = next(_sequence)
        self.retained: dict[int, weakref.ref] | None = None

    @property
    def nodes(self) -> tuple[Node, ...]:
        return self.graph.nodes

    def name(self) -> str:
        return type(self).__name__

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        return tuple((None if isinstance(source, Constant) else
                      source if isinstance(source, Function) else source._accumulator(), index)
                     for source, index, _ in self.edges)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object at {id(self):#x}>"

    def __call__(self, *args):
        raise RuntimeError(f"{self.name()} is a record of an operation; call backward() on the "
                           "tensor it produced instead")


_classes: dict[str, type] = {}


def function_class(name: str) -> type:
    """The Function subclass named `name` (e.g. MulBackward0), made once."""
    cls = _classes.get(name)
    if cls is None:
        cls = _classes[name] = type(name, (Function,), {"__slots__": (), "__module__": "fusegrad.autograd"})
    return cls


class AccumulateGrad:
    """The node of a leaf that requires grad (gradients accumulate in its ``.grad``),
    as `Function.next_functions` shows it; the edges themselves name the leaf."""

    __slots__ = ("variable", "__weakref__")

    def __init__(self, variable) -> None:
        self.variable = variable

    def name(self) -> str:
        return "fusegrad::autograd::AccumulateGrad"

    next_functions = ()

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {id(self):#x}>"


class Constant:
    """Data an op read that needs no gradient."""

    __slots__ = ("array", "counter")

    def __init__(self, array: np.ndarray, counter: Version | None = None) -> None:
        self.array = array
        self.counter = counter   # the Version of a tensor's storage; None for a private copy


# ---------------------------------------------------------------- grad mode

class _GradState(threading.local):
    def __init__(self) -> None:
        self.enabled = True


_grad_state = _GradState()


def is_grad_enabled() -> bool:
    return _grad_state.enabled


class set_grad_enabled:  # noqa: N801  (PyTorch's name)
    """Context manager (and decorator) setting whether eager ops are recorded."""

    def __init__(self, mode: bool = True) -> None:
        self.mode = bool(mode)
        self._saved: list[bool] = []
        # Like PyTorch, calling set_grad_enabled(False) as a plain function takes
        # effect at once; used as a context manager it is restored on exit.
        self._saved.append(_grad_state.enabled)
        _grad_state.enabled = self.mode

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        _grad_state.enabled = self._saved.pop() if self._saved else True

    def __call__(self, function: Callable) -> Callable:
        # Used as a decorator: undo the change made at construction (as PyTorch does).
        if self._saved:
            _grad_state.enabled = self._saved.pop()
        return _decorate(type(self), function, self.mode)


class no_grad:  # noqa: N801
    """Nothing computed inside is recorded for differentiation; also a decorator."""

    mode = False

    def __new__(cls, function: Callable | None = None):
        # ``@no_grad`` without parentheses decorates directly, as in PyTorch 2.
        if function is not None:
            return _decorate(cls, function)
        return super().__new__(cls)

    def __init__(self, function: Callable | None = None) -> None:
        self._saved: list[bool] = []

    def __enter__(self) -> None:
        self._saved.append(_grad_state.enabled)
        _grad_state.enabled = self.mode

    def __exit__(self, *exc) -> None:
        _grad_state.enabled = self._saved.pop()

    def __call__(self, function: Callable) -> Callable:
        return _decorate(type(self), function)

    def clone(self):
        return type(self)()


class enable_grad(no_grad):  # noqa: N801
    mode = True


def _decorate(context: type, function: Callable, *args) -> Callable:
    @functools.wraps(function)
    def wrapper(*call_args, **kwargs):
        saved = _grad_state.enabled
        _grad_state.enabled = context.mode if not args else args[0]
        try:
            return function(*call_args, **kwargs)
        finally:
            _grad_state.enabled = saved
    return wrapper
