"""What a compilation costs (issue 12): kernels that do the same work are compiled
once, and a CPU kernel is one function, compiled once whether it runs on threads."""
from __future__ import annotations

import numpy as np

import fusegrad as fg
from fusegrad.runtime import executable, stats
from fusegrad.runtime.executable import KernelStep
from fusegrad.runtime.loader import load

STEPS = 5


def _rnn(w, u, b, xs, h0):
    """An unrolled RNN: every step's forward and backward kernels do the same work."""
    h, total = h0, 0.0
    for t in range(STEPS):
        h = fg.tanh(h @ w + xs[t] @ u + b)
        total = total + h.sum()
    return total


def _rnn_args(dtype=np.float64):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((3, 3)).astype(dtype) * 0.5,
            rng.standard_normal((2, 3)).astype(dtype) * 0.5,
            rng.standard_normal(3).astype(dtype),
            rng.standard_normal((STEPS, 2, 2)).astype(dtype),
            np.zeros((2, 3), dtype))


RNN = fg.compile_grad(_rnn)


def _kernel_steps(traced_for, f, *args):
    return [s for s in traced_for(f, *args).executable.steps if isinstance(s, KernelStep)]


def test_kernels_doing_the_same_work_share_one_compilation(traced_for, assert_all_close):
    args = _rnn_args()
    kernels = _kernel_steps(traced_for, RNN, *args)  # traced and planned; nothing compiled
    files = {s.compiled.text for s in kernels}
    # Each middle step's forward kernel and backward kernel is one file.
    assert len(files) <= len(kernels) - 2 * (STEPS - 3), (len(files), len(kernels))
    functions = {id(f): f for f in (load(s.compiled.text, s.entry) for s in kernels)}
    known = {key: len(f.signatures) for key, f in functions.items()}
    stats.reset()
    value, grads = RNN(*args)
    counts = stats.snapshot()
    # Compiled (or loaded) once per file, not once per kernel (an earlier test of this
    # process may have compiled a file already, for these argument types or others).
    assert counts["compiles"] + counts["cache_loads"] <= len(files)
    assert all(len(f.signatures) - known[key] <= 1 for key, f in functions.items())
    assert counts["kernels_launched"] == len(kernels)
    # Sharing a kernel changes no number: the unfused plan computes the same.
    plain = fg.compile_grad(_rnn, fuse=False)(*args)
    assert_all_close([value, *grads], [plain[0], *plain[1]], np.float64)


def test_the_dump_shows_the_graphs_names_and_the_file_that_runs(traced_for):
    args = _rnn_args()
    kernels = _kernel_steps(traced_for, RNN, *args)
    names = traced_for(RNN, *args).executable.names
    for step in kernels:
        for node in step.kernel.nodes:
            assert f"# {names.ir(node.out)} = {node.primitive.name}" in step.source
    dump = RNN.dump(*args)
    shared = [s for s in kernels if sum(t.compiled.text == s.compiled.text for t in kernels) > 1]
    assert shared and all(s.kernel.name in dump for s in shared)


def test_a_kernel_is_one_function_compiled_once_for_every_size(traced_for, monkeypatch):
    """A CPU loop kernel is one plain function (no Numba parfor, no single-threaded
    twin): a small call and a threaded call of the same kernel share its one
    compilation, and the threaded call's numbers are the small call's."""
    def loss(x):
        return (fg.sin(x) * x).sum()
    x = np.linspace(0, 1, 9, dtype=np.float32)
    steps = _kernel_steps(traced_for, fg.compile_grad(loss), x)
    assert steps and all(s.compiled.text.count("\ndef ") == 1 for s in steps)
    functions = [load(s.compiled.text, s.entry) for s in steps]
    assert all(not fn.targetoptions.get("parallel") for fn in functions)
    assert any(fn.targetoptions.get("nogil") for fn in functions)   # a loop kernel's
    small = fg.compile_grad(loss)(x)
    known = [len(fn.signatures) for fn in functions]
    monkeypatch.setattr(executable, "PARALLEL_MIN_SIZE", 0)
    threaded = fg.compile_grad(loss)   # a fresh trace, whose loop kernels run on threads
    assert all(s.threaded for s in _kernel_steps(traced_for, threaded, x)
               if s.compiled.runs_chunks)
    stats.reset()
    for _ in range(2):   # the second call runs every chunk on the pool
        value, grad = threaded(x)
    assert stats.snapshot()["compiles"] == 0
    assert [len(fn.signatures) for fn in functions] == known
    np.testing.assert_array_equal(value, small[0])
    np.testing.assert_array_equal(grad[0], small[1][0])


# ---------------------------------------------------------------- issue 12: helpers once
# codegen/scalar_math.py's helpers are compiled once per signature in a process: Numba
# keys a helper's compiled versions by its caller's options, so a helper called from
# functions compiled with different options (or inlined by Numba into each caller) is
# compiled again for each. In a fresh process: nothing is cached in memory yet.
HELPERS_ONCE = """
import collections, json, sys
import numpy as np
from numba.core import event
import fusegrad as fg
compiled = collections.Counter()

everything = set()

class Listener(event.Listener):
    def on_start(self, ev):
        function = ev.data["dispatcher"].py_func
        everything.add(function.__qualname__)
        if function.__module__ == "fusegrad.codegen.scalar_math":
            compiled[f"{function.__qualname__}{ev.data['args']}"] += 1
    def on_end(self, ev):
        pass

event.register("numba:compile", Listener())

def loss(x, y):
    return (fg.exp(x) * fg.sin(x) + fg.cos(x) * y - fg.tanh(x * y) + fg.log1p(fg.abs(y))).sum()

for dtype in (np.float32, np.float64):
    x, y = np.linspace(-3, 3, 64, dtype=dtype), np.linspace(1, 2, 64, dtype=dtype)
    fg.compile_grad(loss, wrt=(0, 1))(x, y)
print(json.dumps({"compiled": compiled, "everything": sorted(everything)}))
"""


def test_each_scalar_math_helper_is_compiled_once_per_signature(tmp_path):
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, FUSEGRAD_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", HELPERS_ONCE], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    compiled, everything = report["compiled"], report["everything"]
    assert any(name.startswith("_exp_f32") for name in compiled), compiled  # the listener saw them
    assert {name: n for name, n in compiled.items() if n > 1} == {}
    # Helpers are inlined into their callers' Numba IR, never compiled on their own,
    # and scratch buffers are not np.empty's compiled implementation.
    from fusegrad.codegen import scalar_math
    inlined = {name for name, value in vars(scalar_math).items()
               if getattr(value, "targetoptions", {}).get("inline") == "always"}
    assert {"_exp_parts", "_reduce_pio2_near", "_int_of"} <= inlined, inlined
    assert not inlined & set(everything), inlined & set(everything)
    assert not [name for name in everything if name.startswith("ol_np_empty")], everything


# ---------------------------------------------------------------- issue 12: eager ski rental
def _sinh_loss(x):   # compiled by this test alone
    return (fg.sinh(x) * x + x).sum()


def test_kernels_compiled_before_are_predicted_to_load(traced_for, tmp_path, monkeypatch):
    # What an eager backward weighs against interpreting it (engine.should_compile): a
    # graph whose kernels are compiled, here or in the disk cache, only loads them.
    import fusegrad.runtime as runtime
    from fusegrad.runtime import loader
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))
    f = fg.compile_grad(_sinh_loss)
    x = np.linspace(-1, 1, 5)
    graph = traced_for(f, x).joint
    kernels = len(_kernel_steps(traced_for, f, x))
    assert kernels and runtime.compile_seconds(graph) >= kernels * runtime.COMPILE_KERNEL_SECONDS
    f(x)
    assert runtime.compile_seconds(graph) == kernels * runtime.LOAD_KERNEL_SECONDS
    monkeypatch.setattr(loader, "_modules", {})   # a new process: the disk cache has them
    assert runtime.compile_seconds(graph) == kernels * runtime.LOAD_KERNEL_SECONDS
