"""README's op table names only what exists: every `fg.`, `torch.` (fusegrad imported
as torch), `np.` (dispatched on a tensor) and `x.` (a Tensor method) spelling in it."""
from __future__ import annotations

import re
from functools import reduce
from pathlib import Path

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.tracer import numpy_dispatch

README = Path(__file__).resolve().parents[1] / "README.md"


def op_table() -> str:
    text = README.read_text()
    start = text.index("\n## Ops\n")
    return text[start:text.index("\n## ", start + 1)]


def spellings() -> list[str]:
    names = set()
    for span in re.findall(r"`([^`]+)`", op_table()):
        span = re.sub(r"\[[^]]*\]", "[]", span)   # x[np.arange(n), labels]: NumPy's own arange
        names.update(re.findall(r"\b(?:fg|np|torch|x)(?:\.[A-Za-z_][A-Za-z_0-9]*)+", span))
    return sorted(names)


def test_the_table_is_there_and_long():
    assert len(spellings()) > 150


@pytest.mark.parametrize("spelling", spellings())
def test_spelling_exists(spelling):
    prefix, *path = spelling.split(".")
    if prefix in ("fg", "torch"):
        assert reduce(getattr, path, fg) is not None
    elif prefix == "x":
        assert hasattr(fg.Tensor, path[0]), f"Tensor has no {path[0]}"
    else:
        function = reduce(getattr, path, np)
        assert (function in numpy_dispatch.FUNCTIONS or function in numpy_dispatch.UFUNCS), \
            f"{spelling} does not dispatch to fusegrad"
