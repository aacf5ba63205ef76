"""Device-resident arrays on the CUDA target (issue 13): device arrays in, device
arrays out, nothing across the bus; the MLP example training on the device.

No GPU here: like tests/codegen/test_cuda.py, this file runs itself as a script
under Numba's CUDA simulator (which must be switched on before numba.cuda is first
imported, and other tests import it first), prints what it saw as JSON, and the
tests check it. The simulator's device arrays (`numba.cuda.to_device`) are the
device arrays: CuPy and torch are not installed, and need a real GPU.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fusegrad as fg

ROOT = Path(__file__).resolve().parents[2]


def loss(x, y):
    return (x * y).sum() + (x ** 2).mean()


def product(x, y):       # d/dx is y itself: the gradient must come back as a copy
    return (x * y).sum()


def tree(params, x):
    return (fg.tanh(x @ params["w"] + params["b"]) ** 2).sum()


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def describe(outputs) -> list:
    """(value, grads) as [type, shape, dtype, data] per array."""
    value, grads = outputs
    leaves = [value, *(grads.values() if isinstance(grads, dict) else grads)]
    return [[type(a).__name__, list(a.shape), str(a.dtype), host(a).ravel().tolist()]
            for a in leaves]


def error_of(call) -> list:
    try:
        call()
    except Exception as error:  # noqa: BLE001 -- the test checks which
        return [type(error).__name__, str(error)]
    return [None, ""]


# ---------------------------------------------------------------- the subprocess side

def resident() -> dict:
    from numba import cuda

    from fusegrad.runtime import cuda as runtime_cuda
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 150)), rng.standard_normal((2, 150))
    f = fg.compile_grad(loss, device="cuda")
    out: dict = {"numpy": describe(f(x, y))}
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    f(dx, dy)                                  # compiled and warm
    before = dict(runtime_cuda.bus_copies)
    out["device"] = describe(f(dx, dy))
    out["bus_copies"] = {k: runtime_cuda.bus_copies[k] - before[k] for k in before}
    out["mixed"] = describe(f(dx, y))
    out["strided"] = describe(f(cuda.to_device(np.concatenate([x, y], 1))[:, :150], dy))
    out["inputs_unchanged"] = bool((dx.copy_to_host() == x).all() and (dy.copy_to_host() == y).all())
    g = fg.compile_grad(product, device="cuda")
    _, (gx, _) = g(dx, dy)
    gx[0, 0] = 1e9                             # the caller may write to what comes back
    out["grad_is_a_copy"] = bool((dy.copy_to_host() == y).all())
    w, b, xs = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((5, 3))
    t = fg.compile_grad(tree, device="cuda", wrt=0)
    out["tree_numpy"] = describe(t({"w": w, "b": b}, xs))
    out["tree_device"] = describe(t({"w": cuda.to_device(w), "b": cuda.to_device(b)},
                                    cuda.to_device(xs)))
    out["scalar"] = describe(fg.compile_grad(lambda s, v: (s * v).sum(), device="cuda")(
        cuda.to_device(np.array(2.0)), dy))
    out["float16"] = error_of(lambda: f(cuda.to_device(x.astype(np.float16)), dy))
    out["shape"] = error_of(lambda: f(dx, cuda.to_device(np.ones((2, 3)))))
    out["cpu_target"] = error_of(lambda: fg.compile_grad(loss)(dx, y))
    return out


def train() -> dict:
    from fusegrad.runtime import cuda as runtime_cuda
    example = runpy.run_path(str(ROOT / "examples" / "train_mlp.py"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        example["main"](steps=2, device="cuda", batch=16, hidden=4, every=2)
    return {"printed": printed.getvalue(), "bus_copies": runtime_cuda.bus_copies}


def start(mode: str, tmp_path: Path) -> subprocess.Popen:
    env = dict(os.environ, FUSEGRAD_CACHE_DIR=str(tmp_path), PYTHONWARNINGS="ignore",
               NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, __file__, mode], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def report_of(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, f"{process.args[-1]} failed:\n{stdout[-3000:]}\n{stderr[-6000:]}"
    return json.loads(stdout.splitlines()[-1])


MODES = ("resident", "train")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    processes = {mode: start(mode, tmp_path_factory.mktemp(mode)) for mode in MODES}
    return {mode: report_of(process) for mode, process in processes.items()}


# ---------------------------------------------------------------- the tests

def arrays(described) -> list[np.ndarray]:
    return [np.array(data, dtype).reshape(shape) for _, shape, dtype, data in described]


def test_device_arrays_in_device_arrays_out(reports):
    report = reports["resident"]
    assert {kind for kind, *_ in report["numpy"]} == {"ndarray"}
    assert {kind for kind, *_ in report["device"]} == {"FakeCUDAArray"}
    assert report["device"][0][1] == []                       # the value is 0-d, as on the host
    for got, expected in zip(arrays(report["device"]), arrays(report["numpy"])):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_a_call_on_device_arrays_copies_nothing_across_the_bus(reports):
    assert reports["resident"]["bus_copies"] == {"host_to_device": 0, "device_to_host": 0}


def test_mixed_strided_and_pytree_arguments(reports):
    report = reports["resident"]
    for case in ("mixed", "strided"):   # a NumPy array beside a device one; a strided view
        assert {kind for kind, *_ in report[case]} == {"FakeCUDAArray"}, case
        for got, expected in zip(arrays(report[case]), arrays(report["numpy"])):
            np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert [k for k, *_ in report["tree_device"]] == ["FakeCUDAArray"] * 3
    for got, expected in zip(arrays(report["tree_device"]), arrays(report["tree_numpy"])):
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    (value, grad) = arrays(report["scalar"])[:2]
    assert grad.shape == () and value.shape == ()


def test_inputs_are_never_written_nor_returned(reports):
    report = reports["resident"]
    assert report["inputs_unchanged"]
    assert report["grad_is_a_copy"]


def test_device_array_errors_name_the_problem(reports):
    report = reports["resident"]
    kind, message = report["float16"]
    assert kind == "DTypeError" and "float16" in message and "(2, 150)" in message
    kind, message = report["shape"]
    assert kind == "ShapeError" and "mul" in message and "(2, 150)" in message and "(2, 3)" in message
    kind, message = report["cpu_target"]
    assert kind == "ArgumentError" and "argument 0 (x)" in message and "device='cuda'" in message


def test_train_mlp_on_the_device_matches_the_cpu(reports):
    example = runpy.run_path(str(ROOT / "examples" / "train_mlp.py"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        example["main"](steps=2, device="cpu", batch=16, hidden=4, every=2)
    losses = [line for line in printed.getvalue().splitlines() if "loss" in line]
    report = reports["train"]
    assert [line for line in report["printed"].splitlines() if "loss" in line] == losses
    assert len(losses) == 2
    # The loss is the caller's copy; the compiled function itself moved nothing.
    assert report["bus_copies"] == {"host_to_device": 0, "device_to_host": 0}


if __name__ == "__main__":
    print(json.dumps(globals()[sys.argv[1]]()))
