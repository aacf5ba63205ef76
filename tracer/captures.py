"""What a traced function reads from outside its arguments, and whether it was rebound.

Arrays a function closes over, or reads as module globals, become constants of its
trace (as in `jax.jit`). Changing such an array in place is seen by later calls: the
trace keeps a reference to it. *Rebinding* the name (``w = w - lr * g`` at module
level) leaves the trace holding the old array, silently. So each trace records the
objects bound, at trace time, to the closure cells and globals its code reads, and
every call checks them by identity: a handful of ``is`` tests, and a retrace when
one was rebound (as ``torch.compile``'s guards do). Not seen: names read by other
functions the traced function calls, attributes (``self.w``), and items replaced
inside a closed-over container; pass such values as arguments.
"""
from __future__ import annotations

import dis
import functools
import inspect
import types
from typing import Any, Callable

_MISSING = object()


class Captured:
    """The closure cells and globals a trace read, with the objects bound to them."""

    __slots__ = ("cells", "namespace", "names")

    def __init__(self, cells: tuple, namespace: dict, names: tuple) -> None:
        self.cells = cells            # ((cell, object, name), ...)
        self.namespace = namespace    # the function's module globals
        self.names = names            # ((name, object), ...)

    def rebound(self) -> str | None:
        """The first name bound to another object than at trace time, or None."""
        for cell, obj, name in self.cells:
            try:
                if cell.cell_contents is not obj:
                    return name
            except ValueError:        # the variable was deleted
                return name
        namespace = self.namespace
        for name, obj in self.names:
            if namespace.get(name, _MISSING) is not obj:
                return name
        return None


def capture(fn: Callable) -> Captured | None:
    """What `fn` reads from its closure and its module now (None: nothing to watch)."""
    function = _function(fn)
    if function is None:
        return None
    loads, stores = _names(function.__code__)
    cells = tuple((cell, cell.cell_contents, name)
                  for name, cell in zip(function.__code__.co_freevars, function.__closure__ or ())
                  if name not in stores and _watched(cell))
    namespace = function.__globals__
    names = tuple((name, namespace[name]) for name in loads
                  if name not in stores and name in namespace
                  and not isinstance(namespace[name], types.ModuleType))
    return Captured(cells, namespace, names) if cells or names else None


def _function(fn: Any) -> types.FunctionType | None:
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        else:
            break
    return fn if isinstance(fn, types.FunctionType) else None


def _watched(cell) -> bool:
    try:
        return not isinstance(cell.cell_contents, types.ModuleType)
    except ValueError:                # empty at trace time: the trace did not read it
        return False


def _names(code: types.CodeType) -> tuple[list[str], set[str]]:
    """Global names `code` (and the code nested in it) loads, and the names it assigns
    (``global``/``nonlocal`` targets change on every call by design: not watched)."""
    loads: dict[str, None] = {}
    stores: set[str] = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            loads[instruction.argval] = None
        elif instruction.opname in ("STORE_GLOBAL", "STORE_DEREF", "DELETE_GLOBAL", "DELETE_DEREF"):
            stores.add(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            inner_loads, inner_stores = _names(const)
            loads.update(dict.fromkeys(inner_loads))
            stores |= inner_stores
    return list(loads), stores
