"""`python -m fusegrad bench --cold`: what a user waits for before the first result.

For each (workload, size), two fresh Python processes share a new, empty kernel cache
directory: the first traces, compiles and runs (a cold start), the second finds the
kernels in the disk cache. Each reports how long importing fusegrad took and how long
the first call took (trace, plan, compile or load, run); inputs are made before the
clock starts. Processes, not calls in this one, because Numba compiles every helper a
kernel calls once per process, and the import is part of what a user waits for.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Callable

from fusegrad.bench_workloads import Workload

# Run in each fresh process: argv = workload key, size.
PROGRAM = """\
import json, sys, time
began, began_cpu = time.perf_counter(), time.process_time()
import fusegrad as fg
imported, imported_cpu = time.perf_counter(), time.process_time()
from fusegrad.bench_workloads import find_workload
from fusegrad.runtime import stats
workload = find_workload(sys.argv[1])
inputs = workload.make_inputs(int(sys.argv[2]))
compiled = fg.compile_grad(workload.loss(fg), wrt=workload.wrt)
stats.reset()
start, start_cpu = time.perf_counter(), time.process_time()
compiled(*inputs)
first_call, first_call_cpu = time.perf_counter() - start, time.process_time() - start_cpu
counts = stats.snapshot()
print(json.dumps({"import_s": imported - began, "first_call_s": first_call,
                  "cpu_s": imported_cpu - began_cpu + first_call_cpu,
                  "compiles": counts["compiles"], "cache_loads": counts["cache_loads"],
                  "compile_s": counts["compile_seconds"]}))
"""

CACHES = ("empty", "disk")   # the first process's cache, then the second's
TIMEOUT_S = 600


@dataclass
class ColdRecord:
    """One fresh process's first call of one (workload, size); times in seconds."""
    workload: str
    name: str
    size: int
    cache: str                        # "empty": a cold start; "disk": kernels on disk
    status: str = "ok"
    import_s: float | None = None     # `import fusegrad`
    first_call_s: float | None = None  # trace, plan, compile or load, run
    compile_s: float | None = None    # of which Numba compiling or loading kernels
    # CPU seconds of import and first call together, all threads: on a busy machine,
    # what the process itself spent, where the wall-clock times include waiting.
    cpu_s: float | None = None
    compiles: int | None = None
    cache_loads: int | None = None

    @property
    def total_s(self) -> float | None:
        if self.import_s is None or self.first_call_s is None:
            return None
        return self.import_s + self.first_call_s


def measure_cold(workload: Workload, size: int) -> list[ColdRecord]:
    """A cold start and a start from the disk cache, each in a fresh process."""
    records = []
    with tempfile.TemporaryDirectory(prefix="fusegrad-cold-") as directory:
        environment = dict(os.environ, FUSEGRAD_CACHE_DIR=directory)
        for cache in CACHES:
            record = ColdRecord(workload.key, workload.name, size, cache)
            records.append(record)
            done = subprocess.run([sys.executable, "-c", PROGRAM, workload.key, str(size)],
                                  env=environment, capture_output=True, text=True,
                                  timeout=TIMEOUT_S)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                record.status = f"failed: exit status {done.returncode}: {last}"
                break   # the disk-cache start would measure a cold one again
            for key, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                setattr(record, key, value)
    return records


def run_cold(workloads: tuple[Workload, ...], sizes_for: Callable[[Workload], tuple[int, ...]],
             step: Callable[[str], None]) -> list[ColdRecord]:
    records = []
    for workload in workloads:
        for size in sizes_for(workload):
            step(f"{workload.key} {size:,}: cold start, then from the disk cache")
            records += measure_cold(workload, size)
    return records


def cold_table(records: list[ColdRecord]) -> str:
    """Plain text: one line per (workload, size, cache)."""
    header = ("workload", "size", "cache", "import s", "first call s", "total s",
              "compile/load s", "total CPU s", "compiles", "loads")
    rows = [header]
    for r in records:
        if r.status != "ok":
            rows.append((r.workload, f"{r.size:,}", r.cache, r.status, *[""] * 6))
            continue
        rows.append((f"{r.workload} {r.name}", f"{r.size:,}", r.cache, f"{r.import_s:.2f}",
                     f"{r.first_call_s:.2f}", f"{r.total_s:.2f}", f"{r.compile_s:.2f}",
                     f"{r.cpu_s:.2f}", str(r.compiles), str(r.cache_loads)))
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def write_cold_json(records: list[ColdRecord], machine: dict, path: str) -> None:
    document = {"machine": machine,
                "cold": [dict(asdict(r), total_s=r.total_s) for r in records]}
    with open(path, "w") as file:
        json.dump(document, file, indent=1)
        file.write("\n")
