"""ir/printer.py: golden dumps, stable names, deterministic output."""
from __future__ import annotations

import textwrap

import numpy as np

from fusegrad import ir
from fusegrad.ir import ops
from fusegrad.ir.graph import first_backward_node, Value

F32 = np.dtype(np.float32)


def mlp_graph() -> ir.Graph:
    x, w, b = Value((64, 256), F32, "x"), Value((256, 16), F32, "w"), Value((16,), F32, "b")
    with ir.building() as builder:
        with ir.source_line("model.py:7"):
            h = ops.tanh(ops.matmul(x, w) + b)
        with ir.source_line("model.py:8"):
            loss = ops.reduce_sum(h * 0.5)
    return builder.finish((x, w, b), (loss,))


def golden(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


MLP = golden("""
    { lambda x:f32[64,256] w:f32[256,16] b:f32[16] .
      let a:f32[64,16] = matmul x w                                 # model.py:7
          c:f32[64,16] = add a b                                    # model.py:7
          d:f32[64,16] = tanh c                                     # model.py:7
          e:f32[64,16] = mul d 0.5:f32                              # model.py:8
          f:f32[]      = reduce_sum[axes=(0, 1), keepdims=False] e  # model.py:8
      in (f) }
""")


def test_mlp_golden():
    # Arguments keep their names; the others get letters in order, skipping `b`,
    # which an argument owns. Scalar constants print inline, typed.
    assert ir.pretty(mlp_graph()) == MLP


def test_joint_graph_golden_with_backward_mark():
    graph = mlp_graph()
    joint = ir.optimize(ir.vjp_graph(graph, (2,)))
    first_backward = first_backward_node(joint, len(graph.outputs))
    assert ir.pretty(joint, title="d loss / d b", mark_from=first_backward) == golden("""
        # d loss / d b
        { lambda x:f32[64,256] w:f32[256,16] b:f32[16] .
          let a:f32[64,16] = matmul x w                                 # model.py:7
              c:f32[64,16] = add a b                                    # model.py:7
              d:f32[64,16] = tanh c                                     # model.py:7
              e:f32[64,16] = mul d 0.5:f32                              # model.py:8
              f:f32[]      = reduce_sum[axes=(0, 1), keepdims=False] e  # model.py:8
              # backward
              g:f32[64,16] = mul d d                                    # model.py:7
              h:f32[64,16] = sub 1.0:f32 g                              # model.py:7
              i:f32[64,16] = mul 0.5:f32 h                              # model.py:7
              j:f32[1,16]  = reduce_sum[axes=(0,), keepdims=True] i     # model.py:7
              k:f32[16]    = reshape[shape=(16,)] j                     # model.py:7
          in (f, k) }
    """)


def test_backward_mark_before_the_first_node_keeps_let():
    text = ir.pretty(mlp_graph(), mark_from=0).splitlines()
    assert text[1] == "      # backward"
    assert text[2].startswith("  let a:f32[64,16] = matmul x w")


def test_captured_constants_and_unnamed_inputs():
    x = Value((3,), F32)                       # no user name: it gets a letter
    with ir.building() as builder, ir.source_line("m.py:1"):
        y = ops.exp(x) * builder.capture(np.ones(3, F32))
    with ir.building() as untraced:            # no source line: no comment
        z = ops.sin(y)
    graph = ir.Graph((x,), tuple(builder.nodes + untraced.nodes), (z,),
                     tuple(builder.constants.values()))
    assert ir.pretty(graph) == golden("""
        { lambda a:f32[3] const0:f32[3] .
          let b:f32[3] = exp a         # m.py:1
              c:f32[3] = mul b const0  # m.py:1
              d:f32[3] = sin c
          in (d) }
    """)


def test_a_graph_without_nodes():
    x = Value((2,), F32, "x")
    assert ir.pretty(ir.Graph((x,), (), (x,))) == "{ lambda x:f32[2] .\n  in (x) }"


def test_printing_is_deterministic():
    graph = mlp_graph()
    joint = ir.vjp_graph(graph, (0, 1, 2))
    # Two tracings of one function give the same text, though every Value differs.
    assert ir.pretty(ir.vjp_graph(mlp_graph(), (0, 1, 2))) == ir.pretty(joint)


def test_many_values_get_multi_letter_names():
    x = Value((2,), F32, "x")
    with ir.building() as builder:
        y = x
        for _ in range(30):
            y = ops.sin(y)
    text = ir.pretty(builder.finish((x,), (y,)))
    assert text.splitlines()[-1] == "  in (ae) }"  # 25 letters (x is taken), then aa..ae
    assert "  x:" not in text
    assert "  z:f32[2]  = sin y" in text and "  aa:f32[2] = sin z" in text
