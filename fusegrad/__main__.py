"""The command line: `python -m fusegrad bench`, `info` and `cache info|clear`.

Nothing is imported from numpy at module level here: `bench` has to change the environment
before OpenBLAS is loaded, and the benchmark modules are imported only once it has.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fusegrad.report import PIP_HINT

# Set on some machines, they make OpenBLAS pick a slow kernel.
SLOW_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Carries "what was unset" into the re-executed process, and stops a second re-execution.
_UNSET_MARKER = "FUSEGRAD_BENCH_UNSET_BLAS"

# `bench --avx2`: every system's code for an AVX2 CPU without AVX-512, on this machine.
# Users' machines may have AVX2 only; this runs what each library would run there (the
# memory system stays this machine's). Each library reads its variable once, on load.
AVX2_ENVIRONMENT = {
    "NUMBA_CPU_NAME": "haswell",                               # fusegrad, hand Numba, triad
    # "": haswell's own features. Numba takes the host's (AVX-512 here) when this is unset,
    # and LLVM then wrote 8-lane zmm code for the haswell name.
    "NUMBA_CPU_FEATURES": "",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # NumPy's dispatched loops
    "OPENBLAS_CORETYPE": "Haswell",                            # OpenBLAS's products
    "ATEN_CPU_CAPABILITY": "avx2",                             # PyTorch, and torch.compile's code
    "ONEDNN_MAX_CPU_ISA": "AVX2",                              # PyTorch's oneDNN products
    # PyTorch's float matmul is MKL's, which ATEN_CPU_CAPABILITY does not reach: (4096,256)
    # @ (256,256) float32 took 1.53 ms in its AVX-512 kernels here, 2.43 in its AVX2 ones.
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "XLA_FLAGS": "--xla_cpu_max_isa=AVX2",                     # JAX
}
# torch.compile's kernel cache does not key on ATEN_CPU_CAPABILITY: AVX2 code read back by
# an AVX-512 run (or the reverse) gave wrong sums and heap corruption. A cache of its own.
_AVX2_INDUCTOR_CACHE = "torchinductor_avx2"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusegrad", description="fusegrad command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = commands.add_parser(
        "bench", help="fused vs unfused vs the field",
        description="Time value-and-gradient of the workloads W1..W5 for each system.")
    bench.add_argument("--quick", action="store_true",
                       help="small sizes and few repeats: the suite in well under a minute")
    bench.add_argument("--workload", action="append", metavar="NAME",
                       help="W1..W5 or a name (seed-poly, chain, mlp, softmax-xent, "
                            "layernorm); repeatable; default: all")
    bench.add_argument("--size", action="append", type=_count, metavar="N",
                       help="N for W1/W2, rows for W3-W5 (1e5 is accepted); repeatable; "
                            "default: the suite's sizes")
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    bench.add_argument("--repeat", type=_count, metavar="K",
                       help="timed calls per measurement (default: as many as fit about "
                            "1 s, 0.2 s with --quick)")
    bench.add_argument("--threads", type=_count, metavar="T",
                       help="Numba threads for every kernel (default: one per core)")
    bench.add_argument("--json", metavar="FILE", help="write every record as JSON")
    bench.add_argument("--plot", metavar="FILE.png", help="draw time and bandwidth")
    bench.add_argument("--dask", action="store_true",
                       help="data-parallel on Dask: one process vs LocalClusters of 1 and 2 "
                            "workers (--size: rows per chunk, default 1e6; needs "
                            "fusegrad[dask])")


    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="the floating dtype of every workload's inputs (default float32)")
    bench.add_argument("--scaling", action="store_true",
                       help="time against N: W1 and W2 (or --workload) at 1e3..1e8 (1e6 with "
                            "--quick), fusegrad and the single-pass kernel, with the "
                            "memory-traffic floor")
    bench.add_argument("--keep-blas-env", action="store_true",
                       help=f"leave {' and '.join(SLOW_BLAS_VARIABLES)} set")
    bench.add_argument("--avx2", action="store_true",
                       help="run every system's AVX2 code, no AVX-512 (what an AVX2-only "
                            "CPU runs; sets " + ", ".join(AVX2_ENVIRONMENT) + ")")
    bench.add_argument("--cold", action="store_true",
                       help="instead of timing calls: fusegrad's first call in a fresh "
                            "process with an empty kernel cache, then in a second one "
                            "from the disk cache (import and first-call seconds)")
    commands.add_parser("info", help="versions, CUDA, the kernel cache")
    cache = commands.add_parser("cache", help="the kernel cache: info or clear",
                                description="The on-disk kernel cache (FUSEGRAD_CACHE_DIR, "
                                            "at most FUSEGRAD_CACHE_MAX_BYTES).")
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("info", help="where the cache is, how big, its limit")
    actions.add_parser("clear", help="remove every cached kernel")
    return parser


def _count(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    """Run a fusegrad command with `argv` (default: the command line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "info":
        return show_info()
    if args.command == "cache":
        return clear_cache() if args.action == "clear" else show_cache_info()
    if args.avx2:
        notes = use_avx2_code()
    else:
        notes = [] if args.keep_blas_env else unset_slow_blas()
    if args.dask:
        return run_dask_bench(args, parser)
    return run_bench(args, parser, notes)


def unset_slow_blas() -> list[str]:
    """Unset SLOW_BLAS_VARIABLES for this process; return a note saying so, if any were set.

    OpenBLAS reads them once, when numpy loads it. When numpy is already imported (importing
    fusegrad imports it), only a fresh process sees the change, so this one re-executes
    itself with the same command line.
    """
    unset = [f"{name}={os.environ.pop(name)}" for name in SLOW_BLAS_VARIABLES
             if name in os.environ]
    if unset and "numpy" in sys.modules and _UNSET_MARKER not in os.environ:
        os.environ[_UNSET_MARKER] = ", ".join(unset)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    done = ", ".join(unset) or os.environ.pop(_UNSET_MARKER, "")
    if not done:
        return []
    return [f"unset {done} for this process: they select a slow OpenBLAS kernel"]


def use_avx2_code() -> list[str]:
    """Set AVX2_ENVIRONMENT (re-executing this process if numpy is loaded already, as
    unset_slow_blas does); return the note that says so."""
    import tempfile
    wanted = {name: _with_flag(name, value) for name, value in AVX2_ENVIRONMENT.items()}
    wanted.setdefault("TORCHINDUCTOR_CACHE_DIR", os.environ.get(
        "TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), _AVX2_INDUCTOR_CACHE)))
    missing = {name: value for name, value in wanted.items() if os.environ.get(name) != value}
    if missing:
        os.environ.update(missing)
        if "numpy" in sys.modules:
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    settings = " ".join(f"{name}={AVX2_ENVIRONMENT[name]}" for name in AVX2_ENVIRONMENT)
    # Measured on the 2-core AVX-512 VM: jax's (4096,256) @ (256,256) float32 took 1.9-2.1
    # ms under --xla_cpu_max_isa=SSE4_2, AVX, AVX2 and AVX512 alike, where OpenBLAS's and
    # MKL's AVX2 kernels take 2.4-2.6.
    return [f"AVX2 code for every system (no AVX-512): {settings}",
            "except jax's matrix products: XLA's matmul library picks its kernels at run "
            "time, whatever --xla_cpu_max_isa says (AVX-512 ones on an AVX-512 CPU)"]


def _with_flag(name: str, value: str) -> str:
    """XLA_FLAGS keeps the user's other flags; the other variables are set outright."""
    if name != "XLA_FLAGS":
        return value
    kept = [f for f in os.environ.get(name, "").split() if not f.startswith("--xla_cpu_max_isa")]
    return " ".join([*kept, value])


# --- bench ---------------------------------------------------------------------------------

def run_bench(args: argparse.Namespace, parser: argparse.ArgumentParser,
              notes: list[str]) -> int:
    import numba

    from fusegrad import bench
    from fusegrad.report import plot, show_report
    from fusegrad.bench_workloads import WORKLOADS, find_workload

    try:
        workloads = tuple(find_workload(n) for n in args.workload or ()) or WORKLOADS
    except ValueError as error:
        parser.error(str(error))
    if args.plot and not _importable("matplotlib"):
        parser.error(f"--plot needs matplotlib: {PIP_HINT}")
    if args.device == "cuda" and not cuda_status().startswith("yes"):
        parser.error(f"--device cuda: CUDA is not usable here ({cuda_status()})")
    if args.threads and args.threads > numba.config.NUMBA_NUM_THREADS:
        parser.error(f"--threads {args.threads}: Numba was started with at most "
                     f"{numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS)")
    options = bench.Options(workloads=workloads, sizes=tuple(args.size or ()),
                            quick=args.quick, device=args.device, repeat=args.repeat,
                            threads=args.threads, dtype=args.dtype)
    if args.cold:
        return run_cold_bench(options, args.json)
    systems = bench.find_systems(args.device, notes)
    if args.scaling:
        options, systems = _scaling(bench, options, systems, args)
    report = _run_with_progress(bench, options, systems, notes)
    show_report(report, bench.TOLERANCE)
    if args.scaling:
        from fusegrad.report import show_scaling
        show_scaling(report)
    if args.json:
        bench.write_json(report, args.json)
        print(f"wrote {len(report.records)} records to {args.json}")
    if args.plot:
        plot(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


def run_dask_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not (_importable("dask") and _importable("distributed")):
        parser.error('--dask needs dask and distributed: pip install "fusegrad[dask]"')
    from fusegrad import bench_dask
    rows = (args.size or [10**5 if args.quick else 10**6])[0]
    repeat = args.repeat or (3 if args.quick else 5)
    return bench_dask.run(rows, repeat=repeat, json_path=args.json)


def _scaling(bench: Any, options: Any, systems: list, args: argparse.Namespace) -> tuple:
    """`--scaling`: W1 and W2 (unless --workload says), 1e3..1e8 (unless --size says), the
    systems that keep no temporaries (issue 12)."""
    from dataclasses import replace

    from fusegrad.bench_workloads import find_workload
    workloads = options.workloads if args.workload else tuple(
        find_workload(key) for key in bench.SCALING_WORKLOADS)
    sizes = options.sizes or (bench.QUICK_SCALING_SIZES if args.quick else bench.SCALING_SIZES)
    return (replace(options, workloads=workloads, sizes=sizes, scaling=True),
            bench.scaling_systems(systems))


def _run_with_progress(bench: Any, options: Any, systems: list, notes: list[str]) -> Any:
    total = 1 + bench.count_steps(systems, options)
    done = 0
    try:
        from rich.progress import Progress
    except ImportError:
        def print_step(description: str) -> None:
            nonlocal done
            done += 1
            print(f"[{done:>3}/{total}] {description}", file=sys.stderr, flush=True)
        return bench.run_suite(options, systems, notes, print_step)

    with Progress(transient=True) as progress:
        task = progress.add_task("bench", total=total)

        def show_step(description: str) -> None:
            nonlocal done
            progress.update(task, completed=done, description=description)
            done += 1
        return bench.run_suite(options, systems, notes, show_step)


# --- bench --cold (issue 12: compile time) -------------------------------------------------

def run_cold_bench(options: Any, json_path: str | None) -> int:
    import platform

    import numba

    from fusegrad import bench_cold

    def step(description: str) -> None:
        print(description, file=sys.stderr, flush=True)

    records = bench_cold.run_cold(options.workloads, options.sizes_for, step)
    machine = {"python": platform.python_version(), "numba": numba.__version__,
               "platform": platform.platform(), "cpus": os.cpu_count()}
    print(bench_cold.cold_table(records))
    if json_path:
        bench_cold.write_cold_json(records, machine, json_path)
        print(f"wrote {len(records)} records to {json_path}")
    return 0 if all(r.status == "ok" for r in records) else 1


# --- info ----------------------------------------------------------------------------------

def show_info() -> int:
    import platform
    from importlib import metadata

    import numba
    import numpy

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    from fusegrad.runtime.threads import choose_threading_layer, threading_layer
    choose_threading_layer()  # what fusegrad's first kernel would pick
    rows = [("fusegrad", version("fusegrad")), ("numba", numba.__version__),
            ("numpy", numpy.__version__), ("llvmlite", version("llvmlite")),
            ("python", platform.python_version()),
            ("numba threads", f"{numba.get_num_threads()} ({threading_layer()} layer)"),
            ("CUDA", cuda_status())]
    rows += cache_rows()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def cuda_status() -> str:
    """'yes (the GPU's name)' or 'no (why not)'."""
    try:
        from numba import cuda
        if not cuda.is_available():
            return "no (numba.cuda finds no usable GPU and driver)"
        name = cuda.get_current_device().name
        return f"yes ({name.decode() if isinstance(name, bytes) else name})"
    except Exception as error:  # a broken driver or toolkit raises all sorts of errors
        return f"no ({type(error).__name__}: {error})"


# --- cache -------------------------------------------------------------------------------

def cache_rows() -> list[tuple[str, str]]:
    from fusegrad.runtime import cache

    directory = cache.cache_dir()
    if directory is None:
        return [("kernel cache", "off (FUSEGRAD_CACHE_DIR is off or 0)")]
    limit = cache.max_bytes()
    return [("kernel cache", cache.describe(directory)),
            ("cache size", disk_usage(directory)),
            ("cache limit", "none (FUSEGRAD_CACHE_MAX_BYTES=off)" if limit is None
             else f"{_bytes(limit)} (FUSEGRAD_CACHE_MAX_BYTES; least recently used "
                  "kernels go first)"),
            ("clear it with", "python -m fusegrad cache clear")]


def show_cache_info() -> int:
    rows = cache_rows()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def clear_cache() -> int:
    from fusegrad.runtime import cache

    directory = cache.cache_dir()
    if directory is None:
        print("the kernel cache is off (FUSEGRAD_CACHE_DIR): nothing to clear")
    elif not directory.is_dir():
        print(f"no kernel cache at {cache.describe(directory)}: nothing to clear")
    else:
        freed = cache.clear(directory)
        print(f"removed {_bytes(freed)} of kernels from {directory}")
    return 0


def disk_usage(path: Path) -> str:
    from fusegrad.runtime import cache

    if not path.exists():
        return "0 B (not created yet)"
    kernels = cache.entries(path).values()
    return f"{_bytes(sum(k.size for k in kernels))} in {len(kernels)} kernels"


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            break
        count /= 1024
    return f"{count:.3g} {unit}"


def _importable(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
