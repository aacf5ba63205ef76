"""`python -m fusegrad bench`: fused vs unfused vs the field, forward and backward together.

Every (workload, size, system) is called once cold (the first-call latency: trace, compile
and run), checked against the hand-written NumPy result and warmed up; then the systems at
one (workload, size) are timed in turns: median and interquartile range of repeated calls. Each median is set against the memory-traffic floor,
the workload's minimal bytes over the bandwidth of a STREAM-style triad measured in the
same process.
"""
from __future__ import annotations

import gc
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Callable

import llvmlite.binding
import numba
import numpy as np
from numba import cuda, njit, prange

from fusegrad.bench_workloads import WORKLOADS, Arrays, ValueAndGrads, Workload
import fusegrad as fg
from fusegrad.runtime import stats
from fusegrad.runtime.threads import choose_threading_layer, threading_layer

SystemFn = Callable[..., ValueAndGrads]

# Float32 sums of 1e7 terms taken in different orders differ by about 1e-4 relative.
TOLERANCE = 1e-3
TRIAD_N, QUICK_TRIAD_N = 10**8, 10**7


@dataclass(frozen=True)
class System:
    name: str
    device: str
    build: Callable[[Workload], SystemFn]
    covers: Callable[[Workload], bool] = lambda workload: True
    counted: bool = False  # a fusegrad system: report kernels launched and compile time
    # Runs interpreted at first and compiles what repeats (fusegrad's eager API): timed
    # once warmed up, as the compiling systems are after their first call, with the
    # compiles of its warm-up in its compile time.
    settles: bool = False


@dataclass
class Options:
    workloads: tuple[Workload, ...] = WORKLOADS
    sizes: tuple[int, ...] = ()  # empty: each workload's own sizes
    quick: bool = False
    device: str = "cpu"
    repeat: int | None = None  # None: as many calls as fit a small time budget
    threads: int | None = None  # None: Numba's default, one per core
    dtype: str = "float32"  # the floating dtype every input is cast to (issue 12)
    scaling: bool = False  # few repeats at large N, a single-pass reference (issue 12)

    def sizes_for(self, workload: Workload) -> tuple[int, ...]:
        return self.sizes or (workload.quick_sizes if self.quick else workload.sizes)


@dataclass
class Record:
    """One (workload, size, system): times in seconds, bandwidth in GB/s."""
    workload: str
    name: str
    size: int
    system: str
    device: str
    minimal_bytes: int
    status: str = "ok"
    median_s: float | None = None
    p25_s: float | None = None
    p75_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    repeats: int = 0
    first_call_s: float | None = None
    compile_s: float | None = None
    compiles: int | None = None
    kernels_launched: int | None = None
    max_rel_error: float | None = None
    correct: bool | None = None  # max_rel_error within TOLERANCE of the NumPy result
    bandwidth_gbps: float | None = None
    bandwidth_fraction: float | None = None
    speedup_vs_unfused: float | None = None
    speedup_vs_numpy: float | None = None
    dtype: str = "float32"


@dataclass
class Report:
    machine: dict
    notes: list[str]
    records: list[Record] = field(default_factory=list)


# --- the systems -------------------------------------------------------------------------

def find_systems(device: str, notes: list[str]) -> list[System]:
    """Every system importable here, in table order; what is missing goes into `notes`."""
    baselines = [
        System("numpy", "cpu", lambda w: w.numpy_grad),
        System("numba-1pass", "cpu", lambda w: w.numba_grad,
               covers=lambda w: w.numba_grad is not None),
    ]
    return (_fusegrad_systems(device) + baselines
            + _torch_systems(device, notes) + _jax_systems(notes))


def _fusegrad_systems(device: str) -> list[System]:
    def builder(fuse: bool) -> Callable[[Workload], SystemFn]:
        def build(workload: Workload) -> SystemFn:
            compiled = fg.compile_grad(workload.loss(fg), wrt=workload.wrt, device=device,
                                       fuse=fuse)

            def run(*inputs: np.ndarray) -> ValueAndGrads:
                value, grads = compiled(*inputs)
                return float(value), tuple(grads)
            return run
        return build

    return [System("fusegrad", device, builder(True), counted=True),
            System("fusegrad-unfused", device, builder(False), counted=True),
            System("fusegrad-eager", "cpu", _eager_fusegrad, counted=True, settles=True)]


def _eager_fusegrad(workload: Workload) -> SystemFn:
    """The same loss on eager tensors, PyTorch-style (issue 12, eager speed): the ops
    run one by one as called, and `fg.autograd.grad` differentiates what they recorded,
    as the "torch" system does with PyTorch."""
    loss = workload.loss(fg)

    def run(*inputs: np.ndarray) -> ValueAndGrads:
        tensors = [fg.from_numpy(a) for a in inputs]
        leaves = [tensors[i].requires_grad_() for i in workload.wrt]
        value = loss(*tensors)
        grads = fg.autograd.grad(value, leaves)
        return value.item(), tuple(g.numpy() for g in grads)
    return run


def _torch_systems(device: str, notes: list[str]) -> list[System]:
    try:
        import torch
    except ImportError:
        notes.append("torch not installed: torch and torch.compile skipped")
        return []

    def builder(compiled: bool) -> Callable[[Workload], SystemFn]:
        def build(workload: Workload) -> SystemFn:
            loss = workload.loss(torch)
            if compiled:
                loss = torch.compile(loss)

            def run(*inputs: np.ndarray) -> ValueAndGrads:
                tensors = [torch.from_numpy(a).to(device) for a in inputs]
                leaves = [tensors[i].requires_grad_() for i in workload.wrt]
                value = loss(*tensors)
                grads = torch.autograd.grad(value, leaves)
                return value.item(), tuple(g.cpu().numpy() for g in grads)
            return run
        return build

    return [System("torch", device, builder(False)),
            System("torch.compile", device, builder(True))]


def _jax_systems(notes: list[str]) -> list[System]:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        notes.append("jax not installed: jax skipped")
        return []
    namespace = SimpleNamespace(tanh=jnp.tanh, exp=jnp.exp, sin=jnp.sin, sqrt=jnp.sqrt,
                                abs=jnp.abs, logsumexp=jax.nn.logsumexp)

    def build(workload: Workload) -> SystemFn:
        step = jax.jit(jax.value_and_grad(workload.loss(namespace), argnums=workload.wrt))

        def run(*inputs: np.ndarray) -> ValueAndGrads:
            value, grads = step(*inputs)
            return float(value), tuple(np.asarray(g) for g in grads)
        return run

    device = "cuda" if jax.default_backend() == "gpu" else jax.default_backend()
    return [System("jax", device, build)]


# --- the bandwidth reference ---------------------------------------------------------------

@njit(parallel=True)
def _triad(a, b, c, s):
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


def measure_triad(n: int, repeat: int = 5) -> float:
    """STREAM triad `a = b + s*c` on the CPU, bytes per second (3 arrays of n float32)."""
    b, c = np.ones(n, dtype=np.float32), np.full(n, 2, dtype=np.float32)
    a = np.empty_like(b)
    _triad(a, b, c, np.float32(3))  # compiles, and touches every page of `a` once
    # The best run, as STREAM reports: the machine's rate, not the scheduler's noise.
    best = min(_time_call(_triad, (a, b, c, np.float32(3))) for _ in range(repeat))
    return 3 * 4 * n / best


@cuda.jit
def _cuda_triad(a, b, c, s):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = b[i] + s * c[i]


def measure_cuda_triad(n: int, repeat: int = 5) -> float:
    """The same triad on the GPU, on device arrays, bytes per second."""
    b = cuda.to_device(np.ones(n, dtype=np.float32))
    c = cuda.to_device(np.full(n, 2, dtype=np.float32))
    a = cuda.device_array(n, dtype=np.float32)
    blocks = (n + 255) // 256

    def launch() -> None:
        _cuda_triad[blocks, 256](a, b, c, np.float32(3))
        cuda.synchronize()

    launch()
    return 3 * 4 * n / min(_time_call(launch, ()) for _ in range(repeat))


# --- measuring ------------------------------------------------------------------------------

def _time_call(fn: Callable, args: tuple) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# An eager backward (or op) compiles once its interpreted runs have cost what compiling
# would: W5's at its 15th step with an empty kernel cache, W4's at its 5th.
SETTLE_CALLS, SETTLE_SECONDS, SETTLE_MAX_SECONDS = 30, 1.0, 10.0


def _settle(fn: Callable, args: tuple, options: Options) -> None:
    """Call `fn` SETTLE_CALLS times and for SETTLE_SECONDS at least, SETTLE_MAX_SECONDS
    at most (a fifth of each with --quick)."""
    share = 5 if options.quick else 1
    start = time.perf_counter()
    calls = 0
    while True:
        fn(*args)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed > SETTLE_MAX_SECONDS / share or (
                calls >= SETTLE_CALLS // share and elapsed >= SETTLE_SECONDS / share):
            return


def _repeats(estimate_s: float, options: Options) -> int:
    if options.repeat:
        return options.repeat
    budget_s, least = (0.2, 3) if options.quick or options.scaling else (1.0, 5)
    return int(min(200, max(least, budget_s / max(estimate_s, 1e-9))))


def relative_error(result: ValueAndGrads, reference: ValueAndGrads) -> float:
    """Worst error over the value and every gradient, relative to the reference's largest
    magnitude: elementwise relative errors blow up where a gradient crosses zero.
    NaN anywhere in the result gives NaN."""
    (value, grads), (ref_value, ref_grads) = result, reference
    if len(grads) != len(ref_grads):
        raise ValueError(f"{len(grads)} gradients, expected {len(ref_grads)}")
    errors = [abs(value - ref_value) / max(abs(ref_value), 1e-30)]
    for k, (grad, ref) in enumerate(zip(grads, ref_grads)):
        grad = np.asarray(grad)
        if grad.shape != ref.shape:
            raise ValueError(f"gradient {k} has shape {grad.shape}, expected {ref.shape}")
        errors.append(float(np.max(np.abs(grad - ref))) / max(float(np.max(np.abs(ref))), 1e-30))
    return float(np.max(errors))  # unlike max(), np.max never drops a NaN


def measure(system: System, fn: SystemFn, inputs: Arrays, reference: ValueAndGrads,
            record: Record, options: Options) -> Timed:
    """Fill `record` with first-call latency, error and kernel counts, and warm `fn` up:
    its timed calls are then `time_rounds`'s, with the other systems'."""
    counted = system.counted
    if counted:
        stats.reset()
    start = time.perf_counter()
    result = fn(*inputs)
    record.first_call_s = time.perf_counter() - start
    record.max_rel_error = relative_error(result, reference)
    record.correct = record.max_rel_error <= TOLERANCE  # False for NaN too
    # Held through the timed calls, the first call's arrays would keep the runtime's
    # pool from handing them out again: at 10^8 elements every call then faulted in
    # 800 MB of fresh pages (W1 5x its roofline).
    del result
    if system.settles:
        _settle(fn, inputs, options)
    if counted:
        first = stats.snapshot()
        record.compile_s, record.compiles = first["compile_seconds"], first["compiles"]
        stats.reset()
    estimate = _time_call(fn, inputs)  # also the warm-up, after the compile
    if counted:
        record.kernels_launched = stats.snapshot()["kernels_launched"]
    return Timed(fn, record, _repeats(estimate, options))


# The systems at one (workload, size) are timed in turns: each takes a fifth of its
# calls per round, so a neighbour's load on a shared machine, which comes and goes over
# seconds, falls on every system alike (timed one after another, W4's fusegrad and
# torch.compile medians swapped places from run to run on a noisy 2-core VM).
ROUNDS = 5
# A turn starts with untimed calls, this long and one at least: the caches are the
# previous system's, and so may be a core (OpenBLAS's idle threads busy-wait about 0.1 s
# after a product). Not a pause: on a 2-core VM, a product split on both cores took
# 4x its time for the next few milliseconds after the process slept for 0.1-1 s.
TURN_WARMUP_S = 0.1


@dataclass
class Timed:
    """A system's part in `time_rounds`: its function, its record, its timed calls."""
    fn: SystemFn
    record: Record
    calls: int
    times: list[float] = field(default_factory=list)


def time_rounds(entries: list[Timed], inputs: Arrays) -> None:
    """Time each entry's calls in ROUNDS turns, fill its record with the percentiles.
    An error in one system fails its record alone."""
    for turn in range(ROUNDS):
        gc.collect()   # between turns: the collector would run inside some samples
        gc.disable()
        try:
            for entry in entries:
                calls = entry.calls * (turn + 1) // ROUNDS - entry.calls * turn // ROUNDS
                if not calls or entry.record.status != "ok":
                    continue
                try:
                    warm_until = time.perf_counter() + TURN_WARMUP_S
                    entry.fn(*inputs)
                    while time.perf_counter() < warm_until:
                        entry.fn(*inputs)
                    entry.times += [_time_call(entry.fn, inputs) for _ in range(calls)]
                except Exception as error:
                    entry.record.status = _first_line(error)
        finally:
            gc.enable()
    for entry in entries:
        record = entry.record
        if record.status != "ok":
            continue
        record.min_s, record.p25_s, record.median_s, record.p75_s, record.max_s = (
            float(t) for t in np.percentile(entry.times, [0, 25, 50, 75, 100]))
        record.repeats = len(entry.times)
        record.bandwidth_gbps = record.minimal_bytes / record.median_s / 1e9


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines() or [""]
    return f"failed: {type(error).__name__}: {lines[0]}"


def run_workload(workload: Workload, systems: list[System], options: Options,
                 step: Callable[[str], None]) -> list[Record]:
    """Time every system that covers `workload` at every size, the systems at one size
    in turns (`time_rounds`); failures become records."""
    inputs = {size: workload_inputs(workload, size, options)
              for size in options.sizes_for(workload)}
    references = {size: reference(workload, args, options) for size, args in inputs.items()}
    built = []
    for system in (s for s in systems if s.covers(workload)):
        try:
            built.append((system, system.build(workload), None))
        except Exception as error:  # one system failing must not stop the suite
            built.append((system, None, error))
    records = []
    for size, args in inputs.items():
        timed = []
        for system, fn, build_error in built:
            step(f"{workload.key} {system.name} {size:,}")
            record = Record(workload.key, workload.name, size, system.name, system.device,
                            workload.minimal_bytes(args), dtype=options.dtype)
            try:
                if build_error is not None:
                    raise build_error
                timed.append(measure(system, fn, args, references[size], record, options))
            except Exception as error:
                record.status = _first_line(error)
            records.append(record)
        time_rounds(timed, args)
    return records


def count_steps(systems: list[System], options: Options) -> int:
    return sum(len(options.sizes_for(w)) * sum(s.covers(w) for s in systems)
               for w in options.workloads)


def compare(records: list[Record], triad_gbps: dict[str, float]) -> None:
    """Fill the speedups and bandwidth fractions once every system has been timed."""
    medians = {(r.workload, r.size, r.system): r.median_s for r in records if r.median_s}
    for r in records:
        if r.median_s is None:
            continue
        unfused = medians.get((r.workload, r.size, "fusegrad-unfused"))
        numpy_s = medians.get((r.workload, r.size, "numpy"))
        r.speedup_vs_unfused = unfused / r.median_s if unfused else None
        r.speedup_vs_numpy = numpy_s / r.median_s if numpy_s else None
        if r.device in triad_gbps:
            r.bandwidth_fraction = r.bandwidth_gbps / triad_gbps[r.device]


def describe_machine(options: Options, triad_gbps: dict[str, float]) -> dict:
    from importlib import metadata

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(), "numpy": np.__version__,
        "numba": numba.__version__, "llvmlite": version("llvmlite"),
        "fusegrad": version("fusegrad"), "platform": platform.platform(),
        "numba_threads": numba.get_num_threads(), "threading_layer": threading_layer(),
        # The CPU Numba compiles for: this machine's, or NUMBA_CPU_NAME's (`bench --avx2`).
        "cpu_target": numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name(),
        # and its features: NUMBA_CPU_FEATURES's ("" is the target's own), or the host's
        "cpu_features": (numba.config.CPU_FEATURES if numba.config.CPU_FEATURES is not None
                         else llvmlite.binding.get_host_cpu_features().flatten()),
        "device": options.device,
        "triad_n": QUICK_TRIAD_N if options.quick else TRIAD_N, "triad_gbps": triad_gbps,
        "quick": options.quick,
    }


def run_suite(options: Options, systems: list[System], notes: list[str],
              step: Callable[[str], None]) -> Report:
    """Measure the triad, then every workload; `step` is called before each measurement,
    1 + count_steps(systems, options) times in all."""
    # Every Numba kernel here (triad, hand-written, fusegrad's) runs on the thread
    # layer fusegrad's runtime picks, chosen before the first of them starts it.
    choose_threading_layer()
    if options.threads:
        numba.set_num_threads(options.threads)
    triad_n = QUICK_TRIAD_N if options.quick else TRIAD_N
    step(f"triad, {triad_n:,} float32")
    triad_gbps = {"cpu": measure_triad(triad_n) / 1e9}
    if options.device == "cuda":
        triad_gbps["cuda"] = measure_cuda_triad(triad_n) / 1e9
    report = Report(describe_machine(options, triad_gbps), notes)
    report.machine.update(dtype=options.dtype, scaling=options.scaling)
    for workload in options.workloads:
        report.records += run_workload(workload, systems, options, step)
    order = {s.name: k for k, s in enumerate(systems)}
    report.records.sort(key=lambda r: (r.workload, r.size, order[r.system]))
    compare(report.records, triad_gbps)
    return report


def write_json(report: Report, path: str) -> None:
    """One record per (workload, size, system), with the machine and the notes."""
    records = [{key: _finite_or_none(value) for key, value in asdict(r).items()}
               for r in report.records]
    document = {"machine": report.machine, "notes": report.notes, "records": records}
    with open(path, "w") as file:
        json.dump(document, file, indent=1, allow_nan=False)
        file.write("\n")


def _finite_or_none(value: object) -> object:
    # JSON has no NaN or infinity; a NaN error is already recorded as correct=False.
    return None if isinstance(value, float) and not math.isfinite(value) else value


# --- issue 12: float64 runs and the scaling sweep -------------------------------------------

DTYPES = ("float32", "float64")
# `--scaling`: W1 and W2 from 10^3 to 10^8 elements (10^6 with --quick), the systems that
# hold no more than their inputs and outputs in memory at once.
SCALING_WORKLOADS = ("W1", "W2")
SCALING_SIZES = tuple(10**k for k in range(3, 9))
QUICK_SCALING_SIZES = tuple(10**k for k in range(3, 7))
SCALING_SYSTEMS = ("fusegrad", "numba-1pass")


def workload_inputs(workload: Workload, size: int, options: Options) -> Arrays:
    """The workload's inputs at `size`, floating arrays cast to `options.dtype` (the
    same values, rounded to float32 first)."""
    arrays = workload.make_inputs(size)
    if options.dtype == "float32":
        return arrays
    return tuple(a.astype(options.dtype) if a.dtype.kind == "f" else a for a in arrays)


def reference(workload: Workload, inputs: Arrays, options: Options) -> ValueAndGrads:
    """What each system is checked against: the hand-written NumPy result, or in a
    scaling sweep the single-pass kernel's where there is one (NumPy's temporaries at
    10^8 elements are gigabytes; the single-pass kernel is itself checked against
    NumPy in the ordinary suite)."""
    if options.scaling and workload.numba_grad is not None:
        return workload.numba_grad(*inputs)
    return workload.numpy_grad(*inputs)


def scaling_systems(systems: list[System]) -> list[System]:
    return [s for s in systems if s.name in SCALING_SYSTEMS]


def roofline_s(record: Record, triad_gbps: dict[str, float]) -> float | None:
    """The memory-traffic floor: the record's minimal bytes at the triad's bandwidth."""
    gbps = triad_gbps.get(record.device)
    return record.minimal_bytes / (gbps * 1e9) if gbps else None
