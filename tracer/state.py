"""The state of a Tensor: traced (an IR value) or eager (data, version, autograd state).

`TensorState` holds what every layer of the tracer reads and writes: the
executor that runs eager ops (`tracer.executor`), the autograd entry points, the
creation functions. It sits below them all, so none of them imports `Tensor`;
`tracer.tensor` defines the methods and operators on top of it.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any

import numpy as np

from fusegrad.ir.errors import TraceError
from fusegrad.ir.graph import Value
from fusegrad.tracer import dtypes
from fusegrad.tracer.devices import CPU, checked_device, host_array, to_storage
from fusegrad.tracer.dtypes import Size
from fusegrad.tracer.graph_nodes import AccumulateGrad, Constant, Edge, Function, Saved, Version
from fusegrad.tracer.source import user_line

__all__ = ["EAGER", "TensorState", "Traced", "data_dependent_error"]


# ---------------------------------------------------------------- modes
# A tensor's mode is one object that answers what differs between tracing and eager
# execution, so the rest of Tensor asks it instead of testing for a traced value.

class Eager:
    """The mode of a tensor outside compile_grad: its data is in the tensor."""

    traced = False

    def shape(self, tensor) -> tuple:
        return tensor._data.shape

    def dtype(self, tensor):
        return dtypes.as_dtype(tensor._data.dtype)

    def check_eager(self, what: str) -> None:
        """`what` (an eager-only operation) may run."""

    def check_known(self, what: str) -> None:
        """`what` (a value Python needs now: bool(t), float(t)) is known."""

    def check_data(self) -> None:
        """The tensor has data."""


EAGER = Eager()


class Traced:
    """The mode of a tensor inside compile_grad: an IR value of the trace being built,
    with a shape and a dtype but no data."""

    __slots__ = ("value",)
    traced = True

    def __init__(self, value: Value) -> None:
        self.value = value

    def shape(self, tensor) -> tuple:
        return self.value.shape

    def dtype(self, tensor):
        return self.value.dtype   # traced code works with NumPy dtypes

    def check_eager(self, what: str) -> None:
        raise TraceError(f"{what} is not available on a traced tensor inside compile_grad "
                         "(the function is traced into a graph; gradients are its outputs)")

    def check_known(self, what: str) -> None:
        raise data_dependent_error(what)

    def check_data(self) -> None:
        # Reached by fg.tensor(t), np.asarray(t), t.tolist() and the like.
        raise TraceError(
            "the data of a traced tensor is not available while tracing: compile_grad traces "
            "the function once into a static graph of shapes and dtypes. Use the tensor itself "
            "in fusegrad operations (fg.tensor(t) and np.asarray(t) are not needed inside the "
            "function; t.detach() cuts its gradient)"
            + (f"\n  at {user_line()}" if user_line() else ""))


def data_dependent_error(what: str) -> TraceError:
    return TraceError(
        f"{what} of a traced tensor is not known while tracing: compile_grad traces the "
        "function once into a static graph, so Python control flow cannot depend on array "
        "values. Use fg.where(cond, a, b) for a data-dependent choice, or pass the value "
        "as a non-array argument (it then becomes a constant of the trace)."
        + (f"\n  at {user_line()}" if user_line() else ""))

_NON_LEAF_GRAD = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad "
    "field to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. "
    "If you access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead.")


class TensorState:
    _mode: Eager | Traced = EAGER
    # Eager mode.
    _data: np.ndarray | None = None     # the storage; views share it
    # Bumped by in-place ops, shared by views; an eager tensor made without one (an
    # op's new result) has its own, made when first read (`_OwnVersion`).
    _version_counter: Version | None = None
    _requires_grad = False
    _grad = None
    _grad_fn: Function | None = None
    _output_nr = 0                      # which output of grad_fn this tensor is
    _accumulator_ref = None
    _device = CPU

    # The class of the tensors ops return: Tensor, bound by `tracer.tensor`, which
    # defines it on top of this one. The executor, below that module, makes its
    # results through `_blank`. (Not the last subclass defined: a user's subclass
    # of Tensor must not change what every op returns.)
    _result_type: type | None = None

    @staticmethod
    def _blank() -> "TensorState":
        """A Tensor with no state yet (the caller sets it)."""
        cls = TensorState._result_type
        return cls.__new__(cls)

    @staticmethod
    def _traced(value: Value) -> "TensorState":
        """A Tensor for the IR value `value` of the trace being built."""
        tensor = TensorState._blank()
        tensor._init_traced(value)
        return tensor

    def _init_traced(self, value: Value) -> None:
        self._mode = Traced(value)

    def _init_eager(self, data: np.ndarray, device: Any = None) -> None:
        self._data = data
        self._version_counter = Version()
        if device is not None:
            self._device = checked_device(device)
            self._data = to_storage(data, self._device)

    def _eager_data(self) -> np.ndarray:
        """The data, to read: on the host (a copy, for a tensor on the GPU)."""
        self._mode.check_data()
        return host_array(self._data)

    def _shape(self) -> Size:
        return Size(self._mode.shape(self))

    @property
    def dtype(self):
        return self._mode.dtype(self)

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
            if not isinstance(value, TensorState):
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
            return Edge(self, 0, version)
        return Edge(Constant(self._data, self._version_counter), 0, version)

    def _saved(self) -> Saved:
        """This tensor's data as a recorded op's result, at its current version."""
        return Saved(self._data, self._version_counter, self._version_counter.value)

    def _accumulator(self) -> AccumulateGrad:
        # For next_functions. Cached weakly so that it shows one object per leaf while
        # one is held, without a reference cycle between the leaf and its accumulator.
        accumulator = self._accumulator_ref() if self._accumulator_ref is not None else None
        if accumulator is None:
            accumulator = AccumulateGrad(self)
            self._accumulator_ref = weakref.ref(accumulator)
        return accumulator

    def _check_eager(self, what: str) -> None:
        self._mode.check_eager(what)


# ---------------------------------------------------------------- a result's own version counter, when read (issue 12, eager per-op cost)
# Most results of eager ops are read once and dropped: their version counter is
# never read. The fast paths (tracer.executor) leave it out, and the first read of
# `_version_counter` makes it: a new Version at 0, as the op would have made it.

class _OwnVersion:
    """`TensorState._version_counter` where the instance has none: None for a traced
    tensor (no data), else the tensor's own new Version, kept in its __dict__."""

    __slots__ = ()

    def __get__(self, tensor, owner=None):
        if tensor is None or tensor._data is None:
            return None
        # (setdefault: two threads reading it first read one counter)
        counter = tensor.__dict__.setdefault("_version_counter", Version())
        if tensor._grad_fn is not None:
            _share_saved(tensor, counter)
        return counter


def _share_saved(tensor, counter: Version) -> None:
    """A recorded op (`executor`'s `_record_one`) saves its new result with the
    counter None, "the result's own, not made yet": the counter just made is that
    one, so the saved result is seen as modified when the tensor is. (Code that
    changes a tensor's grad_fn reads the counter first: tensor.py's detach_, _assign.)"""
    saved = tensor._grad_fn.saved
    index = tensor._output_nr
    if saved is not None and index < len(saved):
        entry = saved[index]
        if entry is not None and entry[1] is None and entry[0] is tensor._data:
            saved[index] = (entry[0], counter, entry[2])


TensorState._version_counter = _OwnVersion()


def _copy(self):
    """copy.copy(t): a tensor sharing t's data and its version counter (made first,
    so that both read the same one), as the default copy of its __dict__ would."""
    self._version_counter   # noqa: B018 (made, if it was not)
    copied = object.__new__(type(self))
    copied.__dict__.update(self.__dict__)
    return copied


TensorState.__copy__ = _copy
