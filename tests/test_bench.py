"""The benchmark's baselines are right, and the CLI writes one record per measurement.

Tiny sizes and two repeats: these check the harness, never a timing.
"""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from fusegrad import bench
from fusegrad.__main__ import AVX2_ENVIRONMENT, main, use_avx2_code
from fusegrad.bench_workloads import WORKLOADS, find_workload

TINY = {"W1": 50, "W2": 50, "W3": 6, "W4": 5, "W5": 7}  # N for W1/W2, rows otherwise


def _logsumexp(a, axis):
    top = anp.max(a, axis=axis, keepdims=True)
    return anp.log(anp.sum(anp.exp(a - top), axis=axis)) + anp.squeeze(top, axis)


# The workloads' losses, run by autograd instead of fusegrad: the oracle.
AUTOGRAD = SimpleNamespace(tanh=anp.tanh, exp=anp.exp, sin=anp.sin, sqrt=anp.sqrt,
                           abs=anp.abs, logsumexp=_logsumexp)


def _float64(arrays):
    return tuple(a.astype(np.float64) for a in arrays)


def _assert_close(result, expected, rtol, value_atol=0.0):
    (value, grads), (expected_value, expected_grads) = result, expected
    np.testing.assert_allclose(value, expected_value, rtol=rtol, atol=value_atol)
    assert len(grads) == len(expected_grads)
    for grad, expected_grad in zip(grads, expected_grads):
        assert grad.shape == expected_grad.shape
        scale = np.max(np.abs(expected_grad))
        np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.key)
def test_numpy_baseline_matches_autograd(workload):
    inputs = workload.make_inputs(TINY[workload.key])
    loss = workload.loss(AUTOGRAD)
    wide = _float64(inputs)
    expected = (loss(*wide), autograd.grad(loss, list(workload.wrt))(*wide))
    _assert_close(workload.numpy_grad(*inputs), expected, rtol=1e-4)


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.key)
def test_numpy_baseline_matches_finite_differences(workload):
    # A central difference along one random direction, in float64, checks the gradients
    # without trusting autograd either.
    inputs = list(_float64(workload.make_inputs(TINY[workload.key])))
    _, grads = workload.numpy_grad(*inputs)
    rng = np.random.default_rng(1)
    directions = {i: rng.standard_normal(inputs[i].shape) for i in workload.wrt}
    eps = 1e-6

    def shifted(sign):
        args = [a + sign * eps * directions[i] if i in directions else a
                for i, a in enumerate(inputs)]
        return workload.numpy_grad(*args)[0]

    numeric = (shifted(1) - shifted(-1)) / (2 * eps)
    analytic = sum(np.sum(g * directions[i]) for g, i in zip(grads, workload.wrt))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


@pytest.mark.parametrize("workload", [w for w in WORKLOADS if w.numba_grad],
                         ids=lambda w: w.key)
def test_single_pass_numba_matches_numpy(workload):
    inputs = workload.make_inputs(TINY[workload.key])
    # W5's value sums 7168 float32 terms of size ~1 that cancel to ~0.03: rounding alone
    # moves it by ~1e-5, which is no bug; a wrong formula moves it by ~1.
    _assert_close(workload.numba_grad(*inputs), workload.numpy_grad(*inputs), rtol=1e-5,
                  value_atol=1e-4)


def test_find_workload_by_key_or_name():
    assert find_workload("w5") is find_workload("layernorm") is WORKLOADS[4]
    with pytest.raises(ValueError, match="known: W1"):
        find_workload("W9")


def test_relative_error_rejects_wrong_shapes():
    reference = (1.0, (np.ones(3),))
    assert bench.relative_error((1.0, (np.ones(3),)), reference) == 0
    with pytest.raises(ValueError, match="shape"):
        bench.relative_error((1.0, (np.ones(4),)), reference)


def test_systems_are_timed_in_turns_and_a_failure_stays_their_own(monkeypatch):
    monkeypatch.setattr(bench, "TURN_WARMUP_S", 0.0)   # one warm-up call a turn
    calls = []

    def system(name, fails_at=None):
        def fn():
            calls.append(name)
            if len(calls) == fails_at:
                raise RuntimeError("out of memory")
        record = bench.Record("W1", "seed-poly", 8, name, "cpu", 64)
        return bench.Timed(fn, record, calls=7)

    first, second, failing = system("first"), system("second"), system("failing", fails_at=5)
    bench.time_rounds([first, second, failing], ())

    # Each turn: each system's warm-up call and its share of the 7 timed calls.
    shares = [7 * (k + 1) // bench.ROUNDS - 7 * k // bench.ROUNDS for k in range(bench.ROUNDS)]
    expected = ["first"] * 2 + ["second"] * 2 + ["failing"]   # failing fails in its warm-up
    for n in shares[1:]:
        expected += ["first"] * (1 + n) + ["second"] * (1 + n)
    assert shares[0] == 1 and calls == expected
    assert first.record.repeats == second.record.repeats == 7
    assert first.record.status == second.record.status == "ok"
    assert 0 < second.record.min_s <= second.record.median_s <= second.record.max_s
    assert failing.record.status == "failed: RuntimeError: out of memory"
    assert failing.record.median_s is None


def test_cli_json_has_one_record_per_workload_size_system(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, FUSEGRAD_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "fusegrad", "bench", "--quick", "--keep-blas-env",
               "--workload", "W1", "--size", "8", "--size", "64", "--repeat", "2",
               "--json", str(out)]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=120)
    document = json.loads(out.read_text())

    systems = [s.name for s in bench.find_systems("cpu", []) if s.covers(WORKLOADS[0])]
    keys = [(r["workload"], r["size"], r["system"]) for r in document["records"]]
    assert sorted(keys) == sorted(("W1", n, s) for n in (8, 64) for s in systems)
    assert document["machine"]["numba_threads"] >= 1
    assert document["machine"]["triad_gbps"]["cpu"] > 0
    for record in document["records"]:
        assert record["status"] == "ok", record
        assert record["correct"]
        assert record["repeats"] == 2
        assert record["median_s"] > 0 and record["first_call_s"] > 0
        assert record["minimal_bytes"] == 4 * 4 * record["size"]  # x, y in; gx, gy out


def test_avx2_runs_every_system_on_avx2_code(tmp_path):
    """`--avx2` sets each library's variable before it loads (the process re-executes
    itself, numpy being loaded by then) and compiles fusegrad's kernels for haswell."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k not in AVX2_ENVIRONMENT}
    env.update(FUSEGRAD_CACHE_DIR=str(tmp_path / "cache"), XLA_FLAGS="--xla_dump_to=/nowhere")
    command = [sys.executable, "-m", "fusegrad", "bench", "--quick", "--avx2", "--workload",
               "W1", "--size", "8", "--repeat", "2", "--json", str(out)]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=120)
    document = json.loads(out.read_text())

    assert document["machine"]["cpu_target"] == "haswell"
    assert "+avx512f" not in document["machine"]["cpu_features"]  # not the host's (issue 12)
    assert any("NUMBA_CPU_NAME=haswell" in note and "ATEN_CPU_CAPABILITY=avx2" in note
               for note in document["notes"])
    assert all(r["status"] == "ok" and r["correct"] for r in document["records"])


def test_avx2_keeps_the_users_other_xla_flags(monkeypatch):
    for name, value in AVX2_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/x --xla_cpu_max_isa=AVX512")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/mine")
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("re-executed"))
    monkeypatch.delitem(sys.modules, "numpy")   # as if numpy were not loaded yet

    notes = use_avx2_code()

    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/x --xla_cpu_max_isa=AVX2"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/tmp/mine"
    assert notes and "OPENBLAS_CORETYPE=Haswell" in notes[0]


def test_plain_table_without_rich(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "rich", None)  # makes `import rich...` fail
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.setitem(sys.modules, "rich.progress", None)
    monkeypatch.setitem(sys.modules, "rich.table", None)
    assert main(["bench", "--quick", "--keep-blas-env", "--workload", "seed-poly",
                 "--size", "16", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "numpy" in out
    assert 'pip install "fusegrad[bench]"' in out


def test_info_reports_the_cache(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numba threads" in out and str(tmp_path) in out
    assert "python -m fusegrad cache clear" in out
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", "off")
    assert main(["info"]) == 0
    assert "off" in capsys.readouterr().out


# ---------------------------------------------------------------- issue 12: bench --cold

def test_cold_start_then_the_disk_cache(tmp_path, capsys):
    """`bench --cold`: a fresh process with an empty cache compiles, a second one
    loads the same kernels from the disk cache and compiles nothing."""
    out = tmp_path / "cold.json"
    assert main(["bench", "--cold", "--keep-blas-env", "--workload", "W1", "--size", "40",
                 "--json", str(out)]) == 0
    records = json.loads(out.read_text())["cold"]
    assert [(r["workload"], r["size"], r["cache"]) for r in records] == \
        [("W1", 40, "empty"), ("W1", 40, "disk")]
    empty, disk = records
    assert all(r["status"] == "ok" and r["import_s"] > 0 and r["first_call_s"] > 0
               and r["cpu_s"] > 0 for r in records)
    assert empty["compiles"] >= 1 and empty["cache_loads"] == 0
    assert disk["compiles"] == 0 and disk["cache_loads"] == empty["compiles"]
    assert "first call s" in capsys.readouterr().out


# --- issue 12: --dtype and --scaling ---------------------------------------------------------

def test_scaling_sweep_in_float64(monkeypatch, capsys, tmp_path):
    """--scaling times fusegrad and the single-pass kernel only, checked against the
    single-pass kernel, and prints the roofline beside them; --dtype float64 casts the
    inputs (twice the bytes)."""
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "scaling.json"
    assert main(["bench", "--scaling", "--quick", "--keep-blas-env", "--workload", "W1",
                 "--size", "16", "--size", "64", "--repeat", "2", "--dtype", "float64",
                 "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["machine"]["dtype"] == "float64" and document["machine"]["scaling"]
    keys = sorted((r["size"], r["system"]) for r in document["records"])
    assert keys == [(n, s) for n in (16, 64) for s in ("fusegrad", "numba-1pass")]
    for record in document["records"]:
        assert record["correct"] and record["dtype"] == "float64"
        assert record["minimal_bytes"] == 4 * 8 * record["size"]
    printed = capsys.readouterr().out
    assert "roofline ms" in printed and "fusegrad / roofline" in printed


def test_scaling_defaults_and_roofline():
    options, systems = bench.Options(), bench.find_systems("cpu", [])
    from fusegrad.__main__ import _scaling, build_parser
    options, systems = _scaling(bench, options, systems, build_parser().parse_args(["bench"]))
    assert [w.key for w in options.workloads] == ["W1", "W2"] and options.scaling
    assert options.sizes == tuple(10**k for k in range(3, 9))
    assert [s.name for s in systems] == ["fusegrad", "numba-1pass"]
    record = bench.Record("W1", "seed-poly", 10, "fusegrad", "cpu", minimal_bytes=2 * 10**9)
    assert bench.roofline_s(record, {"cpu": 20.0}) == pytest.approx(0.1)


def test_scaling_plot_draws_the_roofline(tmp_path):
    pytest.importorskip("matplotlib")
    from fusegrad.report import plot
    records = [bench.Record(key, "w", n, system, "cpu", minimal_bytes=16 * n, median_s=1e-9 * n,
                            bandwidth_fraction=0.5)
               for key in ("W1", "W2") for n in (10**3, 10**6) for system in ("fusegrad", "numpy")]
    report = bench.Report({"numba_threads": 2, "triad_gbps": {"cpu": 16.0}, "dtype": "float32"},
                          [], records)
    plot(report, str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    import matplotlib.pyplot as plt
    from fusegrad.report import draw_roofline
    figure, ax = plt.subplots()
    draw_roofline(ax, records[:4], {"cpu": 16.0})
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [10**3, 10**6]
    np.testing.assert_allclose(line.get_ydata(), [16 * 10**3 / 16e9, 16 * 10**6 / 16e9])
    plt.close(figure)
