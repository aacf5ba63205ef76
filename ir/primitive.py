"""What a primitive is, and the registry that holds them.

A primitive is declared once (in `ir/primitives.py`) with everything the compiler
knows about it: its kind, its shape/dtype rule, its NumPy meaning (the reference
interpreter), its vector-Jacobian rule written with graph operations, and how a
kernel spells one element of it; a reduction also its `Monoid`, which codegen reads
as data (a new reduction is one record, not a branch in each target).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from fusegrad.ir.builder import current_builder, current_source, make_node
from fusegrad.ir.errors import FusegradError, bare, located
from fusegrad.ir.graph import Value

ELEMENTWISE = "elementwise"   # one output element from the same element of each input
REDUCTION = "reduction"       # reduces `axes` of its single input
LAYOUT = "layout"             # moves elements around: reshape, transpose
MATMUL = "matmul"             # a BLAS call
INDEX = "index"               # integer-valued results such as argmax; not differentiable

OutType = tuple[tuple[int, ...], np.dtype]

COSTLY = 10  # Primitive.cost of a libm call: worth storing rather than recomputing


@dataclass(frozen=True)
class Monoid:
    """How kernels reduce: the accumulator's start, how a term joins it, and each
    target's bulk form. Templates name the accumulator `{acc}` and the term `{x}`."""

    identity: float                  # the start: joining it changes no term
    update: str                      # statement joining term {x} into {acc}
    # `scalar_math.<block>`: the first `count` terms of an L1 buffer reduced by one
    # vectorizable call (see codegen.body.Dialect.split_reductions).
    block: str
    # Whether the block helper continues the accumulator, `block(terms, count, acc)`;
    # else it returns the block's own total, `block(terms, count)`, which `update`
    # joins (a row reduction's one block is its whole total: no start needed).
    block_continues: bool
    # `cuda.atomic.<atomic>(array, cell, x)`: a column reduction's partial cell
    # shared by the threads of a block. The tree step across a block is `update`.
    atomic: str
    # Whether a NaN term is the result (NumPy's max and min). The CUDA atomics
    # ignore a NaN term, so the target stores one plainly instead.
    nan_wins: bool = False
    # Accumulate in 64 bits, floats in float64 and integers in uint64 (which wraps:
    # Numba's signed additions are `nsw`), cast back to the result's dtype at the
    # end (its low bits are NumPy's result wrapped in that dtype).
    widen: bool = False
    # Input dtype kinds the kernels reduce; others are library calls (NumPy).
    kinds: str = "f"


@dataclass(frozen=True, eq=False)
class Primitive:
    name: str
    kind: str
    infer: Callable[..., OutType]           # (*inputs, **params) -> (shape, dtype)
    impl: Callable[..., np.ndarray]         # NumPy meaning: (*arrays, **params) -> array
    vjp: Callable[..., list] | None = None  # (g, *inputs, out, **params) -> cotangents
    scalar: str | Callable[..., str] | None = None  # element spelling for kernels
    grad_fn: str | None = None              # PyTorch's backward node name
    # Rough cost of one element relative to an add: codegen stores a value for a later
    # pass over the same row instead of recomputing it when this is high.
    cost: int = 1
    # Whether the integer result depends on the operands only modulo 2**64 (add, sub,
    # mul, neg, integer_pow): kernels may then compute it in uint64, which wraps.
    modular: bool = False
    monoid: Monoid | None = None            # how a REDUCTION reduces, in kernels
    # Whether CUDA runs it on the host (copied over, run by NumPy, copied back): a
    # primitive neither elementwise, a reduction, nor given a device kernel by
    # runtime/cuda.py says so here (tests/ir/test_registry.py checks).
    host_only: bool = False
    # Whether the node has several outputs (scan): `infer` then returns a list of
    # (shape, dtype), `impl` a list of arrays, and `vjp` is called as
    # ``vjp(cotangents, *inputs, outputs=..., **params)`` with one cotangent (or None)
    # per output.
    multiple_results: bool = False

    def bind(self, *inputs: Value, **params: Any) -> Value:
        """Append ``self(*inputs, **params)`` to the current graph; return its value."""
        try:
            shape, dtype = self.infer(*inputs, **params)
        except FusegradError as error:
            raise type(error)(located(f"{self.name}: {bare(error)}", current_source())) from None
        node = make_node(self, tuple(inputs), params, [(shape, dtype)])
        current_builder().add(node)
        return node.out

    def spell(self, args: list[str], dtype: np.dtype, params: dict[str, Any]) -> str:
        """The scalar expression of one element, for code generation."""
        if callable(self.scalar):
            return self.scalar(*args, **{"dtype": dtype, **params})
        return self.scalar.format(*args, one=literal(1, dtype), zero=literal(0, dtype))

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


REGISTRY: dict[str, Primitive] = {}


def primitive(name: str, **fields: Any) -> Primitive:
    """Declare and register a primitive."""
    if name in REGISTRY:
        raise ValueError(f"primitive {name!r} declared twice")
    prim = Primitive(name=name, **fields)
    REGISTRY[name] = prim
    return prim


def literal(value: Any, dtype: np.dtype) -> str:
    """A typed scalar literal for generated code, e.g. ``np.float32(0.5)``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return repr(bool(value))
    if dtype.kind == "f":
        number = float(value)
        if np.isfinite(number):
            text = repr(number)
        else:
            text = "np.nan" if number != number else ("np.inf" if number > 0 else "-np.inf")
        return f"np.{dtype.name}({text})"
    return f"np.{dtype.name}({int(value)})"
