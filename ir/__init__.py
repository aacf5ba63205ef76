"""The IR: typed SSA graphs, the primitive registry, differentiation and passes.

Imports nothing else of fusegrad.
"""
from fusegrad.ir import ops, primitives
from fusegrad.ir.builder import Builder, building, current_source, source_line
from fusegrad.ir.errors import DTypeError, FusegradError, ShapeError, TraceError
from fusegrad.ir.graph import Graph, Node, Value
from fusegrad.ir.interpreter import evaluate
from fusegrad.ir.passes import PIPELINE, optimize
from fusegrad.ir.primitive import REGISTRY, Primitive
from fusegrad.ir.printer import pretty
from fusegrad.ir.verify import verify
from fusegrad.ir.vjp import vjp_graph

__all__ = [
    "Builder", "building", "current_source", "source_line", "DTypeError", "FusegradError",
    "ShapeError", "TraceError", "Graph", "Node", "Value", "evaluate", "PIPELINE", "optimize",
    "REGISTRY", "Primitive", "pretty", "verify", "vjp_graph", "ops", "primitives",
]
