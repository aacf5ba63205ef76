"""Turning generated source into callables: write the file once, run it, and let
Numba compile it (or load it from its on-disk cache, next to the file).

The module is run from the source text in memory (never imported from the file, so
neither a damaged file nor a stale .pyc can change what runs); the file exists for
Numba's cache, which is keyed by it, and for tracebacks. When the cache directory
cannot be used, kernels are compiled in memory (runtime/cache.py says when).
"""
from __future__ import annotations

import contextlib
import hashlib
import linecache
import os
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

from fusegrad.runtime import cache, numba_cache, stats, threads

_modules: dict[str, ModuleType] = {}
_lock = threading.Lock()
# The file name of kernels compiled in memory: Numba and tracebacks see it, linecache
# holds its lines.
MEMORY_DIR = "<fusegrad memory>"

numba_cache.install()


def file_name(source: str) -> str:
    return f"k_{hashlib.sha256(source.encode()).hexdigest()[:20]}.py"


def source_path(source: str) -> Path:
    """Where the kernel's file is (or would be, with the disk cache on)."""
    return (cache.cache_dir() or Path(MEMORY_DIR)) / file_name(source)


def compiled_before(kernels: list[tuple[str, str]]) -> list[bool]:
    """For each kernel (source, entry), whether it was compiled before: by this process,
    or into the disk cache (Numba's index of it is there)."""
    directory = cache.cache_dir()
    try:
        names = os.listdir(directory / "__pycache__") if directory else []
    except OSError:
        names = []
    indexed = {name.split(".", 1)[0] for name in names if name.endswith(".nbi")}
    found = []
    for source, entry in kernels:
        name = file_name(source)
        module = _modules.get(name)
        function = getattr(module, entry, None)
        found.append(name[:-3] in indexed or bool(getattr(function, "signatures", ())))
    return found


def load(source: str, entry: str) -> Callable:
    """The function `entry` of `source`, compiled lazily by Numba on first call."""
    with _lock:
        name = file_name(source)
        module = _modules.get(name)
        if module is None:
            module = _modules[name] = _import(source, name)
        return getattr(module, entry)


def _import(source: str, name: str) -> ModuleType:
    directory = cache.disk_dir()
    if directory is not None:
        path = directory / name
        try:
            if _write_checked(path, source):
                cache.note_new_kernel(directory)
            return _run(source, str(path), on_disk=True)
        except OSError as error:  # read-only, full, removed meanwhile
            cache.give_up_disk(f"cannot write kernels to {cache.describe(directory)}: {error}")
    filename = f"{MEMORY_DIR}/{name}"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return _run(source, filename, on_disk=False)


def _write_checked(path: Path, source: str) -> bool:
    """Make `path` hold `source`; True when it had to be written. A file is named by
    the hash of its text, so one that does not hold that text is damaged: rewritten."""
    text = source.encode()
    try:
        if path.read_bytes() == text:
            _touch(path)
            return False
        cache.warn_once("kernel-file", f"the cached kernel file {path} did not hold the "
                                       "source its name is the hash of (truncated or "
                                       "edited); rewrote it")
    except FileNotFoundError:
        pass
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(text)
        os.replace(temporary, path)  # atomic: concurrent processes see whole files only
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()  # a full disk left it empty or partial
        raise
    return True


def _touch(path: Path) -> None:
    # The cache evicts the least recently used kernels, by modification time: a load
    # counts as a use (once per kernel and process, not per call).
    with contextlib.suppress(OSError):
        os.utime(path)


def _run(source: str, filename: str, on_disk: bool) -> ModuleType:
    numba_cache.register(filename, source)
    module = ModuleType(f"fusegrad_kernels.{Path(filename).stem}")
    module.__file__ = filename
    sys.modules[module.__name__] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    numba_cache.attach(module, on_disk)
    return module


class Launcher:
    """Calls a Numba dispatcher, timing the first call (compile or cache load)."""

    __slots__ = ("function", "ready")

    def __init__(self, function: Callable) -> None:
        self.function = function
        # Not ready merely because the dispatcher has compiled before: one kernel
        # source serves several argument types (an int32 and an int64 array are
        # cast alike), and each new type is a new compilation to count.
        self.ready = False

    def __call__(self, *args) -> None:
        if self.ready:
            self.function(*args)
        else:
            self._first_call(args)
        stats.count("kernels_launched")

    def _first_call(self, args) -> None:
        signatures = getattr(self.function, "signatures", None)
        known = None if signatures is None else len(signatures)
        before = self.function.stats.cache_hits.copy() if hasattr(self.function, "stats") else None
        began = time.perf_counter()
        self.function(*args)
        elapsed = time.perf_counter() - began
        self.ready = True
        if known is not None and len(self.function.signatures) == known:
            return  # an existing specialization: nothing was compiled or loaded
        hits = self.function.stats.cache_hits if before is not None else None
        stats.count("cache_loads" if hits and hits != before else "compiles")
        stats.count("compile_seconds", elapsed)


class ChunkLauncher:
    """Launches a CPU loop kernel (codegen.cpu: it runs the chunks it is given) large
    enough for threads: its chunks on the thread pool (runtime/threads.py), then the
    epilogue. A first call runs the first chunk alone, so that this thread compiles
    the kernel (or loads it) while no other waits on Numba's compile lock."""

    __slots__ = ("launcher", "nchunks_at")

    def __init__(self, launcher: Launcher, nchunks_at: int) -> None:
        self.launcher = launcher
        self.nchunks_at = nchunks_at    # where `nchunks` is among the arguments

    def __call__(self, *args) -> None:
        nchunks = args[self.nchunks_at]
        launcher = self.launcher
        if nchunks == 1:   # one thread: nothing to hand out
            launcher(*args, 0, 1, True)
        elif launcher.ready:
            threads.run_chunks(launcher.function, args, range(nchunks))
            stats.count("kernels_launched")
        else:
            launcher(*args, 0, 1, False)
            threads.run_chunks(launcher.function, args, range(1, nchunks))
