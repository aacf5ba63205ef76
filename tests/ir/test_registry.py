"""Every primitive record is complete: what codegen, the runtime and the tracer read
from it exists, so that adding an op is one record (ir/primitives.py)."""
from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest

from fusegrad.codegen import scalar_math
from fusegrad.ir import primitives
from fusegrad.ir.primitive import ELEMENTWISE, REDUCTION, REGISTRY, Primitive

PRIMITIVES = sorted(REGISTRY.values(), key=lambda p: p.name)
REDUCTIONS = [p for p in PRIMITIVES if p.kind == REDUCTION]

# The atomics numba.cuda provides (cuda.atomic.<name>).
CUDA_ATOMICS = {"add", "sub", "max", "min", "nanmax", "nanmin", "and_", "or_", "xor",
                "exch", "inc", "dec", "compare_and_swap"}


def _scalar_text(prim: Primitive) -> str:
    """The scalar spelling's text: the template, or the source of the function."""
    return inspect.getsource(prim.scalar) if callable(prim.scalar) else prim.scalar or ""


@pytest.mark.parametrize("prim", PRIMITIVES, ids=lambda p: p.name)
def test_scalar_math_helpers_exist(prim):
    """Each `scalar_math.X` of a spelling exists on the CPU (codegen/scalar_math.py)
    and on CUDA, whose kernels bind `math` as scalar_math; each `math.X` exists."""
    text = _scalar_text(prim)
    for name in re.findall(r"\bscalar_math\.(\w+)", text):
        assert hasattr(scalar_math, name), f"{prim.name}: scalar_math.{name} is missing"
        assert hasattr(math, name), f"{prim.name}: CUDA's math.{name} is missing"
    for name in re.findall(r"(?<![\w.])math\.(\w+)", text):
        assert hasattr(math, name), f"{prim.name}: math.{name} is missing"


def _gives_no_gradient(prim: Primitive) -> bool:
    """Whether the VJP rule is constant None (comparisons, sign, stop_gradient): such a
    rule returns without looking at its arguments, a real one computes with them."""
    signature = inspect.signature(prim.vjp)
    positional = [p for p in signature.parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD]
    keywords = {p.name: None for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY}
    try:
        cotangents = prim.vjp(*[object()] * len(positional), **keywords)
    except Exception:  # noqa: BLE001 (arithmetic on the placeholders: a real rule)
        return False
    return all(c is None for c in cotangents)


@pytest.mark.parametrize("prim", PRIMITIVES, ids=lambda p: p.name)
def test_differentiable_primitives_have_a_grad_fn(prim):
    if prim.vjp is None:
        # Only constants and index results (argmax) have no rule at all.
        assert prim.kind == "index" or prim is primitives.const, f"{prim.name}: no VJP rule"
        return
    if not _gives_no_gradient(prim):
        assert prim.grad_fn and prim.grad_fn.endswith(("Backward0", "Backward1")), (
            f"{prim.name}: differentiable but no PyTorch grad_fn name ({prim.grad_fn!r})")


@pytest.mark.parametrize("prim", PRIMITIVES, ids=lambda p: p.name)
def test_every_primitive_runs_on_cuda(prim):
    """Elementwise ops are spelled in kernels, reductions by their monoid; any other
    has a device lowering in runtime/cuda.py or says `host_only`, never both."""
    if prim.kind == ELEMENTWISE:
        assert prim.scalar is not None and not prim.host_only, prim.name
        return
    if prim.kind == REDUCTION:
        assert prim.monoid is not None and not prim.host_only, prim.name
        return
    cuda_runtime = pytest.importorskip("fusegrad.runtime.cuda")
    lowered = prim in cuda_runtime.DEVICE_LOWERINGS
    assert lowered != prim.host_only, (
        f"{prim.name}: needs a device lowering or host_only=True, not "
        f"{'both' if lowered else 'neither'}")


@pytest.mark.parametrize("prim", REDUCTIONS, ids=lambda p: p.name)
def test_reductions_have_a_complete_monoid(prim):
    monoid = prim.monoid
    assert monoid is not None, f"{prim.name}: a reduction needs a monoid"
    assert callable(getattr(scalar_math, monoid.block, None)), (
        f"{prim.name}: scalar_math.{monoid.block} is missing")
    assert monoid.atomic in CUDA_ATOMICS, f"{prim.name}: cuda.atomic.{monoid.atomic} does not exist"
    assert set(monoid.kinds) <= set("biuf"), monoid.kinds


@pytest.mark.parametrize("prim", REDUCTIONS, ids=lambda p: p.name)
@pytest.mark.parametrize("terms", [[3.0, 1.5, 7.25], [-3.0, -1.5, -7.25], [2.0, np.nan, -4.0]],
                         ids=["positive", "negative", "nan"])
def test_monoid_folds_to_the_numpy_meaning(prim, terms):
    """The identity, then `update` term by term (as kernels do, here in Python), gives
    the record's NumPy `impl`: checks the identity, the combine and the NaN rule."""
    namespace = {"acc": prim.monoid.identity, "np": np}
    for term in terms:
        namespace["term"] = term
        exec(prim.monoid.update.format(acc="acc", x="term"), namespace)  # noqa: S102
    expected = prim.impl(np.array(terms), axes=(0,), keepdims=False)
    np.testing.assert_equal(namespace["acc"], expected)
