"""A NumPy interpreter of the IR: the reference semantics, and the oracle for codegen."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fusegrad.ir.errors import BoundsError, bare, located
from fusegrad.ir.graph import Graph, Node, Value


def run_node(node: Node, args: Sequence[np.ndarray]) -> np.ndarray:
    try:
        with np.errstate(all="ignore"):
            result = node.primitive.impl(*args, **node.attrs)
    except BoundsError as error:   # found at run time: say where the user indexed
        raise BoundsError(located(bare(error), node.source)) from None
    out = node.out
    # NumPy's own promotion rules and 0-d results differ from the IR's; the IR wins.
    return np.asarray(result).astype(out.dtype, copy=False).reshape(out.shape)


def run_node_outputs(node: Node, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """All outputs of `node`: one for most primitives, several for a scan."""
    if not node.primitive.multiple_results:
        return [run_node(node, args)]
    with np.errstate(all="ignore"):
        results = node.primitive.impl(*args, **node.attrs)
    return [np.asarray(r).astype(v.dtype, copy=False).reshape(v.shape)
            for r, v in zip(results, node.outputs)]


def evaluate(graph: Graph, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(args) != len(graph.inputs):
        raise TypeError(f"graph takes {len(graph.inputs)} inputs, got {len(args)}")
    env: dict[Value, np.ndarray] = {}
    for value, array in zip(graph.inputs, args):
        env[value] = np.asarray(array)
    for value, array in graph.constants:
        env[value] = array
    # Each intermediate is dropped after the last node that reads it: a deep graph
    # over large arrays (thousands of nodes, 200k elements each) would otherwise
    # hold all of them at once, gigabytes, and run slower for the page faults.
    last_use = {v: i for i, node in enumerate(graph.nodes) for v in node.inputs}
    keep = set(graph.outputs)
    for index, node in enumerate(graph.nodes):
        env.update(zip(node.outputs, run_node_outputs(node, [env[v] for v in node.inputs])))
        for value in node.inputs:
            if last_use[value] == index and value not in keep:
                env.pop(value, None)
    return [env[v] for v in graph.outputs]
