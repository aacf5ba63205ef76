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
    out["dlpack"] = error_of(lambda: f(CudaDLPack(), dy))
    return out


class CudaDLPack:
    """An array that offers only DLPack, from CUDA memory (as a JAX GPU array does)."""
    shape, dtype = (2, 150), np.dtype(np.float64)

    def __dlpack__(self, stream=None):
        raise AssertionError("taken through CuPy, never read here")

    def __dlpack_device__(self):
        return (2, 0)   # kDLCUDA, device 0


def train() -> dict:
    """The example, then what it left in the kernel cache and the dump of its loss."""
    from fusegrad.runtime import cache, loader
    from fusegrad.runtime import cuda as runtime_cuda
    example = runpy.run_path(str(ROOT / "examples" / "train_mlp.py"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        example["main"](steps=2, device="cuda", batch=16, hidden=4, every=2)
    out = {"printed": printed.getvalue(), "bus_copies": dict(runtime_cuda.bus_copies)}
    directory = Path(os.environ["FUSEGRAD_CACHE_DIR"])
    files = sorted(p.name for p in directory.glob("k_*.py"))
    # As a new process would: the kernels' modules forgotten, compiled again, from
    # the files on disk (the simulator has no compiled code to cache: Numba's part,
    # numba_cache.KernelLocator, is checked where numba-cuda is installed).
    written = cache._written
    loader._modules.clear()
    f = fg.compile_grad(example["mlp_loss"], wrt=(1, 2, 3, 4), device="cuda")
    x, y, params = example["data"](np.random.default_rng(0), 16, 4)
    f(x, *params, y)
    out["cache"] = {"files": files, "written_again": cache._written - written,
                    "files_after": sorted(p.name for p in directory.glob("k_*.py")),
                    "sources": [(directory / name).read_text() for name in files]}
    out["dump"] = f.dump(x, *params, y)
    return out


def eager() -> dict:
    """The seeds' CUDA programs (000 and 004), and what eager CUDA tensors hold."""
    from fusegrad.autograd import Variable
    from fusegrad.runtime import cuda as runtime_cuda
    out: dict = {}
    x = Variable((fg.ones(1) * 3).cuda(), requires_grad=True)      # seed 000, cuda scalar
    y = Variable((fg.ones(1) * 4).cuda(), requires_grad=True)
    z = x.pow(2) + 3 * y.pow(2)
    z.backward()
    out["scalar"] = [repr(x.grad), repr(y.grad), repr(z)]
    x = Variable(fg.Tensor([[1, 2, 3], [4, 5, 6]]).cuda(), requires_grad=True)   # cuda matrix
    y = Variable(fg.Tensor([[1, 2, 3], [4, 5, 6]]).cuda(), requires_grad=True)
    z = x.mm(y.t())
    z.backward(fg.ones(2, 2).cuda(0, non_blocking=True))
    out["matrix"] = [repr(x.grad), repr(y.grad), repr(z)]
    out["storage"] = sorted({type(t._data).__name__ for t in (x, y, z, x.grad, y.grad)})
    c = Variable(fg.tensor([1.0, -2.0, 0.5]), requires_grad=True)   # seed 004: a copy to the GPU
    d = c.cuda()
    (d * 2).sum().backward()
    out["copy"] = [repr(d), repr(c.grad), type(c.grad._data).__name__]
    # After a first run (compiles), ops and their backward on the device copy nothing
    # across the bus (backward()'s implicit seed is on the device already).
    w = fg.randn(4, 3, device="cuda", requires_grad=True)
    inputs = fg.randn(5, 4).to("cuda")
    for _ in range(2):
        before = dict(runtime_cuda.bus_copies)
        loss = (fg.tanh(inputs @ w) ** 2).mean()
        loss.backward()
        out["bus_copies"] = {k: runtime_cuda.bus_copies[k] - before[k] for k in before}
    expected = (np.tanh(inputs.cpu().numpy() @ w.detach().cpu().numpy()) ** 2).mean()
    out["mlp"] = [float(loss), float(expected), str(w.grad.device), list(w.grad.shape)]
    a = fg.ones(3, device="cuda", requires_grad=True)
    (a * 2).sum().backward()
    (a * 3).sum().backward()                  # gradients accumulate on the device
    out["accumulated"] = [a.grad.tolist(), type(a.grad._data).__name__]
    m = fg.Tensor([[1, 2, 3], [4, 5, 6]]).cuda()
    out["device"] = [str(m.device), m.is_cuda, str(m.cpu().device), m.cpu().tolist(), m[1].tolist(),
                     str(fg.zeros(2, device="cuda").device), m.sum().item()]
    out["mixed"] = error_of(lambda: m + fg.ones(2, 3))
    out["numpy"] = error_of(lambda: m.numpy())
    compiled = fg.compile_grad(lambda a: (a * a).sum(), device="cuda")
    value, (grad,) = compiled(fg.tensor([1.0, 2.0], device="cuda"))
    out["compiled"] = [type(grad).__name__, host(grad).tolist()]
    return out


def sgd_steps(device: str, steps: int = 3) -> tuple[list, dict]:
    """An eager PyTorch-style training loop; its printed losses, and the bus copies
    of its last step (on the device: the printed loss only)."""
    from fusegrad.runtime import cuda as runtime_cuda
    rng = np.random.default_rng(1)
    x = fg.tensor(rng.standard_normal((8, 3)), dtype=fg.float32).to(device)
    y = fg.tensor(rng.standard_normal((8, 1)), dtype=fg.float32).to(device)
    w1 = fg.tensor(rng.standard_normal((3, 4)), dtype=fg.float32).to(device).requires_grad_()
    b1 = fg.zeros(4, device=device, requires_grad=True)
    w2 = fg.tensor(rng.standard_normal((4, 1)), dtype=fg.float32).to(device).requires_grad_()
    velocity = fg.zeros(3, 4, device=device)
    losses, lr = [], 0.1
    for step in range(steps):
        before = dict(runtime_cuda.bus_copies)
        loss = ((fg.tanh(x @ w1 + b1) @ w2 - y) ** 2).mean()
        loss.backward()
        with fg.no_grad():
            velocity.mul_(0.9).add_(w1.grad)          # momentum, in place
            w1 -= lr * velocity
            b1.sub_(b1.grad, alpha=lr)
            w2.data -= lr * w2.grad
            w1.grad.zero_()
            b1.grad = None
            w2.grad.fill_(0)
        losses.append(f"{float(loss):.6f}")
        copies = {k: runtime_cuda.bus_copies[k] - before[k] for k in before}
    return losses + [w1.cpu().tolist(), b1.cpu().tolist(), w2.cpu().tolist()], copies


def inplace() -> dict:
    """In-place ops on CUDA tensors (s3 item 1): beside the same ops on the CPU."""
    out: dict = {}
    out["sgd"], out["sgd_copies"] = sgd_steps("cuda")
    out["sgd_cpu"], _ = sgd_steps("cpu")

    def recorded(device):   # autograd through an in-place op, as on the CPU
        w = fg.tensor([[1.0, -2.0], [0.5, 3.0]], device=device, requires_grad=True)
        h = w * 2
        h.mul_(w).add_(1)
        h[0, 1] = 7.0
        h.sum().backward()
        m = fg.zeros(2, 3, device=device)
        m[0] = 5.0
        m[:, 1] = fg.tensor([8.0, 9.0], device=device)
        m[-1, -1] = fg.tensor(4.0, device=device)
        m.copy_(m + fg.ones(2, 3).to(device))
        c = fg.ones(2, 3, device=device)
        c.copy_(fg.full((2, 3), 6.0))               # from the CPU, as PyTorch's copy_
        return [h.cpu().tolist(), w.grad.cpu().tolist(), repr(h.grad_fn)[:20],
                m.cpu().tolist(), c.cpu().tolist(), h._version, m._version]
    out["recorded"] = [recorded("cuda"), recorded("cpu")]

    def errors(device):
        leaf = fg.ones(3, device=device, requires_grad=True)
        other = fg.full((3,), 2.0, device=device)
        product = (leaf * other).sum()
        other.mul_(2)                                # read by the recorded product
        return [error_of(lambda: leaf.add_(1)), error_of(product.backward)]
    out["errors"] = [errors("cuda"), errors("cpu")]
    out["views"] = [views("cuda"), views("cpu")]
    out["reductions"] = reductions()
    return out


def middle_reductions(x):
    """Reductions the loop kernels do not take: a middle axis, axes apart, keepdims."""
    return ((x.sum(axis=1) ** 2).sum() + x.max(axis=(0, 2)).sum()
            + (fg.min(x, axis=1, keepdims=True) * x).sum())


def reductions() -> dict:
    """Middle-axis reductions run on the device (s3 item 4), as the CPU computes them
    (eagerly here: NumPy's numbers, with no CPU kernels to compile)."""
    from numba import cuda

    from fusegrad.runtime import cuda as runtime_cuda
    out: dict = {}
    x = np.random.default_rng(2).standard_normal((3, 5, 4))
    x[0, 2, 1] = np.nan                          # NaN wins max and min, as in NumPy
    for dtype in (np.float64, np.float32):
        device = fg.compile_grad(middle_reductions, device="cuda")
        dx = cuda.to_device(x.astype(dtype))
        device(dx)
        before = dict(runtime_cuda.bus_copies)
        value, (grad,) = device(dx)
        report = out[np.dtype(dtype).name] = {
            "device": [host(value).tolist(), host(grad).ravel().tolist()],
            "copies": {k: runtime_cuda.bus_copies[k] - before[k] for k in before}}
        clean = np.nan_to_num(x).astype(dtype)
        eager = fg.tensor(clean, requires_grad=True)
        total = middle_reductions(eager)
        total.backward()
        value, (grad,) = device(cuda.to_device(clean))
        report["clean"] = [[host(value).tolist()] + host(grad).ravel().tolist(),
                           [total.item()] + eager.grad.numpy().ravel().tolist()]
        report["nan"] = float(middle_reductions(fg.tensor(x.astype(dtype))))
    out["dump"] = device.dump(dx)
    return out


def views(device: str) -> list:
    """Views of a CUDA tensor share its device array (s3 item 2): writes through them
    reach the base; gradients flow through them; kernels read them without the bus."""
    from fusegrad.runtime import cuda as runtime_cuda
    base = fg.arange(12, dtype=fg.float32).reshape(3, 4).to(device)
    row, column, t, flat = base[1], base[:, 2], base.t(), base.view(-1)
    expanded, unsqueezed = base[0:1].expand(2, 4), base.unsqueeze(0).squeeze(0)
    kinds = [type(x._data).__name__ for x in (row, column, t, flat, expanded, unsqueezed)]
    row.mul_(10)
    column += 1
    t[0, 0] = -1.0
    flat[11] = 99.0
    clone = base.clone()
    clone.zero_()                               # a clone is storage of its own
    w = fg.arange(6, dtype=fg.float32).reshape(2, 3).to(device).requires_grad_()
    y = (w.t()[1:] * fg.tensor([[1.0, 2.0], [3.0, 4.0]]).to(device)).sum() + \
        (w[:, None, :].expand(2, 2, 3) ** 2).sum()
    y.backward()
    v = fg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], device=device, requires_grad=True)
    h = v * 1
    h[0].mul_(3)                                 # recorded, through views of h
    h[:, 1:] += v[:, :2] * 2
    (h ** 2).sum().backward()
    before = dict(runtime_cuda.bus_copies)
    product = base.t() @ base[:, :2]             # strided operands, copied on the device
    copies = {k: runtime_cuda.bus_copies[k] - before[k] for k in before}
    return [kinds, base.cpu().tolist(), expanded.cpu().tolist(), t.cpu().tolist(),
            [base._version, row._version, t.is_contiguous()], w.grad.cpu().tolist(),
            product.cpu().tolist(), copies, v.grad.cpu().tolist()]


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


MODES = ("resident", "train", "eager", "inplace")


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


def test_dlpack_only_arrays_go_through_cupy_or_are_refused_clearly(reports):
    from fusegrad.runtime.device_arrays import is_cuda_dlpack, is_device_array
    assert is_cuda_dlpack(CudaDLPack()) and is_device_array(CudaDLPack())
    assert not is_cuda_dlpack(np.ones(3))         # NumPy speaks DLPack too, from the CPU
    kind, message = reports["resident"]["dlpack"]   # (CuPy is not installed here)
    assert kind == "UnsupportedError" and "CudaDLPack" in message and "cupy" in message
    assert "__cuda_array_interface__" in message


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


def test_cuda_kernels_are_cached_on_disk_and_reused(reports):
    cached = reports["train"]["cache"]
    assert cached["files"] and cached["files_after"] == cached["files"]
    assert cached["written_again"] == 0
    assert any("def matmul_float32(" in s for s in cached["sources"])
    assert any("def fill(" in s for s in cached["sources"])     # column sums start at 0
    assert all("@cuda.jit(cache=True)" in s for s in cached["sources"])


def test_cuda_dump_shows_sources_and_launch_configuration(reports):
    dump = reports["train"]["dump"]
    assert "launched on 1 block of 128 threads" in dump
    assert "_epilogue on 1 block" in dump
    assert "# library kernels on the device" in dump and "def matmul_float32(" in dump
    assert "matmul to float32[16, 4]: grid 1x1 of 16x16 threads" in dump
    assert "transpose to float32" in dump and "def transpose_1_0(" in dump
    # Without CuPy (and always on the simulator) products run on fusegrad's kernel,
    # and the plan says why.
    assert "a tiled shared-memory CUDA kernel, grid 1x1 of 16x16 threads (CuPy is not installed" in dump


def test_numba_cuda_caches_kernels_beside_their_files(tmp_path, monkeypatch):
    """Where numba-cuda is installed (it has its own copy of Numba's caching), its
    compiled kernels go to fusegrad's cache directory, as the CPU's do."""
    import importlib.util
    if os.environ.get("NUMBA_ENABLE_CUDASIM") or importlib.util.find_spec("numba.cuda.core") is None:
        pytest.skip("numba-cuda is not installed (the built-in numba.cuda caches as the CPU does)")
    from numba.cuda.core import caching
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))
    from fusegrad.codegen.cuda import FILL_ENTRY, emit_cuda_fill
    from fusegrad.runtime import numba_cache
    from fusegrad.runtime.cuda import load   # installs the locator
    assert caching.CacheImpl._locator_classes[0] is numba_cache.KernelLocator
    kernel = load(emit_cuda_fill() + "\n# a file of this test's own\n", FILL_ENTRY)
    cache = getattr(kernel._cache, "_inner", kernel._cache)
    assert isinstance(cache._impl._locator, numba_cache.KernelLocator)
    assert Path(cache._cache_path).parent == tmp_path


def test_the_seeds_cuda_programs_print_the_seeds_numbers(reports):
    report = reports["eager"]
    assert report["scalar"] == ["tensor([6.], device='cuda:0')", "tensor([24.], device='cuda:0')",
                                "tensor([57.], device='cuda:0', grad_fn=<AddBackward0>)"]
    grad = "tensor([[5., 7., 9.],\n        [5., 7., 9.]], device='cuda:0')"
    assert report["matrix"] == [grad, grad, "tensor([[14., 32.],\n        [32., 77.]], "
                                            "device='cuda:0', grad_fn=<MmBackward0>)"]
    assert report["copy"] == ["tensor([ 1.0000, -2.0000,  0.5000], device='cuda:0', "
                              "grad_fn=<ToCopyBackward0>)", "tensor([2., 2., 2.])", "ndarray"]


def test_eager_cuda_tensors_keep_their_data_on_the_device(reports):
    report = reports["eager"]
    assert report["storage"] == ["FakeCUDAArray"]      # leaves, results and gradients
    assert report["bus_copies"] == {"host_to_device": 0, "device_to_host": 0}
    value, expected, device, shape = report["mlp"]
    assert value == pytest.approx(expected, rel=1e-6) and device == "cuda:0" and shape == [4, 3]
    assert report["device"] == ["cuda:0", True, "cpu", [[1, 2, 3], [4, 5, 6]], [4, 5, 6],
                                "cuda:0", 21]
    assert report["compiled"] == ["FakeCUDAArray", [2.0, 4.0]]
    assert report["accumulated"] == [[5.0, 5.0, 5.0], "FakeCUDAArray"]


def test_eager_cuda_errors(reports):
    report = reports["eager"]
    assert report["mixed"][0] == "RuntimeError" and "same device" in report["mixed"][1]
    assert report["numpy"][0] == "TypeError" and "Tensor.cpu()" in report["numpy"][1]


def test_eager_training_loop_in_place_on_the_device_matches_the_cpu(reports):
    """`with no_grad(): p -= lr * p.grad` and friends write the device arrays: the
    same losses, step by step, as on the CPU, and per step only the printed loss
    crosses the bus."""
    report = reports["inplace"]
    *losses, w1, b1, w2 = report["sgd"]
    *cpu_losses, cpu_w1, cpu_b1, cpu_w2 = report["sgd_cpu"]
    assert losses == cpu_losses and len(losses) == 3 and losses[2] < losses[0]
    for got, expected in ((w1, cpu_w1), (b1, cpu_b1), (w2, cpu_w2)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert report["sgd_copies"] == {"host_to_device": 0, "device_to_host": 1}


def test_recorded_in_place_ops_and_assignment_on_the_device_as_on_the_cpu(reports):
    on_device, on_cpu = reports["inplace"]["recorded"]
    assert on_device == on_cpu
    assert on_device[1] == [[4.0, -0.0], [2.0, 12.0]]     # through mul_, add_ and h[0, 1] = 7
    assert on_device[3] == [[6.0, 9.0, 6.0], [1.0, 10.0, 5.0]]
    cuda_errors, cpu_errors = reports["inplace"]["errors"]
    assert cuda_errors == cpu_errors
    assert "leaf Variable" in cuda_errors[0][1] and "modified by an inplace" in cuda_errors[1][1]


def test_views_of_cuda_tensors_share_the_device_array(reports):
    on_device, on_cpu = reports["inplace"]["views"]
    assert on_device[0] == ["FakeCUDAArray"] * 6 and on_cpu[0] == ["ndarray"] * 6
    assert on_device[1:] == on_cpu[1:]
    assert on_device[1] == [[-1.0, 1.0, 3.0, 3.0], [40.0, 50.0, 61.0, 70.0], [8.0, 9.0, 11.0, 99.0]]
    assert on_device[4] == [4, 4, False]                   # one version counter; t() is strided
    assert on_device[5] == [[0.0, 5.0, 11.0], [12.0, 18.0, 24.0]]
    assert on_device[7] == {"host_to_device": 0, "device_to_host": 0}
    assert on_device[8] == [[50.0, 100.0, 78.0], [60.0, 90.0, 32.0]]


def test_middle_axis_reductions_run_on_the_device(reports):
    report = reports["inplace"]["reductions"]
    for dtype, rtol in (("float64", 1e-12), ("float32", 1e-5)):
        np.testing.assert_allclose(*report[dtype]["clean"], rtol=rtol)
        assert np.isnan(report[dtype]["device"][0]) and np.isnan(report[dtype]["nan"])
        assert report[dtype]["copies"] == {"host_to_device": 0, "device_to_host": 0}, dtype
    dump = report["dump"]
    assert "copied to the host" not in dump
    assert "a CUDA kernel, a thread per output" in dump and "(A, R, B) = (3, 5, 4)" in dump
    assert "a CUDA transpose (1, 0, 2) to make the reduced axes adjacent" in dump
    assert "def reduce_max_float32(x, out, A, R, B):" in dump and "def transpose_1_0_2(" in dump


if __name__ == "__main__":
    print(json.dumps(globals()[sys.argv[1]]()))
