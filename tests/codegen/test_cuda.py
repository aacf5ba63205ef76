"""The CUDA target (codegen/cuda.py, runtime/cuda.py): same plans, same numbers as the CPU.

There is no GPU here. The kernels run on Numba's CUDA simulator, which has to be
switched on (NUMBA_ENABLE_CUDASIM=1) before numba.cuda is first imported; other
tests import numba before this one, so the simulator runs in a subprocess: this
file run as a script (`simulate`) computes the CUDA results of WORKLOADS and prints
them as JSON, and the tests compare them with the CPU target's, in this process.
The simulator runs every GPU thread in Python: shapes are small, but larger than a
block (128 outer points) wherever a reduction has to cross blocks.

The simulator executes the generated Python, not what numba.cuda would compile, so
the same kernels are also compiled to PTX by Numba's real CUDA compiler (`ptx`:
needs libNVVM, not a GPU; skipped where libNVVM is missing).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fusegrad as fg
from fusegrad import ir
from fusegrad.codegen import SourceNames, emit, plan_kernels
from fusegrad.ir import ops
from fusegrad.ir.graph import Value

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- workloads

def poly(x, y):                      # W1: elementwise, one full reduction
    return (x ** 2 + 3 * y ** 2).sum()


def chain(x, y):                     # W2: a longer elementwise chain
    return (x ** 2 * fg.exp(x) + fg.sin(x) * y - fg.tanh(x * y) + fg.sqrt(fg.abs(y) + 1)).sum()


def cross_entropy(L, T):             # W4: row reductions (max, sum) and a row epilogue
    return (fg.logsumexp(L, 1) - (L * T).sum(axis=1)).mean()


def layernorm(x, g, b, c):           # W5: row reductions forward, column reductions backward
    centred = x - x.mean(axis=1, keepdims=True)
    var = (centred * centred).mean(axis=1, keepdims=True)
    y = centred / fg.sqrt(var + 1e-5) * g + b
    return (y * y * c).sum()


def mlp(X, W1, b1, W2, b2, Y):       # W3: matmul library calls, fused around
    return ((fg.tanh(X @ W1 + b1) @ W2 + b2 - Y) ** 2).mean()


def extremes(x):                     # column and row max/min; x holds a NaN
    return (x.max(axis=0) * 2).sum() + x.min(axis=0).sum() + x.max(axis=1).sum()


def layout(x):                       # a 3-d transpose, and a middle-axis sum (host fallback)
    return (fg.permute(x, (2, 0, 1)) ** 2).sum() + (x.sum(axis=1) ** 2).sum()


def zoo(x, y):                       # most elementwise spellings, arguments kept in domain
    p = fg.abs(x) + 0.5
    terms = (fg.log(p) * fg.cos(y) + fg.sigmoid(x) * fg.relu(y) + p ** y + x ** 3 + p ** -2
             + fg.maximum(x, y) - fg.minimum(x, y) * fg.sign(x) + fg.where(x > y, x, -y) / p)
    return terms.sum()


def more_math(x, y):                 # the elementwise math of issue 11 (item 6), in domain
    u = fg.tanh(x) * 0.9             # |u| < 0.9: arcsin, arccos, tan
    p = fg.abs(y) + 0.5              # p > 0: logs, rsqrt
    terms = (fg.log1p(p) + fg.expm1(u) + fg.square(x) + fg.rsqrt(p) + fg.tan(u) + fg.atan(x)
             + fg.sinh(u) * fg.cosh(y) + fg.asin(u) * fg.acos(u) + fg.log2(p) - fg.log10(p)
             + fg.exp2(u) + fg.floor(3 * x) + fg.ceil(y) * x + fg.round(2 * y) + fg.softplus(x)
             + fg.atan2(x, y) + fg.hypot(x, y) + x.clip(-0.5, 0.8) * y)
    return terms.sum()


def modular(x, y):                   # %, // and masks (issue 11, item 4)
    mask = ((x < y) & (0 < y)) | ~(x > 1)
    return ((x % (fg.abs(y) + 0.5)) * (x // 0.7) + fg.where(mask ^ (y > 0.5), 2.5 % x, y)).sum()


def attention(x, W, k):              # batched matmul (issue 11, item 1): folded rows,
    q = x @ W                        # equal batches, broadcast batches (the bmm kernel)
    s = q @ fg.swapaxes(x, -1, -2)
    t = fg.reshape(q, (2, 1, 3, 4)) @ k
    return fg.tanh(s).sum() + (t ** 2).sum()
def reductions_more(x, y):           # issue 11, item 7: scans on the host, compositions fused
    return ((fg.cumprod(x, 1) * y).sum() + fg.cumsum(x, 0).sum() * fg.norm(y)
            + fg.where(fg.any(x > 1, 1, keepdims=True), x, y).sum())


def gathers(x, y):                   # the rest of the registry (issue 13: every primitive):
    rows = np.array([2, 0, 2])       # gathers, scatters, argmax/argmin, scan and slices run
    h = x.at[rows].set(y[:3] * 2)    # as host steps; erf, erfc and <= in kernels
    picked = (fg.take_along_axis(x, fg.argmax(x, 1)[:, None], 1).sum()
              + fg.take_along_axis(y, fg.argmin(y, 0)[None, :], 0).sum())
    carry, ys = fg.scan(lambda c, r: (c * 0.5 + r, (c * r).sum()), x[0], x[1:])
    return ((h * y).sum() + picked + (fg.erf(x) * fg.erfc(y)).sum() + carry.sum() + ys.sum()
            + fg.where(x <= y, x, y).sum())


def inputs(name: str, dtype) -> list[np.ndarray]:
    rng = np.random.default_rng(sum(map(ord, name)))

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)
    if name in ("poly", "chain", "zoo", "more_math", "modular"):
        return [normal(300), normal(300)]
    if name in ("cross_entropy", "cross_entropy_unfused"):
        rows = 150 if name == "cross_entropy" else 12
        return [normal(rows, 5), np.eye(5, dtype=dtype)[rng.integers(0, 5, rows)]]
    if name == "layernorm":
        return [normal(150, 4) + 0.5, 1 + 0.1 * normal(4), 0.1 * normal(4), normal(150, 4)]
    if name == "mlp":
        return [normal(8, 5), normal(5, 6) / 2, normal(6) / 10, normal(6, 3) / 2, normal(3) / 10,
                normal(8, 3)]
    if name == "extremes":
        x = normal(150, 3)
        x[7, 1] = np.nan
        return [x]
    if name == "layout":
        return [normal(3, 4, 5)]
    if name == "attention":
        return [normal(2, 3, 4), normal(4, 4) / 2, normal(3, 4, 2)]
    if name in ("reductions_more", "gathers"):
        return [normal(12, 5), normal(12, 5)]
    # Rows of at least ROW_BLOCK_MIN (128) elements: a block per row (issue 13, item 6);
    # 3 rows on 2 blocks, so a block takes a second row after its first.
    if name == "cross_entropy_rows":
        return [normal(3, 150), np.eye(150, dtype=dtype)[rng.integers(0, 150, 3)]]
    if name == "layernorm_rows":
        return [normal(3, 150) + 0.5, 1 + 0.1 * normal(150), 0.1 * normal(150), normal(3, 150)]
    raise KeyError(name)


# name -> (function, fuse)
WORKLOADS = {
    "poly": (poly, True), "chain": (chain, True), "cross_entropy": (cross_entropy, True),
    "cross_entropy_unfused": (cross_entropy, False), "layernorm": (layernorm, True),
    "mlp": (mlp, True), "extremes": (extremes, True), "layout": (layout, True), "zoo": (zoo, True),
    "more_math": (more_math, True),
    "modular": (modular, True),
    "attention": (attention, True),
    "reductions_more": (reductions_more, True),
    "gathers": (gathers, True),
    "cross_entropy_rows": (cross_entropy, True), "layernorm_rows": (layernorm, True),
}
DTYPES = ("float32", "float64")
CASES = [(name, dtype) for name in WORKLOADS for dtype in DTYPES]


def results(f, args) -> list[np.ndarray]:
    value, grads = f(*args)
    return [np.asarray(value), *grads]


# ---------------------------------------------------------------- the subprocess side

def simulate() -> dict:
    """CUDA results of every case, and what the run left in the kernel cache: on the
    simulator, or on a GPU when started without it."""
    from fusegrad.runtime import cuda as runtime_cuda
    from fusegrad.runtime import stats
    # Two blocks at most: 300 points take two blocks of 128 threads and some
    # threads two points, so both the grid-stride loop and cross-block partials run.
    runtime_cuda.MAX_BLOCKS = 2
    out: dict = {"results": {}}
    for name, dtype in CASES:
        function, fuse = WORKLOADS[name]
        arrays = results(fg.compile_grad(function, device="cuda", fuse=fuse), inputs(name, dtype))
        out["results"][f"{name}-{dtype}"] = [
            {"dtype": a.dtype.str, "shape": a.shape, "data": a.astype(np.float64).ravel().tolist()}
            for a in arrays]
    out["dump"] = fg.compile_grad(mlp, device="cuda").dump(*inputs("mlp", "float32"))
    cache = Path(os.environ["FUSEGRAD_CACHE_DIR"])
    out["cached_sources"] = [p.read_text() for p in sorted(cache.glob("k_*.py"))]
    out["stats"] = stats.snapshot()
    return out


def compile_ptx() -> dict:
    """Every kernel of every workload, and the library kernels, compiled by
    numba.cuda for compute capability 8.0."""
    import numba
    from numba import cuda, types

    from fusegrad.codegen import Kernel, partial_nodes
    from fusegrad.codegen.body import accumulator_dtype
    from fusegrad.codegen.cuda import (EPILOGUE_SUFFIX, emit_cuda_bmm, emit_cuda_matmul,
                                       emit_cuda_transpose, transpose_entry)
    from fusegrad.runtime.loader import load

    def array(dtype, ndim):
        return types.Array(numba.from_dtype(np.dtype(dtype)), max(ndim, 1), "C")

    def kernel_signature(kernel):
        sig = [array(v.dtype, v.ndim) for v in kernel.inputs + kernel.outputs]
        for node in partial_nodes(kernel):  # (blocks,) + the columns, if any
            scalar = all(d == 1 for d in node.out.shape)
            columns = 0 if scalar else len(kernel.domain) - kernel.outer_axes
            sig.append(array(accumulator_dtype(node), 1 + columns))
        return tuple(sig + [types.int64] * (1 + len(kernel.domain)))

    jobs = []
    # Unfused plans add no new statements, only one spelling per kernel: the zoo's.
    for name, dtype in CASES:
        for fuse in (True, False) if name == "zoo" else (WORKLOADS[name][1],):
            function, _ = WORKLOADS[name]
            f = fg.compile_grad(function, fuse=fuse)
            args = inputs(name, dtype)
            plan = f.trace(*args).executable.plan  # traced and planned; compiles nothing
            names = SourceNames(plan.graph)
            for kernel in (s for s in plan.steps if isinstance(s, Kernel)):
                source = emit(kernel, names, plan, "cuda")
                for entry in (kernel.name, kernel.name + EPILOGUE_SUFFIX):
                    if f"def {entry}(" in source:
                        jobs.append((source, entry, kernel_signature(kernel)))
    for dtype in DTYPES:
        jobs.append((emit_cuda_matmul(np.dtype(dtype)), f"matmul_{dtype}",
                     (array(dtype, 2), array("float32", 2), array(dtype, 2))))
        jobs.append((emit_cuda_bmm(np.dtype(dtype)), f"bmm_{dtype}",
                     (array(dtype, 3), array("float32", 3), array(dtype, 3),
                      array("int64", 1), array("int64", 1))))
    for perm in [(1, 0), (2, 0, 1)]:
        jobs.append((emit_cuda_transpose(perm), transpose_entry(perm),
                     (array("float32", len(perm)),) * 2 + (types.int64,) * len(perm)))
    # Buffers set to a reduction's identity on the device (issue 13).
    from fusegrad.codegen.cuda import FILL_ENTRY, emit_cuda_fill
    for dtype in ("float32", "float64", "int64"):
        jobs.append((emit_cuda_fill(), FILL_ENTRY,
                     (array(dtype, 1), numba.from_dtype(np.dtype(dtype)))))
    # Reductions over a middle axis, on the device (issue 13, s3 item 4).
    from fusegrad.codegen.cuda import emit_cuda_reduce, reduce_entry
    from fusegrad.ir import ops
    from fusegrad.ir.builder import Builder, building
    from fusegrad.ir.graph import Value
    for dtype in ("float32", "float64"):
        for reduce in (ops.reduce_sum, ops.reduce_max, ops.reduce_min):
            builder = Builder()
            with building(builder):
                reduce(Value((3, 5, 4), np.dtype(dtype)), (1,))
            node = builder.nodes[-1]
            jobs.append((emit_cuda_reduce(node), reduce_entry(node),
                         (array(dtype, 1), array(dtype, 1)) + (types.int64,) * 3))
    failures = []
    for source, entry, signature in set(jobs):
        try:
            cuda.compile_ptx(load(source, entry).py_func, signature, cc=(8, 0))
        except Exception as error:  # noqa: BLE001 -- reported whole, with the source
            if "NVVM" in type(error).__name__ and "find" in str(error).lower():
                return {"skip": f"libNVVM unavailable: {error}"}
            failures.append(f"{entry}: {type(error).__name__}: {error}\n{source}")
    return {"compiled": len(set(jobs)) - len(failures), "failures": failures}


def unavailable() -> dict:
    from numba import cuda
    if cuda.is_available():
        return {"skip": "a CUDA GPU is available here"}
    try:
        fg.compile_grad(poly, device="cuda")
    except Exception as error:  # noqa: BLE001 -- the test checks what it is
        return {"type": type(error).__name__, "fusegrad": isinstance(error, fg.FusegradError),
                "message": str(error)}
    return {"type": None}


def start_script(mode: str, tmp_path: Path, simulator: bool) -> subprocess.Popen:
    """This file run as a script in `mode`, with a kernel cache of its own."""
    env = dict(os.environ, FUSEGRAD_CACHE_DIR=str(tmp_path), PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return subprocess.Popen([sys.executable, __file__, mode], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def report_of(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=600)
    mode = process.args[-1]
    assert process.returncode == 0, f"{mode} failed:\n{stdout[-3000:]}\n{stderr[-6000:]}"
    return json.loads(stdout.splitlines()[-1])


# ---------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    # The simulator and the PTX compiler run side by side: each takes seconds.
    processes = {mode: start_script(mode, tmp_path_factory.mktemp(mode), mode == "simulate")
                 for mode in ("simulate", "ptx")}
    return {mode: report_of(process) for mode, process in processes.items()}


@pytest.fixture(scope="module")
def simulated(reports):
    return reports["simulate"]


def assert_matches_cpu(report, assert_all_close, name, dtype, where):
    function, fuse = WORKLOADS[name]
    expected = results(fg.compile_grad(function, fuse=fuse), inputs(name, dtype))
    got = [np.array(r["data"], np.float64).astype(r["dtype"]).reshape(r["shape"])
           for r in report["results"][f"{name}-{dtype}"]]
    assert_all_close(got, expected, dtype, what=f"{name} {dtype} {where} vs cpu")


@pytest.mark.parametrize("name, dtype", CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_cuda_matches_cpu(simulated, assert_all_close, name, dtype):
    assert_matches_cpu(simulated, assert_all_close, name, dtype, "cuda simulator")


@pytest.fixture(scope="module")
def on_gpu(tmp_path_factory):
    """The same cases compiled by numba.cuda and run on a real GPU, where there is one
    (CI has none; a developer's GPU machine runs these)."""
    from numba import cuda
    if os.environ.get("NUMBA_ENABLE_CUDASIM") or not cuda.is_available():
        pytest.skip("no CUDA GPU here")
    return report_of(start_script("simulate", tmp_path_factory.mktemp("gpu"), simulator=False))


@pytest.mark.parametrize("name, dtype", CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_cuda_on_a_gpu_matches_cpu(on_gpu, assert_all_close, name, dtype):
    assert_matches_cpu(on_gpu, assert_all_close, name, dtype, "gpu")


def test_nan_wins_in_cuda_max_and_min(simulated):
    value = simulated["results"]["extremes-float64"][0]["data"][0]
    assert np.isnan(value)


def test_cuda_kernels_are_source_files_in_the_cache(simulated):
    sources = simulated["cached_sources"]
    assert any("def matmul_float32(" in s for s in sources)
    assert any("def bmm_float64(" in s for s in sources)
    loop_kernels = [s for s in sources if "cuda.grid(1)" in s and "def k" in s]
    assert loop_kernels and all("@cuda.jit(cache=True)" in s for s in loop_kernels)
    assert not any("njit" in s or "prange" in s for s in loop_kernels)


def test_long_rows_run_a_block_per_row(simulated):
    """Row kernels over rows of 150 spread each row over a block's threads, and
    combine its reductions in shared memory; rows of 5 stay one thread's each."""
    sources = simulated["cached_sources"]
    blocked = [s for s in sources if "for i1 in range(lane, n1, BLOCK):" in s]
    assert blocked and all("_rows = cuda.shared.array(BLOCK" in s for s in blocked)
    assert all("range(cuda.blockIdx.x, n0, cuda.gridDim.x)" in s for s in blocked)
    assert any("for i1 in range(n1):" in s and "cuda.grid(1), n0," in s for s in sources)


def test_cuda_dump_says_how_library_calls_run(simulated):
    dump = simulated["dump"]
    assert "matrix product: a tiled shared-memory CUDA kernel" in dump
    assert "a CUDA copy kernel" in dump  # the transposes of the backward
    assert "@cuda.jit(cache=True)" in dump and "prange" not in dump
    assert simulated["stats"]["kernels_launched"] > 0


def test_cuda_unavailable_is_a_fusegrad_error(tmp_path):
    report = report_of(start_script("unavailable", tmp_path, simulator=False))
    if "skip" in report:
        pytest.skip(report["skip"])
    assert report["fusegrad"], report
    assert "CUDA is unavailable" in report["message"]
    assert "numba.cuda.is_available() is False" in report["message"]


def test_generated_kernels_compile_for_a_real_gpu(reports):
    report = reports["ptx"]
    if "skip" in report:
        pytest.skip(report["skip"])
    assert not report["failures"], "\n\n".join(report["failures"])
    assert report["compiled"] > 50


# ---------------------------------------------------------------- the emitted source

def normalised_rows():
    """Per-element, per-row and full reductions, and an output written in the loops."""
    x, b = Value((3, 4), np.dtype("float32"), "x"), Value((4,), np.dtype("float32"), "b")
    with ir.building() as builder:
        d = ops.mul(ops.tanh(ops.add(x, b)), 0.5)
        row = ops.reduce_sum(d, 1, keepdims=True)
        total = ops.reduce_sum(ops.div(d, row))
        column = ops.reduce_sum(d, 0)
    return builder.finish((x, b), (total, d, column))


def cuda_source(graph) -> str:
    plan = plan_kernels(graph)
    (kernel,) = plan.steps
    return emit(kernel, SourceNames(graph), plan, "cuda")


GOLDEN = '''\
@cuda.jit(cache=True)
def k1_add_tanh_mul_etc(x, b, d_out, g_out, h_out, g_part, h_part, nchunks, n0, n1):  # a c d e f g h
    chunk = cuda.blockIdx.x               # the row of the partial buffers this block writes
    g_acc = 0.0
    for point in range(cuda.grid(1), n0, cuda.gridsize(1)):  # a grid-stride loop
        i0 = point
        e_acc = 0.0
        for i1 in range(n1):
            a = x[i0, i1] + b[i1]         # a = add x b
            c = scalar_math.tanh(a)       # c = tanh a
            d = c * np.float32(0.5)       # d = mul c 0.5:f32
            d_out[i0, i1] = d
            e_acc += d
            cuda.atomic.add(h_part, (chunk, i1), d)
        e = np.float32(e_acc)             # e = reduce_sum d
        for i1 in range(n1):
            a = x[i0, i1] + b[i1]         # a = add x b
            c = scalar_math.tanh(a)       # c = tanh a
            d = c * np.float32(0.5)       # d = mul c 0.5:f32
            f = d / e                     # f = div d e
            g_acc += f
    lane = cuda.threadIdx.x
    g_tree = cuda.shared.array(BLOCK, np.float64)
    g_tree[lane] = g_acc
    cuda.syncthreads()
    step = BLOCK // 2
    while step > 0:
        if lane < step:
            g_tree[lane] += g_tree[lane + step]
        cuda.syncthreads()
        step //= 2
    if lane == 0:
        g_part[chunk] = g_tree[0]

@cuda.jit(cache=True)
def k1_add_tanh_mul_etc_epilogue(x, b, d_out, g_out, h_out, g_part, h_part, nchunks, n0, n1):  # g h
    if cuda.blockIdx.x == 0:              # the first block combines the partials
        lane = cuda.threadIdx.x
        g_acc = 0.0
        for chunk in range(lane, nchunks, BLOCK):
            g_acc += g_part[chunk]
        g_tree = cuda.shared.array(BLOCK, np.float64)
        g_tree[lane] = g_acc
        cuda.syncthreads()
        step = BLOCK // 2
        while step > 0:
            if lane < step:
                g_tree[lane] += g_tree[lane + step]
            cuda.syncthreads()
            step //= 2
        if lane == 0:
            g = np.float32(g_tree[0])     # g = reduce_sum f
            g_out[0] = g
    point = cuda.grid(1)
    if point < n1:                        # one thread per column
        i1 = point
        h_total = 0.0
        for chunk in range(nchunks):
            h_total += h_part[chunk, i1]
        h_out[i1] = np.float32(h_total)   # h = reduce_sum d
'''


def test_cuda_source_golden():
    source = cuda_source(normalised_rows())
    assert source[source.index("@cuda.jit"):] == GOLDEN


def test_cuda_source_has_one_statement_per_ir_node():
    graph = normalised_rows()
    source = cuda_source(graph)
    names = SourceNames(graph)
    for node in graph.nodes:
        if node.primitive.name != "const":
            assert f"# {names.ir(node.out)} = {node.primitive.name} " in source, names.ir(node.out)
    assert "njit" not in source and "prange" not in source


def test_cuda_spells_sign_without_numpy():
    # numba.cuda has no np.sign; the registry spells sign with comparisons.
    x = Value((5,), np.dtype("float64"), "x")
    with ir.building() as builder:
        s = ops.reduce_sum(ops.sign(x))
    source = cuda_source(builder.finish((x,), (s,)))
    assert "np.sign" not in source
    assert "np.float64(1.0) if x[i0] > np.float64(0.0) else" in source


def test_cuda_names_keep_clear_of_the_template():
    point = Value((4,), np.dtype("float32"), "point")
    lane = Value((4,), np.dtype("float32"), "lane")
    with ir.building() as builder:
        s = ops.reduce_sum(ops.mul(point, lane))
    source = cuda_source(builder.finish((point, lane), (s,)))
    assert "point_v[i0] * lane_v[i0]" in source


if __name__ == "__main__":
    mode = sys.argv[1]
    report = {"simulate": simulate, "ptx": compile_ptx, "unavailable": unavailable}[mode]()
    print(json.dumps(report))


def test_every_primitive_runs_in_some_cuda_workload():
    """The simulator runs every primitive of the registry (forward or backward) in one of
    WORKLOADS against the CPU: a new primitive needs a case here."""
    from fusegrad.ir.primitive import REGISTRY
    seen = set()
    for name, (function, fuse) in WORKLOADS.items():
        traced = fg.compile_grad(function, fuse=fuse).trace(*inputs(name, "float64"))
        seen |= {node.primitive.name for node in traced.joint.nodes}
        seen |= {node.primitive.name for node in traced.forward.nodes}
    assert sorted(set(REGISTRY) - seen) == []
