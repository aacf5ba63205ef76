"""The examples that are not run elsewhere run, briefly, and check what they print."""
from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_transformer_block(capsys):
    example = runpy.run_path(str(EXAMPLES / "transformer_block.py"))
    example["main"](steps=2, unfused=False)   # gradcheck, then two training steps
    out = capsys.readouterr().out
    assert "gradcheck (float64, finite differences): ok" in out and "step    2" not in out
    assert "step    1  loss 1.50" in out and "ms per step" in out


def test_train_mlp_dask(capsys):
    import pytest
    pytest.importorskip("dask.array")
    example = runpy.run_path(str(EXAMPLES / "train_mlp_dask.py"))
    losses = example["main"](rows=3000, chunk=1000, steps=3, workers=0)   # Dask's threads
    assert losses[-1] < 0.7 * losses[0]
    assert "3 steps on 3000 rows in 3 chunks" in capsys.readouterr().out
