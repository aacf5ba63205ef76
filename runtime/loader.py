"""Turning generated source into callables: write the file once, import it, and let
Numba compile it (or load it from its on-disk cache, next to the file)."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from fusegrad.runtime import stats
from fusegrad.runtime.cache import source_dir
from fusegrad.runtime.threads import launch_lock

_loaded: dict[str, Callable] = {}
_lock = threading.Lock()


def source_path(source: str) -> Path:
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    return source_dir() / f"k_{digest}.py"


def load(source: str, entry: str) -> Callable:
    """The function `entry` of `source`, compiled lazily by Numba on first call.

    Files are named by the hash of their text and never rewritten: Numba's cache
    is keyed by the file's path and modification time, so rewriting identical
    text would throw the compiled code away.
    """
    with _lock:
        key = f"{source_path(source)}:{entry}"
        function = _loaded.get(key)
        if function is None:
            function = _loaded[key] = _import(source, entry)
        return function


def _import(source: str, entry: str) -> Callable:
    path = source_path(source)
    if not path.exists():
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(source)
        os.replace(temporary, path)  # atomic: concurrent processes see whole files only
    name = f"fusegrad_kernels.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return getattr(module, entry)


class Launcher:
    """Calls a Numba dispatcher, timing the first call (compile or cache load).
    Threaded kernels launch under `launch_lock` (see runtime/threads.py)."""

    __slots__ = ("function", "ready", "lock")

    def __init__(self, function: Callable, threaded: bool) -> None:
        self.function = function
        # Not ready merely because the dispatcher has compiled before: one kernel
        # source serves several argument types (an int32 and an int64 array are
        # cast alike), and each new type is a new compilation to count.
        self.ready = False
        self.lock = launch_lock if threaded else contextlib.nullcontext()

    def __call__(self, *args) -> None:
        with self.lock:
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
